#!/usr/bin/env python3
"""Reference for the gradient horizon: g_{l,i,t} = dℓ_t / dh_{l,i} by torch.autograd.

Model: the random GPT-2 of Tests/Fixtures/gpt2_tiny/hf (transformers, eager attention). Tokens: the
first TP+1 = 17 tokens of row 0 of Tests/Fixtures/gpt2_tiny/reference.json (T = 16 predictions).
ℓ_t is the cross-entropy of the prediction at position t (not divided by T). h_{l,i} is the residual
stream entering block l (l = 0..L-1) and, for l = L, the residual after the last block, before ln_f.

Writes Tests/Fixtures/gpt2_tiny/horizon_reference.safetensors with one F32 tensor
    grads [L+1, T, T, C]   grads[l, t, i] = dℓ_t/dh_{l,i}   (zero for i > t)
and horizon_reference.json with the losses ℓ_t and the horizon table for max offset T-1:
mean_norm[l][k] = mean over i of ||g_{l,i,i+k}||.

Run: /opt/refenv/bin/python tools/reference/horizon_reference.py
"""
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "Tests", "Fixtures", "gpt2_tiny")
T = 16


def main():
    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_pretrained(os.path.join(FIX, "hf"), attn_implementation="eager").float().eval()
    tokens = torch.tensor(json.load(open(os.path.join(FIX, "reference.json")))["tokens"][0][: T + 1])
    inputs, targets = tokens[:-1].unsqueeze(0), tokens[1:]
    L = model.config.n_layer

    captured = []

    def grab(_module, args, kwargs=None):
        x = args[0] if args else kwargs["hidden_states"]
        captured.append(x)

    hooks = [blk.register_forward_pre_hook(grab, with_kwargs=False) for blk in model.transformer.h]
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(grab))
    logits = model(inputs).logits[0]  # (T, V)
    for h in hooks:
        h.remove()
    assert len(captured) == L + 1
    losses = F.cross_entropy(logits, targets, reduction="none")  # ℓ_t

    C = model.config.n_embd
    grads = torch.zeros(L + 1, T, T, C)
    for t in range(T):
        gs = torch.autograd.grad(losses[t], captured, retain_graph=True)
        for l, g in enumerate(gs):
            grads[l, t] = g[0]
            assert t + 1 == T or g[0, t + 1:].abs().max().item() == 0.0  # causality: no gradient after t

    norms = grads.norm(dim=-1)  # (L+1, t, i)
    mean_norm = [[float(torch.stack([norms[l, i + k, i] for i in range(T - k)]).mean()) for k in range(T)]
                 for l in range(L + 1)]
    save_file({"grads": grads.contiguous()}, os.path.join(FIX, "horizon_reference.safetensors"), metadata={"format": "pt"})
    json.dump({"T": T, "losses": [float(x) for x in losses], "mean_norm": mean_norm,
               "definition": "grads[l, t, i] = d loss_t / d h_{l,i}; h_{l,i} enters block l, l = L is before ln_f",
               "versions": {"torch": torch.__version__}},
              open(os.path.join(FIX, "horizon_reference.json"), "w"), indent=1)
    print("mean_norm layer 0:", [round(x, 5) for x in mean_norm[0][:6]])


if __name__ == "__main__":
    main()
