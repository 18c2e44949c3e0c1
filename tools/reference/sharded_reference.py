#!/usr/bin/env python3
"""Sharded, low-precision Hugging Face folders, as people download them, and their logits.

Takes the tiny Llama (Tests/Fixtures/llama_tiny/hf, fp32) and the tiny GPT-2
(Tests/Fixtures/gpt2_tiny/hf, fp32), casts each to a 16-bit dtype and saves it with
`save_pretrained(..., max_shard_size=...)` small enough for three shards:

  llama_bf16   LlamaForCausalLM in bfloat16, max_shard_size 20KB   (3 shards, 45 KB)
  gpt2_f16     GPT2LMHeadModel in float16,  max_shard_size 300KB  (3 shards, 0.73 MB)

Writes, under Tests/Fixtures/sharded/NAME/ (or --out/NAME):

  hf/config.json, hf/generation_config.json,
  hf/model-0000N-of-0000M.safetensors, hf/model.safetensors.index.json
      The folder as written by save_pretrained: every tensor in the 16-bit dtype, the index's
      metadata.total_size = the sum of the tensors' nbytes (transformers also writes
      metadata.total_parameters).
  reference.safetensors
      logits [1, T, V] (F32): the folder reloaded by from_pretrained(dtype=torch.float32) (the
      16-bit weights upcast exactly to fp32, which is what Myopia's loader does) run on row 0 of
      the source fixture's reference tokens (inputs tokens[0][:-1]), eager attention, fp32.
  reference.json
      tokens, the shards (tensors, bytes, sha256), total_size, the checks below, versions.

Checks (the script exits 1 if one fails): the folder has 2 or 3 shards and every tensor in them
has the 16-bit dtype; the index names every tensor of every shard and nothing else; total_size is
the sum of nbytes; every reloaded fp32 parameter equals the source parameter cast to the dtype and
back, bit for bit; the logits differ from the fp32 source model's by far more than the tolerance
the Swift test uses, 2e-5 of the largest |logit| (so the test would notice weights left in fp32).
Deterministic: two runs give byte-identical files.

Usage (from the repo root):
  /opt/refenv/bin/python tools/reference/sharded_reference.py [--out DIR]
"""

import argparse
import json
import os
import shutil
import sys

import numpy
import safetensors
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from refutil import Checker, file_sha256, maxabs, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "Tests", "Fixtures")
DEFAULT_OUT = os.path.join(FIXTURES, "sharded")

# name, source folder (fixture-relative), its reference.json (for the tokens), dtype, max_shard_size
MODELS = [
    ("llama_bf16", "llama_tiny/hf", "llama_tiny/reference.json", torch.bfloat16, "20KB"),
    ("gpt2_f16", "gpt2_tiny/hf", "gpt2_tiny/reference.json", torch.float16, "300KB"),
]
SAFETENSORS_DTYPE = {torch.bfloat16: "BF16", torch.float16: "F16"}
# The Swift test compares logits within this, relative to the largest |logit| (MyopiaTestSupport's
# maxRelativeError); the rounding to 16 bits must move them by far more.
SWIFT_TOLERANCE = 2e-5


def max_relative(a, b):
    return maxabs(a, b) / b.double().abs().max().item()


def shard_listing(hf_dir, check, dtype):
    index_path = os.path.join(hf_dir, "model.safetensors.index.json")
    with open(index_path) as f:
        index = json.load(f)
    weight_map = index["weight_map"]
    shards = sorted(set(weight_map.values()))
    listing, total, in_shards = [], 0, {}
    for shard in shards:
        path = os.path.join(hf_dir, shard)
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
            for k in keys:
                t = f.get_tensor(k)
                check(str(t.dtype) == str(dtype), f"{shard}: {k} is {t.dtype}, not {dtype}")
                total += t.numel() * t.element_size()
                check(k not in in_shards, f"{k} in both {in_shards.get(k)} and {shard}")
                in_shards[k] = shard
        listing.append({"file": shard, "tensors": len(keys), "bytes": os.path.getsize(path), "sha256": file_sha256(path)})
    check(2 <= len(shards) <= 3, f"{len(shards)} shards (expected 2 or 3)")
    check(in_shards == weight_map, "the index names exactly the tensors of the shards, each in its shard")
    check(index["metadata"]["total_size"] == total, f"total_size {index['metadata']['total_size']} vs sum of nbytes {total}")
    return index, listing, total


