#!/usr/bin/env python3
"""Reference loss and gradients for Myopia's local-myopic flow (the local myopia bonus of Wu,
Morris & Levine 2024) on the gpt2_tiny and llama_tiny fixtures.

Local-myopic: a FROZEN reference model runs on the same tokens; in every layer, the trained model's
query at position t attends, for s < t, to the keys and values the reference computed from its own
hidden states (Llama: after RoPE), and on the diagonal s = t to its own k_t, v_t:

    S_ts = q_t . k_ref_s / sqrt(HS)  (s < t),   q_t . k_t / sqrt(HS)  (s = t)
    o_t  = sum_{s<t} A_ts v_ref_s + A_tt v_t

The reference's keys and values are computed under torch.no_grad(): constants. So the loss at t
reaches only position t's own computation and the shared weights of the trained model, never
positions s < t and never the reference's parameters. This script writes the construction
literally (torch.where on the diagonal, zeroed diagonal times v_ref plus diag(A) times v), a
different arithmetic from Myopia's (which runs the GEMMs on the reference's rows and then moves the
diagonal by adding q_t.(k_t - k_ref_t) and A_tt (v_t - v_ref_t)); both are checked to agree here.

The reference is the fixture's model (Tests/Fixtures/{gpt2_tiny,llama_tiny}/hf). The trained model
is the reference plus a seeded perturbation (norm weights + 0.1 N(0,1), every other tensor
+ 0.5 std(tensor) N(0,1)), rounded to float16 and stored, so that Myopia loads exactly the same
weights. Tokens: the fixture's reference.json (inputs = tokens[:, :-1], targets = tokens[:, 1:]),
loss = mean cross-entropy over B*T predictions.

Writes, into each fixture folder:

  local_myopic_reference.safetensors
      trained.<key>    F16  the trained model's weights (HF keys; GPT-2 without `transformer.`)
      grad.<key>       F32  d(local-myopic mean CE)/d(trained param), computed in float64
  local_myopic_reference.json
      losses (local-myopic of the trained model, its vanilla loss, the reference's vanilla loss, the
      zero-step local-myopic loss), the checks below with their measured values, versions.

Checks (float64): the zero-step local-myopic loss and logits equal the reference's own (vanilla)
ones; the literal construction equals the moved-diagonal one; the reference's parameters get no
gradient (autograd reports them unused); the loss at one position t has exactly zero gradient with
respect to every residual stream at positions s != t; the fp32 run agrees with fp64.

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/local_myopic_reference.py
"""

import argparse
import hashlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

import safetensors
from safetensors.torch import load_file, save_file
import transformers

from refutil import ce_rows, Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "Tests", "Fixtures")
SEED_PERTURB = {"gpt2": 11, "llama": 12}
EQUAL_F64 = 1e-12


# ============================================================================ attention

def attention(q, k, v, past, mode):
    """q [B,H,T,HS], k/v [B,H,T,HS] (key/value heads already repeated for GQA).
    past: None (vanilla) or (k_ref, v_ref) with the same shapes, constants.
    mode: "literal" or "moved" (the two constructions of local-myopic attention)."""
    Tn, hs = q.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(hs)
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    eye = torch.eye(Tn, dtype=torch.bool)
    if past is None:
        S = (q @ k.transpose(-1, -2)) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        return A @ v
    k_ref, v_ref = past
    if mode == "literal":
        S = torch.where(eye, torch.diag_embed((q * k).sum(-1)), q @ k_ref.transpose(-1, -2)) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A.masked_fill(eye, 0.0) @ v_ref + a_diag.unsqueeze(-1) * v
    if mode == "moved":
        S = q @ k_ref.transpose(-1, -2) + torch.diag_embed((q * (k - k_ref)).sum(-1))
        A = (S * scale).masked_fill(~causal, float("-inf")).softmax(-1)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A @ v_ref + a_diag.unsqueeze(-1) * (v - v_ref)
    raise ValueError(mode)


