#!/usr/bin/env python3
"""Load a GPT-2 checkpoint folder with Hugging Face transformers and report its mean CE loss.

The folder holds config.json + model.safetensors, e.g. a checkpoint written by Myopia (keys unprefixed,
like `h.0.attn.c_attn.weight`, no `lm_head.weight`) or one written by transformers' save_pretrained
(keys prefixed `transformer.`). It is loaded with
    GPT2LMHeadModel.from_pretrained(DIR, attn_implementation="eager")
and the script FAILS (exit 1) if any checkpoint tensor went unused, any model tensor was missing
(i.e. freshly initialised), or the LM head is not tied to wte.

Tokens: --tokens-json FILE holding a [[...]] array of rows of T+1 token ids (or a JSON object with a
"tokens" key, e.g. Tests/Fixtures/gpt2_tiny/reference.json). Row r predicts tokens[r][1:] from
tokens[r][:-1]; the loss is F.cross_entropy(...) averaged over all rows and positions.

Output (stdout, and --out FILE if given):
    {"loss": float, "logits_sample": first 16 logits of row 0 position 0, "transformers": version, ...}
Optional --expect-loss X [--tol 1e-5]: exit 2 if |loss - X| > tol (relative to max(1, |X|)).

Example:
    /opt/refenv/bin/python tools/reference/gpt2_roundtrip_check.py Tests/Fixtures/gpt2_tiny/hf \
        --tokens-json Tests/Fixtures/gpt2_tiny/reference.json
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

import transformers
from safetensors import safe_open
from transformers import GPT2LMHeadModel


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="checkpoint folder (config.json + model.safetensors)")
    ap.add_argument("--tokens-json", required=True, help="JSON file with a [[...]] array of T+1-token rows")
    ap.add_argument("--out", help="also write the JSON result to this file")
    ap.add_argument("--expect-loss", type=float, help="fail (exit 2) unless the loss matches this value")
    ap.add_argument("--tol", type=float, default=1e-5, help="tolerance for --expect-loss (default 1e-5)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    with safe_open(os.path.join(args.folder, "model.safetensors"), framework="pt") as f:
        file_keys = sorted(f.keys())

    model, info = GPT2LMHeadModel.from_pretrained(
        args.folder, attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    model.eval()
    problems, warnings = [], []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = sorted(map(str, info.get(kind) or []))
        if kind == "unexpected_keys":
            # Legacy causal-mask buffers of old GPT-2 checkpoints: harmless, transformers ignores them.
            legacy = [k for k in vals if k.endswith((".attn.bias", ".attn.masked_bias"))]
            vals = [k for k in vals if k not in legacy]
            if legacy:
                warnings.append(f"ignored legacy buffers: {legacy}")
        if vals:
            problems.append(f"{kind}: {vals}")
    tied = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    if not tied:
        problems.append("lm_head.weight is not tied to transformer.wte.weight")
    if model.config._attn_implementation != "eager":
        problems.append(f"attn_implementation is {model.config._attn_implementation!r}, not 'eager'")

    tokens = load_tokens(args.tokens_json)
    V = model.config.vocab_size
    if int(tokens.max()) >= V or int(tokens.min()) < 0:
        raise SystemExit(f"token ids must be in [0, {V})")
    with torch.no_grad():
        logits = model(tokens[:, :-1], use_cache=False).logits.float()
        loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))

    result = {
        "loss": float(loss.item()),
        "logits_sample": [float(x) for x in logits[0, 0, :16]],
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "rows": int(tokens.shape[0]),
        "T": int(tokens.shape[1] - 1),
        "tied": bool(tied),
        "file_keys": file_keys,
        "problems": problems,
        "warnings": warnings,
    }
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


if __name__ == "__main__":
    main()