def make(name, source, reference, dtype, max_shard_size, out, versions):
    check = Checker()
    src_dir = os.path.join(FIXTURES, source)
    with open(os.path.join(FIXTURES, reference)) as f:
        tokens = json.load(f)["tokens"][0]
    inputs = torch.tensor([tokens[:-1]])

    # The fp32 source, its logits, and the folder saved in 16 bits.
    original = AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        fp32_logits = original(input_ids=inputs, use_cache=False).logits
    expected = {k: v.to(dtype).to(torch.float32) for k, v in original.state_dict().items()}
    hf_dir = os.path.join(out, name, "hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    original.to(dtype).save_pretrained(hf_dir, max_shard_size=max_shard_size)
    index, shards, total = shard_listing(hf_dir, check, dtype)

    # Reloaded and upcast to fp32: the weights and logits Myopia should get.
    reloaded = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
    state = reloaded.state_dict()
    check(set(state) == set(expected), "reloaded parameters are the source's")
    exact = all(torch.equal(state[k].view(torch.int32), expected[k].view(torch.int32)) for k in expected)
    check(exact, "reloaded fp32 parameters = source cast to the dtype and back, bit for bit")
    with torch.no_grad():
        logits = reloaded(input_ids=inputs, use_cache=False).logits
    rounding = max_relative(logits, fp32_logits)
    check(rounding > 10 * SWIFT_TOLERANCE, f"rounding moves the logits by {rounding:.3g} (relative), too little to test")
    save_file({"logits": logits.contiguous()}, os.path.join(out, name, "reference.safetensors"))

    doc = {
        "source": "tools/reference/sharded_reference.py",
        "model": f"Tests/Fixtures/{source} cast to {dtype} and saved with save_pretrained(max_shard_size={max_shard_size!r})",
        "dtype": SAFETENSORS_DTYPE[dtype],
        "max_shard_size": max_shard_size,
        "tokens": tokens,
        "tokens_from": f"Tests/Fixtures/{reference} tokens[0]; inputs tokens[:-1]",
        "T": len(tokens) - 1,
        "tensors": {"logits": list(logits.shape)},
        "logits": "from_pretrained(hf, dtype=torch.float32, attn_implementation='eager'), fp32 forward",
        "shards": shards,
        "index_metadata": index["metadata"],
        "total_size_is_sum_of_nbytes": total,
        "checks": {
            "reloaded_equals_source_rounded_bitwise": exact,
            "logits_max_relative_vs_fp32_source": sig(rounding, 3),
            "note": "the 16-bit rounding moves the logits by logits_max_relative_vs_fp32_source (max |diff| / max "
                    f"|logit|); Myopia's logits on the folder must match `logits` within {SWIFT_TOLERANCE} by the same measure",
        },
        "versions": versions,
    }
    with open(os.path.join(out, name, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{name}: {len(shards)} shards, total_size {total}, logits moved by rounding {rounding:.3g}, "
          f"bitwise {exact}")
    return check.failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/sharded)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__, "numpy": numpy.__version__}
    failures = []
    for model in MODELS:
        failures += make(*model, out, versions)
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            total += os.path.getsize(p)
            print(f"  {os.path.relpath(p, out):45s} {os.path.getsize(p):8d} B  sha256 {file_sha256(p)[:16]}")
    print(f"  total {total} B")
    if failures:
        print("FAILED:", failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
