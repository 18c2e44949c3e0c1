#!/usr/bin/env python3
"""Reference for the activation names of sites some families add: the q/k norms' outputs (Qwen3, OLMo 2) and the
post-norms' inputs (Gemma 2, OLMo 2), with their gradients.

For each family the script loads the committed random model of Tests/Fixtures/families/<family>/hf, runs it in
float64 (transformers' `.double()` model under family_reference.StrictFloat64) on the family's reference tokens,
and records through forward hooks, for every layer l:

  blocks.{l}.attn.q_norm.hook_normalized [B,T,NH,HS]   self_attn.q_norm's output (before RoPE)
  blocks.{l}.attn.k_norm.hook_normalized [B,T,NKV,HS]  self_attn.k_norm's output
  blocks.{l}.ln1_post.hook_in            [B,T,C]       post_attention_layernorm's input (o_proj's output)
  blocks.{l}.ln2_post.hook_in            [B,T,C]       post_feedforward_layernorm's input (down_proj's output)

and each one's gradient of the mean CE loss (NAME.grad), where the family has the site. Writes
Tests/Fixtures/families/named_sites/<family>.safetensors (F32) and named_sites.json (versions, shapes, loss).

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/named_sites_reference.py
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
from refutil import ce_rows  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAMILIES = os.path.join(REPO_ROOT, "Tests", "Fixtures", "families")
OUT = os.path.join(FAMILIES, "named_sites")

# (Myopia's name, module under the decoder layer, output or input, heads: "q", "kv" or None)
SITES = [("attn.q_norm.hook_normalized", "self_attn.q_norm", "output", "q"),
         ("attn.k_norm.hook_normalized", "self_attn.k_norm", "output", "kv"),
         ("ln1_post.hook_in", "post_attention_layernorm", "input", None),
         ("ln2_post.hook_in", "post_feedforward_layernorm", "input", None)]
FAMILIES_WITH_SITES = {"qwen3": [0, 1], "olmo2": [0, 1, 2, 3], "gemma2": [2, 3]}


def module(layer, path):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    record = {"transformers": transformers.__version__, "torch": torch.__version__, "families": {}}
    for family, site_ids in FAMILIES_WITH_SITES.items():
        hf_dir = os.path.join(FAMILIES, family, "hf")
        ref = json.load(open(os.path.join(FAMILIES, family, "reference.json")))
        tokens = torch.tensor(ref["tokens"], dtype=torch.long)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        model = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).double()
        cfg = model.config
        B, T = inputs.shape
        shapes = {"q": (B, T, cfg.num_attention_heads, cfg.head_dim), "kv": (B, T, cfg.num_key_value_heads, cfg.head_dim)}
        captured = {}

        def hook(name, where):
            def fn(_mod, args, out):
                x = out if where == "output" else args[0]
                x.retain_grad()
                captured[name] = x
            return fn

        handles = []
        for l, layer in enumerate(model.model.layers):
            for i in site_ids:
                name, path, where, _ = SITES[i]
                handles.append(module(layer, path).register_forward_hook(hook(f"blocks.{l}.{name}", where)))
        with StrictFloat64() as mode:
            loss = ce_rows(model(input_ids=inputs, use_cache=False).logits, targets).mean()
            loss.backward()
        assert mode.f32_outputs == 0, "a float32 result in the float64 forward"
        for h in handles:
            h.remove()
        tensors, names = {}, {}
        for l in range(cfg.num_hidden_layers):
            for i in site_ids:
                name, _, _, heads = SITES[i]
                key = f"blocks.{l}.{name}"
                value, grad = captured[key].detach(), captured[key].grad
                shape = shapes[heads] if heads else (B, T, cfg.hidden_size)
                tensors[key] = value.reshape(shape).float().contiguous()
                tensors[key + ".grad"] = grad.reshape(shape).float().contiguous()
                names[key] = list(shape)
        save_file(dict(sorted(tensors.items())), os.path.join(OUT, f"{family}.safetensors"), metadata={"format": "pt"})
        record["families"][family] = {"loss": loss.item(), "shapes": names}
        print(f"{family}: {len(names)} sites, loss {loss.item():.6f}")
    with open(os.path.join(OUT, "named_sites.json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
