#!/usr/bin/env python3
"""A GPT-2-vocabulary checkpoint saved by transformers, and its loss on a short English text.

The model is a random GPT2LMHeadModel with the real GPT-2 vocabulary (50257) and tiny dimensions
(n_embd 8, 2 heads, 2 layers, 128 positions, tied head). It is saved by `save_pretrained` in fp16
(`model.half()`): in fp32 the embedding alone is 1.6 MB, in fp16 the file is 0.8 MB, and Myopia's
loader converts F16 to fp32. The text is tokenized with tiktoken's `gpt2` encoding and scored by
transformers after reloading the saved folder in fp32, so the reference loss is that of the
fp16-rounded weights computed in fp32 — what `myopia eval` computes.

Writes, under Tests/Fixtures/gpt2_vocab/ (or --out):

  hf/config.json, hf/model.safetensors (+ generation_config.json)
      The model as written by save_pretrained: F16, keys `transformer.*`, no lm_head.weight.
  text.txt
      401 bytes of English prose with numbers, punctuation, quotes, `é` and `£` (106 GPT-2 tokens).
  reference.json
      ids          tiktoken gpt2 `encode_ordinary` of text.txt (106 ids)
      seq_len      len(ids) - 1: one window covers the whole text
      loss         mean next-token cross-entropy of the reloaded model (fp32) on inputs ids[:-1],
                   targets ids[1:] (transformers' own shifted loss, checked against F.cross_entropy)
      loss_f64     the same in float64
      position_losses, config, init, seeds, sensitivity (how much likely mistakes move the loss),
      hf_keys, hf_dtypes, the command `myopia eval` is checked with, versions.

tiktoken is built from the cached `gpt2.tiktoken` ranks file (run `myopia fetch gpt2-tiktoken gpt2`
first; the folder defaults to $MYOPIA_HOME, else ~/.cache/myopia). When the `gpt2` asset
(vocab.json + merges.txt) is cached too, transformers' GPT2Tokenizer must give the same ids. The
script downloads nothing. It exits 1 if a check fails. Deterministic: two runs give identical files.

Usage (from the repo root):
  /opt/refenv/bin/python tools/reference/gpt2_vocab_reference.py [--assets DIR] [--out DIR]
"""

import argparse
import hashlib
import json
import os
import sys

import torch
import torch.nn.functional as F

import safetensors
from safetensors import safe_open
import tiktoken
from tiktoken.load import load_tiktoken_bpe
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from refutil import file_sha256

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "gpt2_vocab")

VOCAB, NPOS, NEMBD, NLAYER, NHEAD = 50257, 128, 8, 2, 2
SEED_MODEL = 0   # torch.manual_seed before HF init
SEED_INIT = 1    # generator for the weights below
WTE_STD, WPE_STD, MATRIX_STD, BIAS_STD, LN_NOISE = 1.0, 0.5, 0.5, 0.1, 0.1

# tiktoken_ext/openai_public.py r50k pattern (as tokenizer_reference.py).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
ENDOFTEXT = "<|endoftext|>"

# Written for this fixture (no source text). Numbers, decimals, parentheses, a semicolon, a colon,
# straight quotes, contractions, possessives, an accented letter and a currency sign; one final newline.
TEXT = ("On 14 March 2023, the tide gauge at Port Ellery read 5.8 metres (about 19 feet), its highest in 47 "
        "years. Fishermen hauled 112 boats onto the quay before dawn; by noon, water lapped at the café's "
        "doorstep. \"We've seen storms,\" said Mara Quill, aged 63, \"but nothing like this!\" The council's "
        "report, due on 2 April, will cost £12,500 and weigh three options: raise the wall, move the market, "
        "or wait.\n")


def make_config():
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=NPOS, n_embd=NEMBD, n_layer=NLAYER, n_head=NHEAD, n_inner=None,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    return cfg