# ============================================================================ GPT-2

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def split_heads(t, n):
    Bn, Tn, D = t.shape
    return t.view(Bn, Tn, n, D // n).transpose(1, 2)  # [B,n,T,HS]


def gpt2_forward(P, tok, cfg, past=None, mode="literal"):
    """Returns logits, [residual entering block l] + [final residual], [(k, v) per layer]."""
    n_layer, n_head, eps = cfg["n_layer"], cfg["n_head"], cfg["layer_norm_epsilon"]
    Bn, Tn = tok.shape
    x = P["wte.weight"][tok] + P["wpe.weight"][torch.arange(Tn)][None]
    C = x.shape[-1]
    resid, kvs = [], []
    for i in range(n_layer):
        p = lambda k: P[f"h.{i}.{k}"]
        resid.append(x)
        h = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        q, k, v = (split_heads(t, n_head) for t in (h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")).split(C, dim=-1))
        kvs.append((k, v))
        o = attention(q, k, v, None if past is None else past[i], mode)
        x = x + (o.transpose(1, 2).reshape(Bn, Tn, C) @ p("attn.c_proj.weight") + p("attn.c_proj.bias"))
        h = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        x = x + (gelu_new(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias")) @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias"))
    resid.append(x)
    x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], eps)
    return x @ P["wte.weight"].T, resid, kvs


# ============================================================================ Llama

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_half(x, Tn, theta):
    hs = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=x.dtype) / hs))
    ang = torch.arange(Tn, dtype=x.dtype)[:, None] * inv_freq[None, :]
    cos, sin = ang.cos(), ang.sin()
    h = hs // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def llama_forward(P, tok, cfg, past=None, mode="literal"):
    """Returns logits, residuals, [(k, v) per layer] with k after RoPE and both repeated to NH heads."""
    nl, nh, nkv, hs = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_parameters"]["rope_theta"]
    groups = nh // nkv
    Bn, Tn = tok.shape
    x = P["model.embed_tokens.weight"][tok]
    resid, kvs = [], []
    for i in range(nl):
        p = lambda k: P[f"model.layers.{i}.{k}"]
        resid.append(x)
        h = rms_norm(x, p("input_layernorm.weight"), eps)
        q = rope_half(split_heads(h @ p("self_attn.q_proj.weight").T, nh), Tn, theta)
        k = rope_half(split_heads(h @ p("self_attn.k_proj.weight").T, nkv), Tn, theta).repeat_interleave(groups, dim=1)
        v = split_heads(h @ p("self_attn.v_proj.weight").T, nkv).repeat_interleave(groups, dim=1)
        kvs.append((k, v))
        o = attention(q, k, v, None if past is None else past[i], mode)
        x = x + o.transpose(1, 2).reshape(Bn, Tn, nh * hs) @ p("self_attn.o_proj.weight").T
        h = rms_norm(x, p("post_attention_layernorm.weight"), eps)
        x = x + (F.silu(h @ p("mlp.gate_proj.weight").T) * (h @ p("mlp.up_proj.weight").T)) @ p("mlp.down_proj.weight").T
    resid.append(x)
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return x @ head.T, resid, kvs


# ============================================================================ runs

def reference_past(forward, R, tok, cfg, dtype):
    """The frozen reference's keys and values on the inputs: constants."""
    with torch.no_grad():
        P = {k: v.to(dtype) for k, v in R.items()}
        logits, _, kvs = forward(P, tok[:, :-1], cfg)
    return [(k.detach(), v.detach()) for k, v in kvs], logits


def local_myopic(forward, W, R, keys, tok, cfg, dtype, mode="literal"):
    """Loss, logits, parameter gradients of the trained weights W, with the reference R's past."""
    past, _ = reference_past(forward, R, tok, cfg, dtype)
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in W.items()}
    logits, resid, _ = forward(P, tok[:, :-1], cfg, past, mode)
    loss = ce_rows(logits, tok[:, 1:]).mean()
    gs = torch.autograd.grad(loss, [P[k] for k in keys], allow_unused=True)
    grads = {k: torch.zeros_like(P[k]) if g is None else g.detach() for k, g in zip(keys, gs)}
    return {"loss": loss.detach(), "logits": logits.detach(), "grads": grads}


def vanilla(forward, W, tok, cfg, dtype):
    with torch.no_grad():
        P = {k: v.to(dtype) for k, v in W.items()}
        logits, _, _ = forward(P, tok[:, :-1], cfg)
        return ce_rows(logits, tok[:, 1:]).mean(), logits


def perturb(R, seed):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(R):
        v = R[k].double()
        if k.endswith("norm.weight") or ".ln_" in k or k.startswith("ln_f."):
            d = 0.1 * torch.randn(v.shape, generator=g, dtype=torch.float64)
        else:
            d = 0.5 * v.std() * torch.randn(v.shape, generator=g, dtype=torch.float64)
        out[k] = (v + d).to(torch.float16)
    return out


