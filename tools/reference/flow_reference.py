#!/usr/bin/env python3
"""Reference gradients for Myopia's gradient flows (docs/DESIGN.md §4) on the gpt2_tiny fixture.

Loads Tests/Fixtures/gpt2_tiny/hf (the random GPT-2 written by gpt2_reference.py) and the eval
tokens of reference.json (inputs = tokens[:, :-1], targets = tokens[:, 1:], mean cross-entropy
over B*T). It re-implements GPT-2's forward in plain torch ops and checks it against HF, then
computes the loss and the parameter gradients under each flow:

  vanilla     ordinary backprop (only its grad_input.* are saved; its parameter gradients are
              the grad.* tensors of reference.safetensors).
  myopic      myopic descent (Wu, Morris & Levine 2024): in every layer's attention, the keys and
              values that a query at t reads for an earlier position s < t are computed from a
              DETACHED copy of the attention input (the ln_1 output) with LIVE weights and biases.
              The diagonal s = t uses live keys and values. Forward values are unchanged.
  beta0.5     interpolated flow, beta = 0.5: the off-diagonal key/value gradient reaching the
              ln_1 output is scaled by beta, while the weights and biases get all of it.
  bigram      forward variant: each position attends only to itself (o_t = v_t).

Writes, under Tests/Fixtures/gpt2_tiny/ (or --out):

  flow_reference.safetensors (all F32)
      <flow>.grad.<key>          d(mean CE)/d(param), key without `transformer.`; wte.weight
                                 includes the tied head's part. flow in myopic, beta0.5, bigram.
      <flow>.grad_input.{l}      d(mean CE)/d(residual entering block l), [B,T,n_embd]
      <flow>.grad_input.final    d(mean CE)/d(residual after the last block, before ln_f)
                                 (grad_input.* also for flow = vanilla)
  flow_reference.json
      losses, definitions, invariants (which gradients are exactly equal and why, with the
      measured differences), relative differences to vanilla per parameter, fp32 tolerances,
      versions.

The saved values are computed in float64 and rounded to float32 once, at the end. An fp32 run of
the same code is checked against them, and the JSON records how far apart the two are (a guide
for the tolerances of Myopia's fp32 tests). CPU, one thread, deterministic: two runs give
byte-identical files.

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/flow_reference.py
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
from transformers import GPT2LMHeadModel

from refutil import Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_DIR = os.path.join(REPO_ROOT, "Tests", "Fixtures", "gpt2_tiny")

BETA = 0.5
SAVED_FLOWS = ["myopic", "beta0.5", "bigram"]

# Thresholds used to classify measured float64 relative differences.
EQUAL_F64 = 1e-12   # "exactly equal in exact arithmetic": float64 differences are at most this
DIFFER = 1e-4       # "really differs": relative differences are at least this


# ============================================================================ model

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def heads(t, n_head):
    Bn, Tn, C = t.shape
    return t.view(Bn, Tn, n_head, C // n_head).transpose(1, 2)  # [B,H,T,hs]


def attention_core(x, W, b, n_head, flow, beta):
    """x: ln_1 output [B,T,C]; W: c_attn.weight [C,3C]; returns o [B,H,T,hs] (before c_proj).

    flow:
      "vanilla"  plain causal attention.
      "split"    myopic, written literally: scores = q·k_detᵀ with the diagonal replaced by the
                 row-wise q_t·k_live_t; o = (A with zeroed diagonal)·v_det + diag(A)·v_live.
      "interp"   interpolated(beta): the off-diagonal keys/values come from
                 x_beta = x.detach() + beta·(x − x.detach()) (value exactly x, gradient to x
                 scaled by beta); the diagonal term is switched to the live keys/values by adding
                 q_t·(k_live_t − k_off_t) (exactly 0) to the diagonal score and
                 diag(A)·(v_live − v_off) (exactly 0) to the output. The forward therefore
                 performs the same floating-point operations as vanilla, so forward values are
                 bit-identical. beta = 0 is myopic, beta = 1 vanilla.
      "bigram"   each position attends only to itself: o_t = v_t.
    """
    C = x.shape[-1]
    hs = C // n_head
    Tn = x.shape[1]
    scale = 1.0 / math.sqrt(hs)
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    eye = torch.eye(Tn, dtype=torch.bool)

    qkv = x @ W + b
    q, k, v = (heads(t, n_head) for t in qkv.split(C, dim=-1))

    if flow == "vanilla":
        S = (q @ k.transpose(-1, -2)) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        return A @ v
    if flow == "bigram":
        return v
    if flow == "split":
        qkv_d = x.detach() @ W + b
        _, k_d, v_d = (heads(t, n_head) for t in qkv_d.split(C, dim=-1))
        S_off = q @ k_d.transpose(-1, -2)
        d = (q * k).sum(-1)  # q_t · k_live_t, [B,H,T]
        S = torch.where(eye, torch.diag_embed(d), S_off) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        A_off = A.masked_fill(eye, 0.0)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)  # [B,H,T]
        return A_off @ v_d + a_diag.unsqueeze(-1) * v
    if flow == "interp":
        xd = x.detach()
        x_beta = xd + beta * (x - xd)
        qkv_o = x_beta @ W + b
        _, k_o, v_o = (heads(t, n_head) for t in qkv_o.split(C, dim=-1))
        S = q @ k_o.transpose(-1, -2)
        S = S + torch.diag_embed((q * (k - k_o)).sum(-1))
        S = S * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A @ v_o + a_diag.unsqueeze(-1) * (v - v_o)
    raise ValueError(flow)


def forward(P, tok, cfg, flow="vanilla", beta=None):
    """P: canonical key -> tensor. Conv1D weights are [in, out]: y = x @ W + b.
    Returns (logits, [residual entering block l for each l] + [final residual])."""
    n_layer, n_head, eps = cfg["n_layer"], cfg["n_head"], cfg["layer_norm_epsilon"]
    Bn, Tn = tok.shape
    x = P["wte.weight"][tok] + P["wpe.weight"][torch.arange(Tn)][None]
    C = x.shape[-1]
    resid = []
    for i in range(n_layer):
        p = lambda k: P[f"h.{i}.{k}"]
        resid.append(x)
        h = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"), eps)
        o = attention_core(h, p("attn.c_attn.weight"), p("attn.c_attn.bias"), n_head, flow, beta)
        y = o.transpose(1, 2).reshape(Bn, Tn, C)
        x = x + (y @ p("attn.c_proj.weight") + p("attn.c_proj.bias"))
        h = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"), eps)
        m = gelu_new(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
        x = x + (m @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias"))
    resid.append(x)
    x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], eps)
    logits = x @ P["wte.weight"].T  # tied head
    return logits, resid


def ce(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def run_flow(init, keys, tok, cfg, dtype, flow, beta=None):
    """Loss, logits, parameter gradients and residual-stream gradients under one flow."""
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    logits, resid = forward(P, tok[:, :-1], cfg, flow, beta)
    loss = ce(logits, tok[:, 1:])
    gs = torch.autograd.grad(loss, [P[k] for k in keys] + resid, allow_unused=True)
    grads = {}
    for k, g in zip(keys, gs[:len(keys)]):
        grads[k] = torch.zeros_like(P[k]) if g is None else g.detach()
    n_layer = cfg["n_layer"]
    gin = {}
    for l, g in enumerate(gs[len(keys):]):
        gin["final" if l == n_layer else str(l)] = g.detach()
    return {"loss": loss.detach(), "logits": logits.detach(), "grads": grads, "gin": gin}


# ============================================================================ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=DEFAULT_DIR, help="gpt2_tiny fixture folder to read (default: Tests/Fixtures/gpt2_tiny)")
    ap.add_argument("--out", default=None, help="output folder (default: same as --dir)")
    args = ap.parse_args()
    d = os.path.abspath(args.dir)
    out = os.path.abspath(args.out or d)
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    check = Checker()

    ref = json.load(open(os.path.join(d, "reference.json")))
    R = load_file(os.path.join(d, "reference.safetensors"))
    cfg = ref["config"]
    keys = ref["param_keys"]
    n_layer = cfg["n_layer"]
    last = n_layer - 1
    tok = torch.tensor(ref["tokens"])
    Bn, Tn = tok.shape[0], tok.shape[1] - 1
    init = {k[len("transformer."):]: v for k, v in load_file(os.path.join(d, "hf", "model.safetensors")).items()}
    assert sorted(init) == sorted(keys), (sorted(init), sorted(keys))

    # ------------------------------------------------------------ 1. vanilla vs HF (fp32)
    model = GPT2LMHeadModel.from_pretrained(os.path.join(d, "hf"), attn_implementation="eager").float()
    model.train()  # dropouts are 0
    assert model.lm_head.weight is model.transformer.wte.weight
    hf_out = model(tok[:, :-1], use_cache=False)
    hf_loss = ce(hf_out.logits, tok[:, 1:])
    hf_loss.backward()
    hf_grads = {k[len("transformer."):]: p.grad.detach() for k, p in model.named_parameters()}
    v32 = run_flow(init, keys, tok, cfg, torch.float32, "vanilla")
    hf_logit_diff = maxabs(v32["logits"], hf_out.logits.detach())
    hf_grad_diff = max(maxabs(v32["grads"][k], hf_grads[k]) for k in keys)
    hf_grad_rel = max(rel(v32["grads"][k], hf_grads[k]) for k in keys if not k.endswith("c_attn.bias"))
    check(hf_logit_diff < 1e-5, f"vanilla fp32 logits vs HF: {hf_logit_diff:.3g}")
    check(hf_grad_diff < 1e-6, f"vanilla fp32 grads vs HF: {hf_grad_diff:.3g}")
    check(abs(v32["loss"].item() - hf_loss.item()) < 1e-6, "vanilla fp32 loss vs HF")
    print(f"vanilla (fp32, plain torch) vs HF: logits max|diff| {hf_logit_diff:.3g}, "
          f"grads max|diff| {hf_grad_diff:.3g} (max rel {hf_grad_rel:.3g}), "
          f"loss {v32['loss'].item():.9g} vs {hf_loss.item():.9g}")

    # ------------------------------------------------------------ 2. all flows, fp64 and fp32
    variants = {
        "vanilla": ("vanilla", None),
        "myopic_split": ("split", None),     # the literal myopic construction
        "interp0": ("interp", 0.0),          # = myopic (the saved one)
        "interp1": ("interp", 1.0),          # = vanilla
        "beta0.5": ("interp", BETA),
        "bigram": ("bigram", None),
    }
    res = {}
    for prec, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        res[prec] = {name: run_flow(init, keys, tok, cfg, dtype, f, b) for name, (f, b) in variants.items()}
    X = res["f64"]
    V = X["vanilla"]
    saved_src = {"myopic": "interp0", "beta0.5": "beta0.5", "bigram": "bigram"}

    # vanilla fp64 vs the gpt2_tiny fixture (HF, fp32)
    fix_grad_diff = max(maxabs(V["grads"][k], R[f"grad.{k}"]) for k in keys)
    fix_loss_diff = abs(V["loss"].item() - ref["loss"])
    fix_logit_diff = maxabs(V["logits"], R["logits"])
    check(fix_grad_diff < 1e-7, f"vanilla fp64 grads vs grad.* fixture: {fix_grad_diff:.3g}")
    check(fix_loss_diff < 1e-6, f"vanilla fp64 loss vs fixture: {fix_loss_diff:.3g}")
    print(f"vanilla (fp64) vs reference.safetensors: grads max|diff| {fix_grad_diff:.3g}, "
          f"logits {fix_logit_diff:.3g}, loss {fix_loss_diff:.3g}")

    def all_grads_rel(a, b):
        worst = 0.0
        for k in keys:
            worst = max(worst, maxabs(a["grads"][k], b["grads"][k]) / max(b["grads"][k].abs().max().item(), 1e-30))
        for k in a["gin"]:
            worst = max(worst, maxabs(a["gin"][k], b["gin"][k]) / b["gin"][k].abs().max().item())
        return worst

    # Self-consistency of the implementations (float64 and float32).
    consistency = {}
    for prec in ("f64", "f32"):
        Y = res[prec]
        tol = 1e-12 if prec == "f64" else 2e-4
        for a, b in (("interp1", "vanilla"), ("interp0", "myopic_split")):
            w = all_grads_rel(Y[a], Y[b])
            consistency[f"{prec}: {a} vs {b}"] = sig(w, 3)
            check(w < tol, f"{prec} {a} vs {b}: {w:.3g}")
        # Forward values of the interp flows are bit-identical to vanilla.
        for a in ("interp0", "interp1", "beta0.5"):
            same = torch.equal(Y[a]["logits"], Y["vanilla"]["logits"])
            check(same, f"{prec} {a} logits bit-identical to vanilla")
        lsplit = maxabs(Y["myopic_split"]["logits"], Y["vanilla"]["logits"])
        consistency[f"{prec}: myopic_split logits vs vanilla max|diff|"] = sig(lsplit, 3)
    print("consistency (max |diff| / max |ref| over all gradients):", consistency)

    # fp32 vs fp64: the tolerance Myopia's fp32 tests can expect.
    fp32_tol = {}
    for name in ["vanilla"] + SAVED_FLOWS:
        src = saved_src.get(name, name)
        a, b = res["f32"][src], X[src]
        gmax = max(maxabs(a["grads"][k], b["grads"][k]) for k in keys)
        imax = max(maxabs(a["gin"][k], b["gin"][k]) for k in b["gin"])
        fp32_tol[name] = {"grads_max_abs": sig(gmax, 2), "grad_input_max_abs": sig(imax, 2),
                          "loss_abs": sig(abs(a["loss"].item() - b["loss"].item()), 2)}
        check(gmax < 1e-6 and imax < 1e-7, f"fp32 vs fp64 {name}: {gmax:.3g} {imax:.3g}")
    print("fp32 vs fp64:", fp32_tol)

    # ------------------------------------------------------------ 3. invariants (float64)
    M, Bt, Bg = X["interp0"], X["beta0.5"], X["bigram"]
    pre_last = f"h.{last}."
    # Parameters whose gradient does not depend on the flow (myopic / beta vs vanilla).
    same_params = ["ln_f.weight", "ln_f.bias"] + [
        pre_last + s for s in ("ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                               "mlp.c_proj.weight", "mlp.c_proj.bias", "attn.c_proj.weight",
                               "attn.c_proj.bias", "attn.c_attn.weight", "attn.c_attn.bias")]
    # Bit-identical even in floating point (with a forward that repeats vanilla's operations):
    # everything the backward reaches before it splits keys/values into diagonal/off-diagonal.
    bit_same_params = [k for k in same_params if "c_attn" not in k]
    diff_params = [k for k in keys if k not in same_params]

    inv = {}
    for fname, F_ in (("myopic", M), ("beta0.5", Bt)):
        worst_same = max(rel(F_["grads"][k], V["grads"][k]) for k in same_params)
        bit_ok = all(torch.equal(F_["grads"][k], V["grads"][k]) for k in bit_same_params)
        min_diff = min(rel(F_["grads"][k], V["grads"][k]) for k in diff_params)
        check(worst_same < EQUAL_F64, f"{fname}: same_params max rel {worst_same:.3g}")
        check(bit_ok, f"{fname}: bit_same_params bit-identical in float64")
        check(min_diff > DIFFER, f"{fname}: diff_params min rel {min_diff:.3g}")
        fin_same = torch.equal(F_["gin"]["final"], V["gin"]["final"])
        check(fin_same, f"{fname}: grad_input.final bit-identical")
        gl = [rel(F_["gin"][str(l)], V["gin"][str(l)]) for l in range(n_layer)]
        check(min(gl) > DIFFER, f"{fname}: grad_input.l differ {gl}")
        # Last position: no later query reads it, so nothing is cut.
        lastpos = max(maxabs(F_["gin"][str(l)][:, -1], V["gin"][str(l)][:, -1])
                      / V["gin"][str(l)][:, -1].abs().max().item() for l in range(n_layer))
        check(lastpos < EQUAL_F64, f"{fname}: last position grad_input {lastpos:.3g}")
        wpe_last = rel(F_["grads"]["wpe.weight"][Tn - 1], V["grads"]["wpe.weight"][Tn - 1])
        check(wpe_last < EQUAL_F64, f"{fname}: wpe row T-1 {wpe_last:.3g}")
        inv[fname] = {"same_params_max_rel": sig(worst_same, 2), "diff_params_min_rel": sig(min_diff, 3),
                      "grad_input_rel": [sig(x, 4) for x in gl], "last_position_max_rel": sig(lastpos, 2),
                      "wpe_row_T-1_rel": sig(wpe_last, 2)}

    # wte rows of token ids that never occur in the inputs only get the (tied) head's gradient.
    present = sorted(set(tok[:, :-1].flatten().tolist()))
    absent = [i for i in range(cfg["vocab_size"]) if i not in set(present)]
    for fname, F_ in (("myopic", M), ("beta0.5", Bt)):
        a_same = torch.equal(F_["grads"]["wte.weight"][absent], V["grads"]["wte.weight"][absent])
        p_rel = rel(F_["grads"]["wte.weight"][present], V["grads"]["wte.weight"][present])
        check(a_same, f"{fname}: wte absent rows bit-identical")
        check(p_rel > DIFFER, f"{fname}: wte present rows differ")
        inv[fname]["wte_present_rows_rel"] = sig(p_rel, 4)
    # wpe rows >= T get nothing in any flow.
    for name, F_ in (("vanilla", V), ("myopic", M), ("beta0.5", Bt), ("bigram", Bg)):
        check(F_["grads"]["wpe.weight"][Tn:].abs().max().item() == 0.0, f"{name}: wpe rows >= T are 0")

    # Interpolation is exactly linear in beta for the last block's input gradient (and ln_1 there),
    # because everything above it is flow-independent; lower layers are polynomial in beta.
    lin = {}
    for what, a, m, v in (
            [(f"grad_input.{last}", Bt["gin"][str(last)], M["gin"][str(last)], V["gin"][str(last)])] +
            [(f"h.{last}.{k}", Bt["grads"][f"h.{last}.{k}"], M["grads"][f"h.{last}.{k}"], V["grads"][f"h.{last}.{k}"])
             for k in ("ln_1.weight", "ln_1.bias")] +
            [(f"grad_input.{l}", Bt["gin"][str(l)], M["gin"][str(l)], V["gin"][str(l)]) for l in range(last)]):
        lin[what] = rel(a, BETA * v + (1 - BETA) * m)
    for k in (f"grad_input.{last}", f"h.{last}.ln_1.weight", f"h.{last}.ln_1.bias"):
        check(lin[k] < EQUAL_F64, f"beta linear at {k}: {lin[k]:.3g}")
    check(lin["grad_input.0"] > 1e-6, "beta not linear below the last block")

    # Myopic grad_input at (l, t) = vanilla gradient of the loss at t alone (horizon offset 0).
    Pv = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    logits, resid = forward(Pv, tok[:, :-1], cfg, "vanilla")
    lt = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                         reduction="none").view(Bn, Tn) / (Bn * Tn)
    diag = [torch.zeros_like(r) for r in resid]
    for t in range(Tn):
        gs = torch.autograd.grad(lt[:, t].sum(), resid, retain_graph=True)
        for l in range(n_layer + 1):
            diag[l][:, t] = gs[l][:, t]
    diag_rel = max(rel(M["gin"]["final" if l == n_layer else str(l)], diag[l]) for l in range(n_layer + 1))
    check(diag_rel < EQUAL_F64, f"myopic grad_input = per-target diagonal: {diag_rel:.3g}")

    # Bigram: queries and keys get no gradient (softmax over one element is constant 1).
    C = cfg["n_embd"]
    qk_zero = all(Bg["grads"][f"h.{i}.attn.c_attn.weight"][:, :2 * C].abs().max().item() == 0.0 and
                  Bg["grads"][f"h.{i}.attn.c_attn.bias"][:2 * C].abs().max().item() == 0.0
                  for i in range(n_layer))
    check(qk_zero, "bigram: q/k slices of c_attn are zero")

    # Key bias: zero in exact arithmetic in every causal flow (softmax ignores a per-query constant).
    kb = {}
    for name, F_ in (("vanilla", V), ("myopic", M), ("beta0.5", Bt)):
        kb[name] = sig(max(F_["grads"][f"h.{i}.attn.c_attn.bias"][C:2 * C].abs().max().item()
                           for i in range(n_layer)), 2)
        check(kb[name] < 1e-15, f"{name}: key bias grad ~ 0 ({kb[name]})")

    # T = 1: no earlier position, so myopic = beta = vanilla (and bigram too: one element).
    t1 = tok[:, :2]
    t1res = {}
    for prec, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        base = run_flow(init, keys, t1, cfg, dtype, "vanilla")
        for name, (f, b) in (("myopic", ("interp", 0.0)), ("myopic_split", ("split", None)),
                             ("beta0.5", ("interp", BETA)), ("bigram", ("bigram", None))):
            r = run_flow(init, keys, t1, cfg, dtype, f, b)
            g = max(maxabs(r["grads"][k], base["grads"][k]) for k in keys)
            g = max([g] + [maxabs(r["gin"][k], base["gin"][k]) for k in base["gin"]])
            t1res[f"{prec}: {name} vs vanilla max|diff|"] = sig(g, 2)
            check(g < (1e-15 if prec == "f64" else 1e-7), f"T=1 {prec} {name}: {g:.3g}")
            check(abs(r["loss"].item() - base["loss"].item()) < (1e-15 if prec == "f64" else 1e-6), f"T=1 loss {name}")
        t1res[f"{prec}: loss"] = base["loss"].item()

    # ------------------------------------------------------------ 4. per-parameter relative differences
    def rel_table(F_):
        return {k: sig(rel(F_["grads"][k], V["grads"][k]), 4) for k in keys}

    def c_attn_slices(F_):
        outd = {}
        for i in range(n_layer):
            for j, part in enumerate("qkv"):
                w = f"h.{i}.attn.c_attn.weight"
                outd[f"h.{i}.attn.c_attn.weight[{part}]"] = sig(rel(F_["grads"][w][:, j * C:(j + 1) * C],
                                                                     V["grads"][w][:, j * C:(j + 1) * C]), 4)
        return outd

    # Saved tensors (F32).
    tensors = {}
    for name in SAVED_FLOWS:
        F_ = X[saved_src[name]]
        for k in keys:
            tensors[f"{name}.grad.{k}"] = F_["grads"][k].float().contiguous()
        for k, g in F_["gin"].items():
            tensors[f"{name}.grad_input.{k}"] = g.float().contiguous()
    for k, g in V["gin"].items():
        tensors[f"vanilla.grad_input.{k}"] = g.float().contiguous()

    # Relative differences of the saved F32 tensors to the gpt2_tiny grad.* fixture (what a test
    # can recompute from the two files).
    def rel_vs_fixture(name):
        return {k: sig(rel(tensors[f"{name}.grad.{k}"], R[f"grad.{k}"]), 4) for k in keys}

    fix_same = max(rel(tensors[f"{n}.grad.{k}"], R[f"grad.{k}"]) for n in ("myopic", "beta0.5") for k in same_params)
    fix_diff = min(rel(tensors[f"{n}.grad.{k}"], R[f"grad.{k}"]) for n in ("myopic", "beta0.5") for k in diff_params)
    vanilla_gin_fixture = {k: sig(rel(tensors[f"vanilla.grad_input.{k}"], tensors[f"myopic.grad_input.{k}"]), 4)
                           for k in V["gin"]}

    for k, v in tensors.items():
        assert v.dtype == torch.float32, k
    st_path = os.path.join(out, "flow_reference.safetensors")
    save_file(dict(sorted(tensors.items())), st_path, metadata={"format": "pt"})  # one metadata key: deterministic

    # ------------------------------------------------------------ 5. JSON
    losses = {name: X[saved_src.get(name, name)]["loss"].item() for name in ["vanilla"] + SAVED_FLOWS}
    losses_f32 = {name: res["f32"][saved_src.get(name, name)]["loss"].item() for name in ["vanilla"] + SAVED_FLOWS}
    doc = {
        "source": "tools/reference/flow_reference.py",
        "model": "Tests/Fixtures/gpt2_tiny/hf",
        "tokens": "reference.json `tokens` (3x41): inputs = tokens[:, :-1], targets = tokens[:, 1:]; "
                  "loss = mean cross-entropy over B*T = 120 predictions",
        "B": Bn, "T": Tn,
        "beta": BETA,
        "flows": ["vanilla"] + SAVED_FLOWS,
        "definitions": {
            "vanilla": "Ordinary backprop. Its parameter gradients are grad.<key> of reference.safetensors "
                       "(this file only has vanilla.grad_input.*).",
            "myopic": "Myopic descent (Wu, Morris & Levine 2024): in every layer's attention the keys and values "
                      "that a query at t reads for an earlier position s < t are computed from a detached copy of "
                      "the ln_1 output with live weights and biases; the diagonal s = t uses live keys and values. "
                      "Forward values are unchanged; the key/value weights and biases get the full gradient, the "
                      "activations at s only the diagonal part.",
            "beta0.5": "Interpolated flow with beta = 0.5: like myopic, but the off-diagonal key/value gradient "
                       "reaching the ln_1 output is scaled by beta instead of cut (beta = 0 is myopic, 1 vanilla). "
                       "Implemented with x_beta = x.detach() + beta*(x - x.detach()) for the off-diagonal keys/values.",
            "bigram": "Forward variant (the transformer bigram): each position attends only to itself, o_t = v_t. "
                      "A different model with the same weights, so its loss differs.",
        },
        "losses": losses,
        "losses_fp32_run": losses_f32,
        "tensors": {
            "<flow>.grad.<key>": "d(mean CE)/d(param) for flow in myopic, beta0.5, bigram; key without "
                                 "`transformer.`; wte.weight includes the tied head's gradient",
            "<flow>.grad_input.{l}": "d(mean CE)/d(residual stream entering block l), [B,T,n_embd], "
                                     "flow in vanilla, myopic, beta0.5, bigram",
            "<flow>.grad_input.final": "d(mean CE)/d(residual after the last block, before ln_f)",
            "precision": "computed in float64, stored as F32 (rounded once)",
        },
        "invariants": {
            "forward": "myopic and beta flows do not change the forward: their loss and logits equal vanilla's "
                       "(bit-identical here, since the implementation performs vanilla's forward operations).",
            "equal_to_vanilla_params": {
                "params": same_params,
                "flows": ["myopic", "beta0.5"],
                "why": "Backward reaches these before it reaches any key/value input activation: ln_f, and in the "
                       "last block the MLP, ln_2 and attn.c_proj see the same upstream gradient and the same forward "
                       "values. c_attn of the last block: the query gradient is unchanged, and the key/value weights "
                       "and biases get the sum of the diagonal and off-diagonal parts (x_det has x's values), i.e. "
                       "vanilla's dK, dV.",
                "bit_identical_subset": bit_same_params,
                "bit_identical_note": "these are bit-identical when the forward is the same; last-block c_attn is "
                                      "equal up to rounding (its dK/dV are summed from two parts).",
            },
            "different_from_vanilla_params": {
                "params": diff_params,
                "why": f"h.{last}.ln_1 gets the gradient of the ln_1 output, which loses (myopic) or scales "
                       f"(beta) the off-diagonal key/value part; everything below block {last} (blocks "
                       f"0..{last - 1}, wpe, the embedding part of wte) sees a changed residual gradient.",
            },
            "grad_input": f"grad_input.final is identical to vanilla for myopic and beta0.5; grad_input.{{0..{last}}} "
                          "differ.",
            "last_position": f"Position T-1 = {Tn - 1} is read by no later query, so for myopic and beta0.5 "
                             "grad_input.{l}[:, T-1, :] (every l) and wpe.weight[T-1] equal vanilla.",
            "wte_absent_rows": {
                "note": "Rows of wte for token ids that do not occur in the inputs only get the tied head's "
                        "gradient, so they are identical to vanilla for myopic and beta0.5 (bit-identical here).",
                "n_absent": len(absent),
                "present_ids": present,
            },
            "wpe_rows_from_T": f"wpe.weight rows {Tn}..{cfg['n_positions'] - 1} have zero gradient in every flow.",
            "myopic_is_diagonal_horizon": "myopic.grad_input.{l}[:, t] (and .final) = the vanilla gradient of the "
                                          "loss at position t alone, d(l_t / (B*T))/d h_{l,t}: the k = 0 term of "
                                          "docs/DESIGN.md §4's gradient horizon. Checked against a loop of single-target "
                                          "vanilla backward passes.",
            "myopic_is_diagonal_horizon_max_rel": sig(diag_rel, 2),
            "beta_linear_in_last_block": f"beta0.5.grad_input.{last} and beta0.5.grad.h.{last}.ln_1.* equal "
                                         f"beta*vanilla + (1-beta)*myopic exactly; lower layers are not linear in "
                                         f"beta (beta enters once per layer).",
            "beta_linearity_rel": {k: sig(v, 3) for k, v in lin.items()},
            "bigram_qk_zero": "bigram: the query and key slices of every c_attn weight and bias ([:, 0:2C] and "
                              "[0:2C]) have exactly zero gradient (softmax over one element is the constant 1).",
            "key_bias_zero": "In vanilla, myopic and beta0.5 the key bias gradient (c_attn.bias[C:2C]) is zero in "
                             "exact arithmetic (softmax ignores a per-query constant): compare it with an absolute "
                             "tolerance only. Max |value| in float64 per flow:",
            "key_bias_max_abs_f64": kb,
            "T1": {
                "note": "With a single position (inputs = tokens[:, :1], targets = tokens[:, 1:2]) there is no "
                        "earlier position: myopic, beta0.5 (and bigram) give exactly vanilla's loss and gradients.",
                "measured": t1res,
            },
        },
        "sanity": {
            "note": "rel = ||g_flow - g_vanilla|| / ||g_vanilla|| per parameter tensor (0 = bit-identical). "
                    "rel_f64: both in float64 (before rounding); rel_vs_fixture: the stored F32 tensor against "
                    "grad.<key> of reference.safetensors (HF, fp32), which is what a test can recompute.",
            "thresholds": {"equal_f64": EQUAL_F64, "differs": DIFFER},
            "rel_f64": {name: rel_table(X[saved_src[name]]) for name in SAVED_FLOWS},
            "rel_vs_fixture": {name: rel_vs_fixture(name) for name in SAVED_FLOWS},
            "rel_vs_fixture_equal_params_max": sig(fix_same, 3),
            "rel_vs_fixture_different_params_min": sig(fix_diff, 3),
            "c_attn_slices_rel_f64": {name: c_attn_slices(X[saved_src[name]]) for name in SAVED_FLOWS},
            "grad_input_rel_myopic_vs_vanilla_stored_f32": vanilla_gin_fixture,
            "per_flow": inv,
        },
        "checks": {
            "vanilla_vs_hf_fp32": {"logits_max_abs": sig(hf_logit_diff, 2), "grads_max_abs": sig(hf_grad_diff, 2)},
            "vanilla_f64_vs_reference_safetensors": {"grads_max_abs": sig(fix_grad_diff, 2),
                                                     "logits_max_abs": sig(fix_logit_diff, 2),
                                                     "loss_abs": sig(fix_loss_diff, 2)},
            "implementations": consistency,
            "implementations_note": "myopic_split builds the scores q.k_det^T with the diagonal replaced by "
                                    "q_t.k_live_t and o = (A without diagonal).v_det + diag(A).v_live; interp0/1 are "
                                    "the beta code at beta = 0/1 (the saved myopic is interp0). Values are "
                                    "max|diff| / max|ref| over all gradients.",
            "fp32_vs_f64": fp32_tol,
            "fp32_vs_f64_note": "the same code in float32 against the float64 values stored here: a guide for "
                                "the tolerances of fp32 tests.",
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "python": sys.version.split()[0]},
    }
    json_path = os.path.join(out, "flow_reference.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    # ------------------------------------------------------------ summary
    print("losses (f64):", losses)
    for name in SAVED_FLOWS:
        r = doc["sanity"]["rel_f64"][name]
        print(f"  {name:8s} rel diff vs vanilla: " + ", ".join(f"{k}={r[k]:.3g}" for k in
              ["wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", f"h.{last}.ln_1.weight",
               f"h.{last}.attn.c_attn.weight", f"h.{last}.mlp.c_fc.weight", "ln_f.weight"]))
    print(f"rel vs fixture: equal params max {fix_same:.3g}, different params min {fix_diff:.3g}")
    for p in (st_path, json_path):
        print(f"  {os.path.relpath(p, REPO_ROOT):50s} {os.path.getsize(p):9d} B  sha256 {file_sha256(p)[:16]}")
    if check.failures:
        print("FAILED:", check.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
