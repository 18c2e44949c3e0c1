#!/usr/bin/env python3
"""Load a model folder (config.json + model.safetensors) with transformers and report its mean CE loss and how far
its logits are from a reference.

The folder is typically one Myopia wrote for one of the families of family_reference.py (gpt_neox, qwen2, qwen3,
mistral, gemma2, olmo2), or a fixture's hf/ folder. It is loaded with
    AutoModelForCausalLM.from_pretrained(DIR, attn_implementation="eager", dtype=torch.float32)
and the script FAILS (exit 1) if a file tensor went unused, a model tensor was missing (freshly initialised) or had
the wrong shape, or the head's tying differs from config.json's tie_word_embeddings. (transformers 5.23 unties a
tie_word_embeddings model silently when the file holds an lm_head.weight that differs from the embedding, and it
accepts keys with or without the base-model prefix, and NeoX's head as embed_out.weight or lm_head.weight.)

Tokens: --tokens-json FILE, a [[...]] array of rows of T+1 ids or a JSON object with a "tokens" key (such as a
fixture's reference.json). Default: Tests/Fixtures/families/<model_type>/reference.json. Row r predicts
tokens[r][1:] from tokens[r][:-1]; the loss is the cross-entropy averaged over all rows and positions.

--logits FILE: reference logits [rows, T, V] to compare with, from a safetensors file (tensor --logits-key, default
"logits", e.g. a fixture's reference.safetensors) or a JSON array. --float64 runs the model in float64 throughout
(family_reference.StrictFloat64), for comparisons with float64 references.

Output (stdout, and --out FILE): JSON {"loss", "losses", "logits_max_abs_diff" (with --logits), "model_type",
"auto_class", "tied", "file_keys", "problems", "warnings", versions...}.
Exit 2 if --expect-loss X is given and |loss - X| > tol * max(1, |X|) (--tol, default 1e-5); exit 3 if
--logits-tol Y is given and the logits differ by more than Y.

Example:
    /opt/refenv/bin/python tools/reference/family_roundtrip_check.py Tests/Fixtures/families/gemma2/hf \\
        --logits Tests/Fixtures/families/gemma2/reference.safetensors --logits-tol 1e-4
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

import transformers
from safetensors import safe_open
from transformers import AutoModelForCausalLM

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_tokens(path):
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        data = data["tokens"]
    if not (isinstance(data, list) and data and all(isinstance(r, list) for r in data)):
        raise SystemExit(f"{path}: expected a [[...]] array of token rows (or an object with 'tokens')")
    lengths = {len(r) for r in data}
    if len(lengths) != 1 or min(lengths) < 2:
        raise SystemExit(f"{path}: rows must all have the same length >= 2, got lengths {sorted(lengths)}")
    return torch.tensor(data, dtype=torch.long)


def load_logits(path, key):
    if path.endswith(".json"):
        with open(path) as f:
            return torch.tensor(json.load(f), dtype=torch.float64)
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(key).double()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="model folder (config.json + model.safetensors)")
    ap.add_argument("--tokens-json", help="JSON with a [[...]] array of T+1-token rows (default: the family fixture's "
                                          "reference.json)")
    ap.add_argument("--logits", help="reference logits: a safetensors file (see --logits-key) or a JSON array")
    ap.add_argument("--logits-key", default="logits", help="tensor name in the --logits safetensors (default logits)")
    ap.add_argument("--float64", action="store_true", help="run in float64 throughout (StrictFloat64)")
    ap.add_argument("--out", help="also write the JSON result to this file")
    ap.add_argument("--expect-loss", type=float, help="fail (exit 2) unless the loss matches this value")
    ap.add_argument("--tol", type=float, default=1e-5, help="relative tolerance for --expect-loss (default 1e-5)")
    ap.add_argument("--logits-tol", type=float, help="fail (exit 3) if max |logits - reference| exceeds this")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with open(os.path.join(args.folder, "config.json")) as f:
        config = json.load(f)
    model_type = config.get("model_type")
    tokens_path = args.tokens_json or os.path.join(REPO_ROOT, "Tests", "Fixtures", "families", str(model_type),
                                                   "reference.json")
    with safe_open(os.path.join(args.folder, "model.safetensors"), framework="pt") as f:
        file_keys = sorted(f.keys())
        file_dtypes = sorted({str(f.get_tensor(k).dtype) for k in file_keys})

    model, info = AutoModelForCausalLM.from_pretrained(
        args.folder, attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    model.eval()
    problems, warnings = [], []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = sorted(map(str, info.get(kind) or []))
        if vals:
            problems.append(f"{kind}: {vals}")
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    want_tied = bool(config.get("tie_word_embeddings", False))
    if tied != want_tied:
        problems.append(f"head tied = {tied} but config.json tie_word_embeddings = {want_tied}")
    if model.config._attn_implementation != "eager":
        problems.append(f"attn_implementation is {model.config._attn_implementation!r}, not 'eager'")

    tokens = load_tokens(tokens_path)
    V = model.config.vocab_size
    if int(tokens.max()) >= V or int(tokens.min()) < 0:
        raise SystemExit(f"token ids must be in [0, {V})")
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    with torch.no_grad():
        if args.float64:
            from family_reference import StrictFloat64
            model = model.double()
            mode = StrictFloat64()
            with mode:
                logits = model(input_ids=inputs, use_cache=False).logits
            if mode.f32_outputs:
                warnings.append(f"{mode.f32_outputs} float32 results in the float64 run")
        else:
            logits = model(input_ids=inputs, use_cache=False).logits
        losses = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(targets.shape)
        loss = losses.mean()

    result = {
        "loss": float(loss.item()),
        "losses": [[float(x) for x in row] for row in losses],
        "model_type": model_type,
        "auto_class": type(model).__name__,
        "precision": "float64" if args.float64 else "float32",
        "tokens_json": tokens_path,
        "rows": int(tokens.shape[0]),
        "T": int(tokens.shape[1] - 1),
        "tied": bool(tied),
        "file_keys": file_keys,
        "file_dtypes": file_dtypes,
        "problems": problems,
        "warnings": warnings,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    if args.logits:
        ref = load_logits(args.logits, args.logits_key)
        if tuple(ref.shape) != tuple(logits.shape):
            raise SystemExit(f"reference logits have shape {list(ref.shape)}, the model gives {list(logits.shape)}")
        result["logits_max_abs_diff"] = float((logits.double() - ref).abs().max().item())
        result["logits_max_abs"] = float(ref.abs().max().item())
        result["logits_reference"] = f"{args.logits}:{args.logits_key}" if not args.logits.endswith(".json") else args.logits
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")

    if problems:
        print("LOAD PROBLEMS: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)
    if args.expect_loss is not None:
        if abs(result["loss"] - args.expect_loss) > args.tol * max(1.0, abs(args.expect_loss)):
            print(f"loss {result['loss']!r} != expected {args.expect_loss!r} (tol {args.tol})", file=sys.stderr)
            sys.exit(2)
    if args.logits_tol is not None and args.logits and result["logits_max_abs_diff"] > args.logits_tol:
        print(f"logits differ by {result['logits_max_abs_diff']!r} > {args.logits_tol!r}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