def family(name, folder, out, check):
    ref = json.load(open(os.path.join(folder, "reference.json")))
    tok = torch.tensor(ref["tokens"])
    Bn, Tn = tok.shape[0], tok.shape[1] - 1
    raw = load_file(os.path.join(folder, "hf", "model.safetensors"))
    if name == "gpt2":
        R = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in raw.items()}
        R = {k: v for k, v in R.items() if k != "lm_head.weight"}
        cfg = json.load(open(os.path.join(folder, "hf", "config.json")))
        forward = gpt2_forward
    else:
        R = dict(raw)
        cfg = json.load(open(os.path.join(folder, "hf", "config.json")))
        if "head_dim" not in cfg:
            cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
        cfg.setdefault("tie_word_embeddings", False)
        forward = llama_forward
    keys = sorted(R)
    W16 = perturb(R, SEED_PERTURB[name])
    W = {k: v.double() for k, v in W16.items()}
    R64 = {k: v.double() for k, v in R.items()}

    # 1. the local-myopic gradients, float64 (saved) and float32 (a guide for Myopia's tolerance)
    lm = local_myopic(forward, W, R64, keys, tok, cfg, torch.float64, "literal")
    moved = local_myopic(forward, W, R64, keys, tok, cfg, torch.float64, "moved")
    lm32 = local_myopic(forward, W, R64, keys, tok, cfg, torch.float32, "literal")
    construction = max(rel(moved["grads"][k], lm["grads"][k]) for k in keys)
    check(construction < EQUAL_F64, f"{name}: literal vs moved-diagonal gradients {construction:.3g}")
    check(abs(moved["loss"].item() - lm["loss"].item()) < EQUAL_F64, f"{name}: literal vs moved loss")
    fp32 = max(rel(lm32["grads"][k], lm["grads"][k]) for k in keys)
    check(fp32 < 1e-4, f"{name}: fp32 vs fp64 gradients {fp32:.3g}")
    nonzero = [k for k in keys if lm["grads"][k].abs().max().item() > 0]
    check(len(nonzero) == len(keys), f"{name}: every trained parameter gets a gradient ({len(nonzero)}/{len(keys)})")

    # 2. zero fine-tuning steps: the trained model is the reference, and the local-myopic loss is the
    #    reference's own, with the same logits
    zero = local_myopic(forward, R64, R64, keys, tok, cfg, torch.float64, "moved")
    ref_loss, ref_logits = vanilla(forward, R64, tok, cfg, torch.float64)
    zero_lit = local_myopic(forward, R64, R64, keys, tok, cfg, torch.float64, "literal")
    zero_diff = abs(zero["loss"].item() - ref_loss.item())
    zero_logits = maxabs(zero["logits"], ref_logits)
    check(zero_diff == 0.0 and zero_logits == 0.0, f"{name}: zero steps (moved) loss {zero_diff:.3g}, logits {zero_logits:.3g}")
    check(abs(zero_lit["loss"].item() - ref_loss.item()) < EQUAL_F64, f"{name}: zero steps (literal)")
    trained_vanilla, _ = vanilla(forward, W, tok, cfg, torch.float64)
    # How far the local-myopic gradients are from the trained model's vanilla ones (what a test
    # comparing against the wrong flow would see).
    Pv = {k: v.clone().requires_grad_(True) for k, v in W.items()}
    lv, _, _ = forward(Pv, tok[:, :-1], cfg)
    gv = torch.autograd.grad(ce_rows(lv, tok[:, 1:]).mean(), [Pv[k] for k in keys])
    vs_vanilla = {k: sig(rel(lm["grads"][k], g), 3) for k, g in zip(keys, gv)}

    # 3. nothing reaches the reference: with its parameters live (requires_grad), autograd reports
    #    them unused, because its keys and values are computed under no_grad
    Rlive = {k: v.clone().requires_grad_(True) for k, v in R64.items()}
    with torch.no_grad():
        _, _, kvs = forward(Rlive, tok[:, :-1], cfg)
    P = {k: v.clone().requires_grad_(True) for k, v in W.items()}
    logits, _, _ = forward(P, tok[:, :-1], cfg, kvs, "literal")
    loss = ce_rows(logits, tok[:, 1:]).mean()
    gref = torch.autograd.grad(loss, [Rlive[k] for k in keys], allow_unused=True)
    check(all(g is None for g in gref), f"{name}: reference parameters get no gradient")

    # 4. no cross-position gradient: the loss at one position t reaches the residual streams at
    #    position t only (vanilla: also every s < t)
    past, _ = reference_past(forward, R64, tok, cfg, torch.float64)
    cross = {}
    for flow in ("local-myopic", "vanilla"):
        P = {k: v.clone().requires_grad_(True) for k, v in W.items()}
        logits, resid, _ = forward(P, tok[:, :-1], cfg, past if flow == "local-myopic" else None, "literal")
        rows = ce_rows(logits, tok[:, 1:])
        worst_off, worst_on = 0.0, 0.0
        for t in (Tn // 2, Tn - 1):
            gs = torch.autograd.grad(rows[:, t].sum(), resid, retain_graph=True)
            for g in gs:
                off = torch.cat([g[:, :t], g[:, t + 1:]], dim=1)
                worst_off = max(worst_off, off.abs().max().item() if off.numel() else 0.0)
                worst_on = max(worst_on, g[:, t].abs().max().item())
        cross[flow] = {"max_abs_off_position": worst_off, "max_abs_own_position": sig(worst_on, 4)}
    check(cross["local-myopic"]["max_abs_off_position"] == 0.0, f"{name}: local-myopic cross-position gradient")
    check(cross["vanilla"]["max_abs_off_position"] > 1e-6, f"{name}: vanilla has cross-position gradient")

    tensors = {}
    for k in keys:
        tensors[f"trained.{k}"] = W16[k].contiguous()
        tensors[f"grad.{k}"] = lm["grads"][k].float().contiguous()
    st_path = os.path.join(out, "local_myopic_reference.safetensors")
    save_file(dict(sorted(tensors.items())), st_path, metadata={"format": "pt"})

    doc = {
        "source": "tools/reference/local_myopic_reference.py",
        "reference_model": os.path.relpath(os.path.join(folder, "hf"), REPO_ROOT),
        "tokens": f"reference.json `tokens` ({Bn}x{Tn + 1}): inputs = tokens[:, :-1], targets = tokens[:, 1:]; "
                  f"loss = mean cross-entropy over B*T = {Bn * Tn} predictions",
        "B": Bn, "T": Tn,
        "trained_model": "the reference plus a seeded perturbation (norm weights + 0.1 N(0,1), other tensors "
                         "+ 0.5 std N(0,1)), rounded to float16: trained.<key> (F16)",
        "definition": "local-myopic: every layer's query at t attends, for s < t, to the frozen reference's keys and "
                      "values (computed from the reference's own hidden states; Llama after RoPE), and on the diagonal "
                      "to the trained model's own k_t, v_t. The reference's keys/values are constants.",
        "losses": {
            "local_myopic": lm["loss"].item(),
            "local_myopic_fp32_run": lm32["loss"].item(),
            "trained_vanilla": trained_vanilla.item(),
            "reference_vanilla": ref_loss.item(),
            "zero_step_local_myopic": zero["loss"].item(),
        },
        "tensors": {"trained.<key>": "F16 weights of the trained model",
                    "grad.<key>": "d(local-myopic mean CE)/d(trained param), float64 rounded to F32"},
        "checks": {
            "literal_vs_moved_diagonal_grads_max_rel": sig(construction, 3),
            "fp32_vs_fp64_grads_max_rel": sig(fp32, 3),
            "zero_steps_loss_abs_diff": zero_diff,
            "zero_steps_logits_max_abs_diff": zero_logits,
            "reference_params_unused": True,
            "cross_position_gradient": cross,
            "rel_diff_to_trained_vanilla_grads": vs_vanilla,
            "cross_position_note": "max |d l_t / d h_{l,s}| over s != t, every layer l (and after the last block), "
                                   "t in {T/2, T-1}: exactly zero under local-myopic, nonzero under vanilla.",
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "python": sys.version.split()[0]},
    }
    json_path = os.path.join(out, "local_myopic_reference.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: local-myopic loss {lm['loss'].item():.9g}, trained vanilla {trained_vanilla.item():.9g}, "
          f"reference {ref_loss.item():.9g}; literal vs moved {construction:.3g}; fp32 vs fp64 {fp32:.3g}; "
          f"grads vs vanilla's: min rel {min(vs_vanilla.values()):.3g}")
    for p in (st_path, json_path):
        print(f"  {os.path.relpath(p, REPO_ROOT):60s} {os.path.getsize(p):9d} B  sha256 {file_sha256(p)[:16]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="write both families' files here instead of their fixture folders")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    check = Checker()
    for name, sub in (("gpt2", "gpt2_tiny"), ("llama", "llama_tiny")):
        folder = os.path.join(FIXTURES, sub)
        out = os.path.abspath(os.path.join(args.out, sub)) if args.out else folder
        os.makedirs(out, exist_ok=True)
        family(name, folder, out, check)
    print("versions:", {"torch": torch.__version__, "transformers": transformers.__version__,
                        "safetensors": safetensors.__version__})
    if check.failures:
        print("FAILED:", check.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
