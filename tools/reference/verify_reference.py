#!/usr/bin/env python3
"""Independent cross-check of the gpt2_tiny fixtures (does not write anything).

Re-derives everything in reference.safetensors / reference.json from hf/model.safetensors with a
from-scratch GPT-2 written with plain torch ops (no transformers), i.e. exactly the maths Myopia
implements:
  * forward in float64: logits, hidden.{l}, resid_final, loss;
  * gradients in float64 with the embedding and LM-head copies of wte kept SEPARATE, then summed,
    to confirm grad.wte.weight is the sum of both contributions;
  * the AdamW trajectory in float32 with a hand-written AdamW (bias-corrected, decoupled decay,
    global-norm clipping), compared with losses, grad_norms and final.<key>.
Exit status 0 when every comparison is within tolerance.

Usage: /opt/refenv/bin/python tools/reference/verify_reference.py [Tests/Fixtures/gpt2_tiny]
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(P, tok, cfg, head=None):
    """P: dict of canonical keys -> tensors. Conv1D weights are [in, out]: y = x @ W + b."""
    n_layer, n_head, eps = cfg["n_layer"], cfg["n_head"], cfg["layer_norm_epsilon"]
    Bn, Tn = tok.shape
    x = P["wte.weight"][tok] + P["wpe.weight"][torch.arange(Tn)][None]
    C = x.shape[-1]
    hd = C // n_head
    mask = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    hidden = []
    for i in range(n_layer):
        p = lambda k: P[f"h.{i}.{k}"]
        hidden.append(x)
        h = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(Bn, Tn, n_head, hd).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(Bn, Tn, C)
        x = x + (y @ p("attn.c_proj.weight") + p("attn.c_proj.bias"))
        h = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        m = gelu_new(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
        x = x + (m @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias"))
    resid_final = x
    x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], eps)
    logits = x @ (P["wte.weight"] if head is None else head).T
    return logits, hidden, resid_final


def ce(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO_ROOT, "Tests", "Fixtures", "gpt2_tiny")
    torch.set_num_threads(1)
    ref = json.load(open(os.path.join(d, "reference.json")))
    R = load_file(os.path.join(d, "reference.safetensors"))
    init = {k[len("transformer."):] if k.startswith("transformer.") else k: v
            for k, v in load_file(os.path.join(d, "hf", "model.safetensors")).items()}
    cfg = ref["config"]
    keys = ref["param_keys"]
    assert sorted(keys) == sorted(init.keys()), (sorted(keys), sorted(init.keys()))
    failures = []

    def check(name, got, want, atol, rtol=0.0):
        got, want = got.double(), want.double()
        err = (got - want).abs().max().item()
        lim = atol + rtol * want.abs().max().item()
        ok = err <= lim
        if not ok:
            failures.append(name)
        return err, ok

    # ---- forward + backward in float64, head kept separate from the embedding
    tok = torch.tensor(ref["tokens"])
    P = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    head = init["wte.weight"].double().clone().requires_grad_(True)
    logits, hidden, resid_final = forward(P, tok[:, :-1], cfg, head=head)
    loss = ce(logits, tok[:, 1:])
    loss.backward()

    worst = {}
    worst["logits"] = check("logits", logits, R["logits"], 2e-5)
    for l, h in enumerate(hidden):
        worst[f"hidden.{l}"] = check(f"hidden.{l}", h, R[f"hidden.{l}"], 2e-5)
    worst["resid_final"] = check("resid_final", resid_final, R["resid_final"], 2e-5)
    lerr = abs(loss.item() - ref["loss"])
    if lerr > 2e-6:
        failures.append("loss")
    gw = 0.0
    for k in keys:
        g = P[k].grad + (head.grad if k == "wte.weight" else 0)
        e, ok = check(f"grad.{k}", g, R[f"grad.{k}"], 1e-6, 1e-4)
        gw = max(gw, e)
    # Emb-only or head-only would be clearly wrong: make sure the fixture holds the SUM.
    emb_only = (P["wte.weight"].grad - R["grad.wte.weight"].double()).abs().max().item()
    head_only = (head.grad - R["grad.wte.weight"].double()).abs().max().item()

    print(f"loss: fixture {ref['loss']!r}  float64 {loss.item()!r}  |diff| {lerr:.2e}")
    for k, (e, ok) in worst.items():
        print(f"  {k:12s} max|diff| {e:.2e} {'ok' if ok else 'FAIL'}")
    print(f"  grads        max|diff| {gw:.2e}  (wte: emb-only off by {emb_only:.2e}, head-only off by {head_only:.2e})")

    # ---- AdamW trajectory in float32 with a hand-written optimiser
    A = ref["adamw"]
    b1, b2 = A["betas"]
    eps, wd, clip = A["eps"], A["weight_decay"], A["clip"]
    W = {k: v.float().clone().requires_grad_(True) for k, v in init.items()}
    m = {k: torch.zeros_like(v) for k, v in W.items()}
    v2 = {k: torch.zeros_like(v) for k, v in W.items()}
    train = torch.tensor(A["train_tokens"])
    losses, norms = [], []
    for s in range(A["total"]):
        lr = A["lrs"][s]
        lg, _, _ = forward(W, train[s][:, :-1], cfg)
        l = ce(lg, train[s][:, 1:])
        grads = torch.autograd.grad(l, [W[k] for k in keys])
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        scale = min(1.0, clip / (norm + 1e-6))  # same formula as torch.nn.utils.clip_grad_norm_
        losses.append(l.item())
        norms.append(norm)
        with torch.no_grad():
            for k, g in zip(keys, grads):
                g = g * scale
                p = W[k]
                if p.dim() >= 2:
                    p.mul_(1 - lr * wd)
                m[k].mul_(b1).add_(g, alpha=1 - b1)
                v2[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1 = 1 - b1 ** (s + 1)
                bc2 = 1 - b2 ** (s + 1)
                denom = (v2[k].sqrt() / math.sqrt(bc2)).add_(eps)
                p.addcdiv_(m[k], denom, value=-lr / bc1)
    lmax = max(abs(a - b) for a, b in zip(losses, A["losses"]))
    nmax = max(abs(a - b) / b for a, b in zip(norms, A["grad_norms"]))
    if lmax > 1e-5:
        failures.append("adamw.losses")
    if nmax > 1e-4:
        failures.append("adamw.grad_norms")
    fw = 0.0
    for k in keys:
        e, ok = check(f"final.{k}", W[k], R[f"final.{k}"], 2e-5)
        fw = max(fw, e)
    moved = max((R[f"final.{k}"].double() - init[k].double()).abs().max().item() for k in keys)
    print(f"AdamW: losses max|diff| {lmax:.2e}, grad_norms max rel diff {nmax:.2e}, "
          f"final params max|diff| {fw:.2e} (params moved up to {moved:.2e})")

    if failures:
        print("FAILED:", failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
