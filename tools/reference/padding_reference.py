#!/usr/bin/env python3
"""Reference for `pad_token_id`: the embedding row nn.Embedding(padding_idx=...) gives no lookup gradient.

Families read under Llama's keys build their embedding as nn.Embedding(vocab, hidden, padding_idx=pad_token_id),
so wherever the pad id is an input its row gets no gradient from the lookup (a tied head's gradient still reaches
it). Gemma2Config defaults pad_token_id to 0 and Olmo2Config to 1; a negative id counts from the end.

For each case below the script loads the committed random model of Tests/Fixtures/families/<family>/hf with the
pad_token_id given, places that id among the inputs of the family's reference tokens, and computes in float64
(transformers' `.double()` model under family_reference.StrictFloat64) the mean CE loss and the gradient of the
embedding matrix. Writes Tests/Fixtures/families/padding/<case>.safetensors (F32: `grad.embed` [V,C]) and
padding.json (per case: family, pad_token_id, tokens [B][T+1], loss, and the norm of the pad row's lookup
gradient that padding_idx removed, which must be far from 0 for the case to test anything).

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/padding_reference.py
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
import transformers
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(__file__))
from family_reference import StrictFloat64  # noqa: E402
from refutil import ce_rows, Checker, sig  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAMILIES = os.path.join(REPO_ROOT, "Tests", "Fixtures", "families")
OUT = os.path.join(FAMILIES, "padding")

# (case, family, pad_token_id or "default"): the family default, and a negative id read from the end.
CASES = [("gemma2", "gemma2", "default"), ("olmo2", "olmo2", "default"), ("qwen2_negative", "qwen2", -3)]


def grads(hf_dir, tokens, **kw):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32, **kw).double()
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    with StrictFloat64() as mode:
        loss = ce_rows(model(input_ids=inputs, use_cache=False).logits, targets).mean()
        loss.backward()
    assert mode.f32_outputs == 0, "a float32 result in the float64 forward"
    emb = model.get_input_embeddings()
    return loss.item(), emb.weight.grad.detach().clone(), emb.padding_idx


def main():
    torch.set_num_threads(1)
    check = Checker()
    os.makedirs(OUT, exist_ok=True)
    record = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": {}}
    for case, family, pad in CASES:
        hf_dir = os.path.join(FAMILIES, family, "hf")
        ref = json.load(open(os.path.join(FAMILIES, family, "reference.json")))
        tokens = torch.tensor(ref["tokens"], dtype=torch.long)
        vocab = ref["config"]["vocab_size"]
        kw = {} if pad == "default" else {"pad_token_id": pad}
        # The committed config says null: drop it so the family default applies.
        if pad == "default":
            config = transformers.AutoConfig.from_pretrained(hf_dir)
            default = type(config)().pad_token_id
            kw = {"pad_token_id": default}
            pad_id = default
        else:
            pad_id = pad
        row = pad_id % vocab
        tokens[:, 2] = row
        tokens[0, 5] = row
        loss, grad, padding_idx = grads(hf_dir, tokens, **kw)
        _, free, none_idx = grads(hf_dir, tokens, pad_token_id=None)
        check(padding_idx == row and none_idx is None, f"{case}: padding_idx {padding_idx}, expected {row}")
        removed = (free[row] - grad[row]).norm().item()
        check(removed > 1e-4, f"{case}: padding_idx removes the lookup gradient of row {row} ({removed:.3g})")
        others = torch.cat([free[:row], free[row + 1:]]) - torch.cat([grad[:row], grad[row + 1:]])
        check(others.abs().max().item() == 0, f"{case}: the other rows are unchanged")
        save_file({"grad.embed": grad.float().contiguous()}, os.path.join(OUT, f"{case}.safetensors"),
                  metadata={"format": "pt"})
        record["cases"][case] = {"family": family, "pad_token_id": pad_id, "row": row,
                                 "tokens": tokens.tolist(), "loss": loss,
                                 "removed_lookup_grad_norm": sig(removed, 4)}
        print(f"{case}: pad {pad_id} (row {row}), loss {loss:.6f}, lookup gradient removed {removed:.4g}")
    with open(os.path.join(OUT, "padding.json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    if check.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