def build_model():
    """HF's GPT-2 with larger weights, so the loss depends strongly on which tokens come where."""
    torch.manual_seed(SEED_MODEL)
    model = GPT2LMHeadModel(make_config()).float()
    g = torch.Generator().manual_seed(SEED_INIT)
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(1.0 + LN_NOISE * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(BIAS_STD * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, Conv1D):
                mod.weight.copy_(MATRIX_STD * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(BIAS_STD * torch.randn(mod.bias.shape, generator=g))
        model.transformer.wte.weight.copy_(WTE_STD * torch.randn(model.transformer.wte.weight.shape, generator=g))
        model.transformer.wpe.weight.copy_(WPE_STD * torch.randn(model.transformer.wpe.weight.shape, generator=g))
    assert model.lm_head.weight is model.transformer.wte.weight
    return model


def gpt2_encoding(assets):
    path = os.path.join(assets, "gpt2-tiktoken", "gpt2.tiktoken")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run `myopia fetch gpt2-tiktoken` (MYOPIA_HOME={assets}) first")
    enc = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(path),
                            special_tokens={ENDOFTEXT: 50256})
    return enc, path


def mean_ce(model, ids):
    inputs = torch.tensor([ids[:-1]])
    logits = model(inputs, use_cache=False).logits[0]
    return F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")


def main():
    default_home = os.environ.get("MYOPIA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "myopia")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=default_home, help="Myopia's asset folder (MYOPIA_HOME)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/gpt2_vocab)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("CHECK FAILED:", what)

    # ------------------------------------------------------------ text and ids
    text_path = os.path.join(out, "text.txt")
    with open(text_path, "wb") as f:
        f.write(TEXT.encode("utf-8"))
    enc, ranks_path = gpt2_encoding(args.assets)
    ids = enc.encode_ordinary(TEXT)
    check(enc.decode(ids) == TEXT, "tiktoken round trip")
    check(len(ids) - 1 <= NPOS, f"{len(ids)} tokens do not fit one window of {NPOS} positions")
    tokenizer_check = {"gpt2_tiktoken_sha256": file_sha256(ranks_path)}
    vocab, merges = (os.path.join(args.assets, "gpt2", n) for n in ("vocab.json", "merges.txt"))
    if os.path.exists(vocab) and os.path.exists(merges):
        # transformers 5 takes vocab= / merges= (vocab_file= / merges_file= give an empty vocabulary).
        hf_ids = transformers.GPT2Tokenizer(vocab=vocab, merges=merges).encode(TEXT)
        check(hf_ids == ids, "GPT2Tokenizer (vocab.json + merges.txt) ids differ from tiktoken's")
        tokenizer_check["hf_GPT2Tokenizer_agrees"] = hf_ids == ids

    # ------------------------------------------------------------ model, saved in fp16
    model = build_model()
    hf_dir = os.path.join(out, "hf")
    model.half().save_pretrained(hf_dir, safe_serialization=True)
    with safe_open(os.path.join(hf_dir, "model.safetensors"), framework="pt") as f:
        hf_keys = sorted(f.keys())
        hf_dtypes = sorted({str(f.get_tensor(k).dtype) for k in hf_keys})
    check(hf_dtypes == ["torch.float16"], f"saved dtypes {hf_dtypes}")
    check("lm_head.weight" not in hf_keys, "tied head saved as lm_head.weight")
    saved_config = json.load(open(os.path.join(hf_dir, "config.json")))

    # ------------------------------------------------------------ reload in fp32 (and fp64), score the text
    with torch.no_grad():
        m32 = GPT2LMHeadModel.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()
        check(m32.transformer.wte.weight.dtype == torch.float32, "reloaded in fp32")
        check(m32.lm_head.weight is m32.transformer.wte.weight, "reloaded head tied")
        pos32 = mean_ce(m32, ids)
        loss32 = pos32.mean().item()
        hf_loss = m32(torch.tensor([ids]), labels=torch.tensor([ids]), use_cache=False).loss.item()
        check(abs(hf_loss - loss32) < 1e-5, f"transformers' shifted loss {hf_loss} vs F.cross_entropy {loss32}")
        m64 = GPT2LMHeadModel.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").double().eval()
        loss64 = mean_ce(m64, ids).mean().item()
        check(abs(loss64 - loss32) < 1e-5, f"fp32 vs fp64 loss: {loss32} {loss64}")

        # How far likely mistakes move the loss (the test's tolerance is 1e-4 relative).
        sens = {}
        rng = torch.Generator().manual_seed(7)
        j = int(torch.randint(1, len(ids), (1,), generator=rng))
        wrong = list(ids)
        wrong[j] = (wrong[j] + 1) % VOCAB
        sens["one id changed (+1)"] = mean_ce(m32, wrong).mean().item() - loss32
        sens["drop the first token"] = mean_ce(m32, ids[1:]).mean().item() - loss32
        sens["drop the final newline"] = mean_ce(m32, ids[:-1]).mean().item() - loss32
        sens["ids encoded with a leading space"] = mean_ce(m32, enc.encode_ordinary(" " + TEXT)).mean().item() - loss32
        sens["two windows of half the text"] = (torch.cat([mean_ce(m32, ids[:len(ids) // 2 + 1]),
                                                           mean_ce(m32, ids[len(ids) // 2:])]).mean().item() - loss32)
        m32.transformer.wpe.weight.data = m32.transformer.wpe.weight.data.roll(1, dims=0)
        sens["positions shifted by one"] = mean_ce(m32, ids).mean().item() - loss32
        sens = {k: float(f"{v:.3g}") for k, v in sens.items()}
        check(all(abs(v) > 5e-4 * loss32 for v in sens.values()), f"a mistake within 5x the test's tolerance: {sens}")

    seq_len = len(ids) - 1
    ref = {
        "source": "tools/reference/gpt2_vocab_reference.py",
        "text_file": "text.txt",
        "text_bytes": len(TEXT.encode("utf-8")),
        "ids": ids,
        "n_ids": len(ids),
        "seq_len": seq_len,
        "loss": loss32,
        "loss_f64": loss64,
        "position_losses": [float(x) for x in pos32],
        "definition": "mean cross-entropy of predicting ids[1:] from ids[:-1] in one window of seq_len positions, by "
                      "GPT2LMHeadModel.from_pretrained(hf, dtype=float32) on the fp16-stored weights",
        "myopia_eval": f"myopia eval --checkpoint Tests/Fixtures/gpt2_vocab/hf --data Tests/Fixtures/gpt2_vocab/text.txt "
                       f"--tokenizer gpt2 --seq-len {seq_len} --json  (one window, tokens = {seq_len})",
        "config": {"vocab_size": VOCAB, "n_positions": NPOS, "n_embd": NEMBD, "n_layer": NLAYER, "n_head": NHEAD,
                   "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
                   "storage": "float16"},
        "init": f"GPT2LMHeadModel under torch.manual_seed({SEED_MODEL}); then (generator seed {SEED_INIT}) LN weights "
                f"1+{LN_NOISE}*N(0,1), LN and Conv1D biases {BIAS_STD}*N(0,1), Conv1D weights {MATRIX_STD}*N(0,1) "
                f"(in named_modules order), wte {WTE_STD}*N(0,1), wpe {WPE_STD}*N(0,1); then rounded to fp16",
        "sensitivity": sens,
        "sensitivity_note": "change of the fp32 loss under each mistake (the CLI test allows 1e-4 relative)",
        "tokenizer": tokenizer_check,
        "hf_keys": hf_keys,
        "hf_dtypes": hf_dtypes,
        "hf_config_json": saved_config,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "tiktoken": tiktoken.__version__,
                     "python": sys.version.split()[0]},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")

    print(f"{len(ids)} ids, seq_len {seq_len}, loss fp32 {loss32:.9g} (fp64 {loss64:.9g}, transformers {hf_loss:.9g})")
    print("sensitivity:", sens)
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"  {os.path.relpath(p, out):28s} {os.path.getsize(p):8d} B  sha256 {file_sha256(p)[:16]}")
    if failures:
        print("FAILED:", failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
