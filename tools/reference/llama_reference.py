#!/usr/bin/env python3
"""Generate the PyTorch / Hugging Face reference fixtures for a tiny Llama (docs/DESIGN.md §3, §4).

The model is a random `LlamaForCausalLM`: vocab 96, hidden 32, SwiGLU 48, 2 layers, 4 query heads,
2 key/value heads (grouped-query attention), head_dim 8, 64 positions, RoPE base 1000 (not the
default 10000, so a reader that ignores it fails), RMSNorm eps 1e-6, no biases, an untied head and
eager attention. Weights are N(0, 0.2) (ten times HF's 0.02, so attention is far from uniform) and
RMSNorm weights are 1 + 0.1·N(0,1).

Writes, under Tests/Fixtures/llama_tiny/ (relative to the repo root unless --out is given):

  hf/config.json, hf/model.safetensors (+ generation_config.json)
      The model as written by transformers' save_pretrained (fp32, 21 tensors, HF key names).
  reference.safetensors (all F32)
      logits              [2,16,96]   forward on `tokens[:, :-1]`
      losses              [2,16]      cross-entropy of each prediction (targets `tokens[:, 1:]`)
      hidden.{l}          [2,16,32]   residual stream entering decoder layer l
      resid_final         [2,16,32]   residual after the last layer, before model.norm
      grad.<hf name>                  d(mean CE)/d(param), keyed by the HF parameter name
                                      (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`, ...)
  reference.json
      config, tokens [2][17], loss, losses, param_keys and shapes, the keys and config.json that
      save_pretrained wrote, the from_pretrained reload check, the llama.cpp q/k permutation check,
      seeds, versions.
  flow_reference.safetensors / flow_reference.json
      Loss and gradients under the myopic, beta0.5 and bigram flows, like flow_reference.py does
      for GPT-2 (same definitions; the stop-gradient sits at the output of input_layernorm, before
      k_proj / v_proj and before RoPE). Computed in float64, stored as F32.
      <flow>.grad.<hf name>        flow in myopic, beta0.5, bigram
      <flow>.grad_input.{l}        d(mean CE)/d(residual entering layer l), also for vanilla
      <flow>.grad_input.final      d(mean CE)/d(residual before model.norm)
  horizon_reference.safetensors / horizon_reference.json
      grads [L+1, T, T, C] = [3,16,16,32], grads[l, t, i] = dℓ_t/dh_{l,i} on row 0 of `tokens`
      (ℓ_t not divided by T), by torch.autograd through HF, and the horizon table, like
      horizon_reference.py does for GPT-2.
  hf_tied/config.json, hf_tied/model.safetensors
      The same architecture with tie_word_embeddings = true and other seeds (no lm_head.weight in
      the file).
  reference_tied.safetensors / reference_tied.json
      logits [2,16,96] and losses [2,16] of the tied model on the same tokens, and its loss.

GGUF check (nothing extra is saved): llama.cpp's convert_hf_to_gguf.py permutes the rows of q_proj
and k_proj (`LlamaModel.permute`) so that GGUF row h·HS + 2i + j is HF row h·HS + j·HS/2 + i
(j ∈ {0,1}, i < HS/2), because llama.cpp rotates interleaved pairs (x[2i], x[2i+1]) where HF rotates
(x[i], x[i+HS/2]) (rotate_half). The script asserts the row map, that interleaved RoPE on the
permuted weights gives HF's q·k scores and logits, and that interleaved RoPE on unpermuted weights
does not. It exits 1 if any check fails.

Everything is CPU, one thread, deterministic: running it twice gives byte-identical files.
Usage (from the repo root):  /opt/refenv/bin/python tools/reference/llama_reference.py
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
from safetensors.torch import load_file, save_file
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from refutil import ce_rows, Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "llama_tiny")

# Model / data sizes (docs/DESIGN.md §3 legend: V C HS H KV L; F = intermediate size).
VOCAB, HIDDEN, INTER, NLAYER, NHEAD, NKV, HEAD_DIM = 96, 32, 48, 2, 4, 2, 8
NPOS, ROPE_THETA, RMS_EPS = 64, 1000.0, 1e-6
B, T = 2, 16

INIT_STD = 0.2       # every matrix (embed_tokens, q/k/v/o, gate/up/down, lm_head)
NORM_NOISE = 0.1     # RMSNorm weights = 1 + NORM_NOISE·N(0,1)
BETA = 0.5

SEED_MODEL = 0       # torch.manual_seed before HF init (overwritten, but keeps HF's init reproducible)
SEED_INIT = 1        # generator for the weights
SEED_TOKENS = 2      # generator for the tokens
SEED_MODEL_TIED = 3
SEED_INIT_TIED = 4

EQUAL_F64 = 1e-12    # "equal in exact arithmetic": float64 relative differences at most this
DIFFER = 1e-4        # "really differs": relative differences at least this


# ============================================================================ HF model

def make_config(tied):
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=NLAYER,
        num_attention_heads=NHEAD, num_key_value_heads=NKV, head_dim=HEAD_DIM,
        max_position_embeddings=NPOS, rope_theta=ROPE_THETA, rms_norm_eps=RMS_EPS,
        tie_word_embeddings=tied, attention_bias=False, mlp_bias=False, hidden_act="silu",
        attention_dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    return cfg


def build_model(tied, seed_model, seed_init):
    torch.manual_seed(seed_model)
    model = LlamaForCausalLM(make_config(tied)).float()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    g = torch.Generator().manual_seed(seed_init)
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied head appears once, as embed_tokens
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_NOISE * torch.randn(p.shape, generator=g))
            else:
                assert p.dim() == 2, name
                p.copy_(INIT_STD * torch.randn(p.shape, generator=g))
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    return model


def hf_forward(model, inputs):
    """logits, [residual entering layer l], residual before model.norm (all live tensors)."""
    captured = []

    def grab(_m, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    hooks = [layer.register_forward_pre_hook(grab, with_kwargs=True) for layer in model.model.layers]
    hooks.append(model.model.norm.register_forward_pre_hook(grab, with_kwargs=True))
    logits = model(input_ids=inputs, use_cache=False).logits
    for h in hooks:
        h.remove()
    assert len(captured) == NLAYER + 1
    return logits, captured[:NLAYER], captured[NLAYER]


# ============================================================================ plain-torch Llama

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_tables(Tn, hs, theta, dtype):
    """cos, sin [T, HS/2] of the angles pos·theta^(-2i/HS). In float32 this is HF's computation."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=dtype) / hs))
    ang = torch.arange(Tn, dtype=dtype)[:, None] * inv_freq[None, :]
    return ang.cos(), ang.sin()


def rope_half(x, cos, sin):
    """HF / NeoX: rotate the pairs (x[i], x[i + HS/2]). x [B,H,T,HS]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_interleaved(x, cos, sin):
    """llama.cpp / GGUF (Meta's original): rotate the pairs (x[2i], x[2i+1]). x [B,H,T,HS]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


def heads(t, n):
    Bn, Tn, D = t.shape
    return t.view(Bn, Tn, n, D // n).transpose(1, 2)  # [B,n,T,HS]


def repeat_kv(t, groups):
    """[B,KV,T,HS] -> [B,KV·groups,T,HS]; query head h reads key/value head h // groups (HF's repeat_kv)."""
    return t.repeat_interleave(groups, dim=1)


def attention_core(x, Wq, Wk, Wv, cos, sin, rope, flow, beta, kv_tiled=False):
    """x: input_layernorm output [B,T,C]. Returns o [B,H,T,HS] (before o_proj).

    The flows are those of flow_reference.py. The stop-gradient acts on x, the input of k_proj and
    v_proj; RoPE (no parameters) is applied to k after k_proj, so a detached key is
    rope(x.detach() @ Wkᵀ) with the live Wk.
      "vanilla"  plain causal attention.
      "split"    myopic, written literally: scores q·k_detᵀ with the diagonal replaced by q_t·k_live_t;
                 o = (A with zeroed diagonal)·v_det + diag(A)·v_live.
      "interp"   off-diagonal keys/values from x_beta = x.detach() + beta·(x − x.detach()), plus the
                 exactly-zero terms q_t·(k_live_t − k_off_t) and diag(A)·(v_live − v_off), so the
                 forward is vanilla's bit for bit. beta = 0 is myopic, 1 vanilla.
      "bigram"   each position attends only to itself: o_t = v_t.
    kv_tiled: a deliberate mistake for the sensitivity table (query head h reads key/value head h % KV).
    """
    Tn = x.shape[1]
    groups = NHEAD // NKV
    scale = HEAD_DIM ** -0.5
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    eye = torch.eye(Tn, dtype=torch.bool)

    def kv(inp):
        k = rope(heads(inp @ Wk.T, NKV), cos, sin)
        v = heads(inp @ Wv.T, NKV)
        if kv_tiled:
            return k.repeat(1, groups, 1, 1), v.repeat(1, groups, 1, 1)
        return repeat_kv(k, groups), repeat_kv(v, groups)

    q = rope(heads(x @ Wq.T, NHEAD), cos, sin)
    k, v = kv(x)
    if flow == "vanilla":
        S = (q @ k.transpose(-1, -2)) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        return A @ v
    if flow == "bigram":
        return v
    if flow == "split":
        k_d, v_d = kv(x.detach())
        S = torch.where(eye, torch.diag_embed((q * k).sum(-1)), q @ k_d.transpose(-1, -2)) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A.masked_fill(eye, 0.0) @ v_d + a_diag.unsqueeze(-1) * v
    if flow == "interp":
        xd = x.detach()
        k_o, v_o = kv(xd + beta * (x - xd))
        S = q @ k_o.transpose(-1, -2)
        S = (S + torch.diag_embed((q * (k - k_o)).sum(-1))) * scale
        A = S.masked_fill(~causal, float("-inf")).softmax(-1)
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A @ v_o + a_diag.unsqueeze(-1) * (v - v_o)
    raise ValueError(flow)


def forward(P, tok, flow="vanilla", beta=None, rope=rope_half, tied=False, theta=ROPE_THETA, eps=RMS_EPS,
            kv_tiled=False):
    """P: HF parameter name -> tensor (Linear weights are [out, in]: y = x @ Wᵀ).
    Returns (logits, [residual entering layer l for each l] + [residual before model.norm]).
    theta, eps, kv_tiled and rope other than rope_half only serve the sensitivity table."""
    Bn, Tn = tok.shape
    dtype = P["model.embed_tokens.weight"].dtype
    cos, sin = rope_tables(Tn, HEAD_DIM, theta, dtype)
    x = P["model.embed_tokens.weight"][tok]
    resid = []
    for i in range(NLAYER):
        p = lambda k: P[f"model.layers.{i}.{k}"]
        resid.append(x)
        h = rms_norm(x, p("input_layernorm.weight"), eps)
        o = attention_core(h, p("self_attn.q_proj.weight"), p("self_attn.k_proj.weight"), p("self_attn.v_proj.weight"),
                           cos, sin, rope, flow, beta, kv_tiled)
        x = x + o.transpose(1, 2).reshape(Bn, Tn, NHEAD * HEAD_DIM) @ p("self_attn.o_proj.weight").T
        h = rms_norm(x, p("post_attention_layernorm.weight"), eps)
        m = F.silu(h @ p("mlp.gate_proj.weight").T) * (h @ p("mlp.up_proj.weight").T)
        x = x + m @ p("mlp.down_proj.weight").T
    resid.append(x)
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if tied else P["lm_head.weight"]
    return x @ head.T, resid


def run_flow(init, keys, tok, dtype, flow, beta=None):
    """Loss, logits, parameter gradients and residual-stream gradients under one flow."""
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    logits, resid = forward(P, tok[:, :-1], flow, beta)
    loss = ce_rows(logits, tok[:, 1:]).mean()
    gs = torch.autograd.grad(loss, [P[k] for k in keys] + resid, allow_unused=True)
    grads = {k: torch.zeros_like(P[k]) if g is None else g.detach() for k, g in zip(keys, gs[:len(keys)])}
    gin = {("final" if l == NLAYER else str(l)): g.detach() for l, g in enumerate(gs[len(keys):])}
    return {"loss": loss.detach(), "logits": logits.detach(), "grads": grads, "gin": gin}


# ============================================================================ llama.cpp permutation

def llama_cpp_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py, LlamaModel.permute: HF q_proj/k_proj rows -> GGUF rows.
    Applied as permute(q_proj, n_head, n_head) and permute(k_proj, n_head, n_head_kv)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def gguf_permutation_check(init, tok, hf_logits, check):
    """The llama.cpp q/k layout, asserted three ways. Returns measurements for the JSON."""
    hs, half = HEAD_DIM, HEAD_DIM // 2
    out = {}
    # 1. The row map: GGUF row h·HS + 2i + j = HF row h·HS + j·HS/2 + i.
    row_map_ok = True
    for name, nh in (("q_proj", NHEAD), ("k_proj", NKV)):
        for l in range(NLAYER):
            W = init[f"model.layers.{l}.self_attn.{name}.weight"]
            Wp = llama_cpp_permute(W, NHEAD, None if name == "q_proj" else NKV)
            for h in range(nh):
                for i in range(half):
                    for j in range(2):
                        row_map_ok &= torch.equal(Wp[h * hs + 2 * i + j], W[h * hs + j * half + i])
    check(row_map_ok, "llama.cpp permute: GGUF row h*HS+2i+j = HF row h*HS+j*HS/2+i")
    out["row_map"] = "GGUF row h*HS + 2i + j = HF row h*HS + j*HS/2 + i (j in {0,1}, i < HS/2), for q_proj (H heads) " \
                     "and k_proj (KV heads): asserted for every row"

    # 2. Interleaved RoPE on permuted projections = a per-head permutation of HF's half-split RoPE.
    P64 = {k: v.double() for k, v in init.items()}
    x = torch.randn(B, T, HIDDEN, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cos, sin = rope_tables(T, hs, ROPE_THETA, torch.float64)
    W = P64["model.layers.0.self_attn.q_proj.weight"]
    q_hf = rope_half(heads(x @ W.T, NHEAD), cos, sin)
    q_gg = rope_interleaved(heads(x @ llama_cpp_permute(W, NHEAD, NHEAD).T, NHEAD), cos, sin)
    perm = torch.tensor([j * half + i for i in range(half) for j in range(2)])  # GGUF slot -> HF slot
    d = (q_gg - q_hf[..., perm]).abs().max().item()
    check(d < 1e-13, f"interleaved RoPE on permuted q = permuted half-split RoPE on q: {d:.3g}")
    out["rotated_q_max_abs_f64"] = float(f"{d:.2g}")

    # 3. The whole model: permuted q/k weights + interleaved RoPE give HF's logits; unpermuted do not.
    Pp = dict(P64)
    for l in range(NLAYER):
        Pp[f"model.layers.{l}.self_attn.q_proj.weight"] = llama_cpp_permute(P64[f"model.layers.{l}.self_attn.q_proj.weight"], NHEAD, NHEAD)
        Pp[f"model.layers.{l}.self_attn.k_proj.weight"] = llama_cpp_permute(P64[f"model.layers.{l}.self_attn.k_proj.weight"], NHEAD, NKV)
    ref64, _ = forward(P64, tok[:, :-1], rope=rope_half)
    perm64, _ = forward(Pp, tok[:, :-1], rope=rope_interleaved)
    wrong64, _ = forward(P64, tok[:, :-1], rope=rope_interleaved)
    d_perm = (perm64 - ref64).abs().max().item()
    d_hf = (perm64.float() - hf_logits).abs().max().item()
    d_wrong = (wrong64 - ref64).abs().max().item()
    check(d_perm < 1e-12, f"interleaved RoPE + permuted q/k = half-split RoPE logits (f64): {d_perm:.3g}")
    check(d_hf < 1e-5, f"interleaved RoPE + permuted q/k vs HF logits: {d_hf:.3g}")
    check(d_wrong > 1e-2, f"interleaved RoPE on unpermuted q/k must differ: {d_wrong:.3g}")
    out["logits_permuted_interleaved_vs_half_split_max_abs_f64"] = float(f"{d_perm:.2g}")
    out["logits_permuted_interleaved_vs_hf_fp32_max_abs"] = float(f"{d_hf:.2g}")
    out["logits_unpermuted_interleaved_vs_hf_max_abs"] = float(f"{d_wrong:.3g}")
    out["note"] = ("llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) reorders the rows of q_proj and k_proj so "
                   "that its interleaved RoPE (pairs x[2i], x[2i+1]) computes what HF's rotate_half RoPE (pairs x[i], "
                   "x[i+HS/2]) computes on the original rows. Within a head, q and k get the same permutation, so q.k "
                   "is unchanged and so are the logits. A GGUF reader either un-permutes q/k and uses half-split RoPE, "
                   "or keeps the GGUF rows and uses interleaved RoPE. Nothing extra is stored: the logits of the "
                   "permuted model are the `logits` tensor.")
    return out


# ============================================================================ helpers

def save_tensors(tensors, path):
    for k, v in tensors.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    save_file(dict(sorted((k, v.contiguous()) for k, v in tensors.items())), path, metadata={"format": "pt"})


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def config_doc(tied):
    return {
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": NLAYER,
        "num_attention_heads": NHEAD, "num_key_value_heads": NKV, "head_dim": HEAD_DIM,
        "max_position_embeddings": NPOS, "rope_theta": ROPE_THETA, "rope_type": "default", "rms_norm_eps": RMS_EPS,
        "tie_word_embeddings": tied, "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
        "attn_implementation": "eager",
    }


def save_and_reload(model, hf_dir, inputs, logits, check):
    """save_pretrained, then from_pretrained: the keys and config written, and a bit-exact reload check."""
    model.save_pretrained(hf_dir, safe_serialization=True)
    with safe_open(os.path.join(hf_dir, "model.safetensors"), framework="pt") as f:
        keys = sorted(f.keys())
        meta = f.metadata()
        dtypes = sorted({str(f.get_tensor(k).dtype) for k in keys})
    saved_config = json.load(open(os.path.join(hf_dir, "config.json")))
    reloaded = LlamaForCausalLM.from_pretrained(hf_dir, attn_implementation="eager")
    with torch.no_grad():
        again = reloaded(input_ids=inputs, use_cache=False).logits
    d = maxabs(again, logits)
    check(torch.equal(again, logits.detach()), f"{os.path.basename(hf_dir)}: from_pretrained logits differ by {d:.3g}")
    tied_after = reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    return {"hf_keys": keys, "hf_metadata": meta, "hf_dtypes": dtypes, "config_json": saved_config,
            "reload": {"bit_identical_logits": bool(torch.equal(again, logits.detach())), "max_abs": d,
                       "reloaded_head_tied": tied_after}}


# ============================================================================ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/llama_tiny)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    check = Checker()
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__, "python": sys.version.split()[0]}

    tok = torch.randint(0, VOCAB, (B, T + 1), generator=torch.Generator().manual_seed(SEED_TOKENS))
    inputs, targets = tok[:, :-1], tok[:, 1:]

    # ------------------------------------------------------------ 1. untied model: HF forward/backward
    model = build_model(False, SEED_MODEL, SEED_INIT)
    model.train()  # no dropout anywhere, so train/eval agree
    keys = [n for n, _ in model.named_parameters()]
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    logits, hidden, resid_final = hf_forward(model, inputs)
    losses = ce_rows(logits, targets)
    loss = losses.mean()
    loss.backward()
    assert logits.shape == (B, T, VOCAB)

    tensors = {"logits": logits.detach(), "losses": losses.detach(), "resid_final": resid_final.detach()}
    for l in range(NLAYER):
        tensors[f"hidden.{l}"] = hidden[l].detach()
    for n, p in model.named_parameters():
        tensors[f"grad.{n}"] = p.grad.detach().clone()

    saved = save_and_reload(model, os.path.join(out, "hf"), inputs, logits, check)
    check("lm_head.weight" in saved["hf_keys"] and len(saved["hf_keys"]) == len(keys), "untied: lm_head.weight saved")

    # Attention is not uniform: the entropy of each causal row against its maximum, log(t+1).
    with torch.no_grad():
        P32 = {k: v.clone() for k, v in init.items()}
        x = rms_norm(P32["model.embed_tokens.weight"][inputs], P32["model.layers.0.input_layernorm.weight"], RMS_EPS)
        cos, sin = rope_tables(T, HEAD_DIM, ROPE_THETA, torch.float32)
        q = rope_half(heads(x @ P32["model.layers.0.self_attn.q_proj.weight"].T, NHEAD), cos, sin)
        k = repeat_kv(rope_half(heads(x @ P32["model.layers.0.self_attn.k_proj.weight"].T, NKV), cos, sin), NHEAD // NKV)
        A = ((q @ k.transpose(-1, -2)) * HEAD_DIM ** -0.5).masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
        ent = -(A * A.clamp_min(1e-30).log()).sum(-1)[..., 1:]
        ent_ratio = (ent / torch.log(torch.arange(2, T + 1, dtype=torch.float32))).mean().item()
        max_weight = A[..., T - 1, :].max(-1).values.mean().item()

    # ------------------------------------------------------------ 2. plain-torch Llama vs HF, the GGUF permutation
    v32 = run_flow(init, keys, tok, torch.float32, "vanilla")
    hf_logit_diff = maxabs(v32["logits"], logits)
    hf_grad_diff = max(maxabs(v32["grads"][k], tensors[f"grad.{k}"]) for k in keys)
    check(hf_logit_diff < 1e-5, f"plain-torch fp32 logits vs HF: {hf_logit_diff:.3g}")
    check(hf_grad_diff < 1e-5, f"plain-torch fp32 grads vs HF: {hf_grad_diff:.3g}")
    gguf = gguf_permutation_check(init, tok, logits.detach(), check)

    # How far common mistakes move the logits and the loss (float64), so a test's tolerance can be judged.
    P64 = {k: v.double() for k, v in init.items()}
    ref64, _ = forward(P64, inputs)
    mistakes = {
        "rope_theta 10000 (the default) instead of 1000": dict(theta=10000.0),
        "no RoPE": dict(rope=lambda x, c, s: x),
        "interleaved RoPE on HF (unpermuted) q/k": dict(rope=rope_interleaved),
        "query head h reads kv head h % KV instead of h // (H/KV)": dict(kv_tiled=True),
        "rms_norm_eps 1e-5 instead of 1e-6": dict(eps=1e-5),
    }
    sensitivity = {}
    for what, kw in mistakes.items():
        wrong, _ = forward(P64, inputs, **kw)
        dl = abs(ce_rows(wrong, targets).mean().item() - ce_rows(ref64, targets).mean().item())
        sensitivity[what] = {"logits_max_abs": sig(maxabs(wrong, ref64), 3), "loss_abs": sig(dl, 3)}
    check(all(v["logits_max_abs"] > 1e-2 for k, v in sensitivity.items() if "eps" not in k), "mistakes are visible")

    # ------------------------------------------------------------ 3. flows (float64 and float32)
    variants = {"vanilla": ("vanilla", None), "myopic_split": ("split", None), "interp0": ("interp", 0.0),
                "interp1": ("interp", 1.0), "beta0.5": ("interp", BETA), "bigram": ("bigram", None)}
    res = {prec: {name: run_flow(init, keys, tok, dtype, f, b) for name, (f, b) in variants.items()}
           for prec, dtype in (("f64", torch.float64), ("f32", torch.float32))}
    X = res["f64"]
    V, M, Bt, Bg = X["vanilla"], X["interp0"], X["beta0.5"], X["bigram"]
    saved_src = {"myopic": "interp0", "beta0.5": "beta0.5", "bigram": "bigram"}
    flows_saved = list(saved_src)

    fix_grad_diff = max(maxabs(V["grads"][k], tensors[f"grad.{k}"]) for k in keys)
    fix_logit_diff = maxabs(V["logits"], logits)
    check(fix_grad_diff < 1e-5, f"vanilla f64 grads vs HF fp32: {fix_grad_diff:.3g}")
    check(abs(V["loss"].item() - loss.item()) < 1e-5, "vanilla f64 loss vs HF fp32")

    def worst_rel(a, b):
        w = 0.0
        for k in keys:
            w = max(w, maxabs(a["grads"][k], b["grads"][k]) / max(b["grads"][k].abs().max().item(), 1e-30))
        for k in a["gin"]:
            w = max(w, maxabs(a["gin"][k], b["gin"][k]) / b["gin"][k].abs().max().item())
        return w

    consistency = {}
    for prec in ("f64", "f32"):
        Y = res[prec]
        tol = 1e-12 if prec == "f64" else 2e-4
        for a, b in (("interp1", "vanilla"), ("interp0", "myopic_split")):
            w = worst_rel(Y[a], Y[b])
            consistency[f"{prec}: {a} vs {b}"] = sig(w, 3)
            check(w < tol, f"{prec} {a} vs {b}: {w:.3g}")
        for a in ("interp0", "interp1", "beta0.5"):
            check(torch.equal(Y[a]["logits"], Y["vanilla"]["logits"]), f"{prec} {a} logits bit-identical to vanilla")

    fp32_tol = {}
    for name in ["vanilla"] + flows_saved:
        src = saved_src.get(name, name)
        a, b = res["f32"][src], X[src]
        gmax = max(maxabs(a["grads"][k], b["grads"][k]) for k in keys)
        imax = max(maxabs(a["gin"][k], b["gin"][k]) for k in b["gin"])
        fp32_tol[name] = {"grads_max_abs": sig(gmax, 2), "grad_input_max_abs": sig(imax, 2),
                          "loss_abs": sig(abs(a["loss"].item() - b["loss"].item()), 2)}
        check(gmax < 1e-5 and imax < 1e-6, f"fp32 vs f64 {name}: {gmax:.3g} {imax:.3g}")

    # Invariants (float64).
    last = NLAYER - 1
    lp = f"model.layers.{last}."
    same_params = ["lm_head.weight", "model.norm.weight", lp + "post_attention_layernorm.weight",
                   lp + "mlp.gate_proj.weight", lp + "mlp.up_proj.weight", lp + "mlp.down_proj.weight",
                   lp + "self_attn.o_proj.weight", lp + "self_attn.q_proj.weight",
                   lp + "self_attn.k_proj.weight", lp + "self_attn.v_proj.weight"]
    diff_params = [k for k in keys if k not in same_params]
    for name, F_ in (("myopic", M), ("beta0.5", Bt)):
        for k in same_params:
            r = rel(F_["grads"][k], V["grads"][k])
            check(r < EQUAL_F64, f"{name}: {k} equals vanilla ({r:.3g})")
        for k in diff_params:
            r = rel(F_["grads"][k], V["grads"][k])
            check(r > DIFFER, f"{name}: {k} differs from vanilla ({r:.3g})")
        check(rel(F_["gin"]["final"], V["gin"]["final"]) < EQUAL_F64, f"{name}: grad_input.final equals vanilla")
        for l in range(NLAYER):
            check(rel(F_["gin"][str(l)], V["gin"][str(l)]) > DIFFER, f"{name}: grad_input.{l} differs")
            check(rel(F_["gin"][str(l)][:, T - 1], V["gin"][str(l)][:, T - 1]) < EQUAL_F64,
                  f"{name}: grad_input.{l}[:, T-1] equals vanilla")
    present = sorted(set(inputs.flatten().tolist()))
    absent = [i for i in range(VOCAB) if i not in present]
    for name, F_ in (("vanilla", V), ("myopic", M), ("beta0.5", Bt), ("bigram", Bg)):
        check(F_["grads"]["model.embed_tokens.weight"][absent].abs().max().item() == 0.0,
              f"{name}: embed_tokens rows of absent ids are zero")
    lin = {}
    for k in (f"grad_input.{last}", lp + "input_layernorm.weight", "grad_input.0"):
        get = (lambda F_: F_["gin"][k.split(".")[1]]) if k.startswith("grad_input") else (lambda F_: F_["grads"][k])
        lin[k] = rel(get(Bt), BETA * get(V) + (1 - BETA) * get(M))
    check(lin[f"grad_input.{last}"] < EQUAL_F64 and lin[lp + "input_layernorm.weight"] < EQUAL_F64, "beta linear in the last layer")
    check(lin["grad_input.0"] > 1e-6, "beta not linear below the last layer")
    qk_zero = all(Bg["grads"][f"model.layers.{l}.self_attn.{w}.weight"].abs().max().item() == 0.0
                  for l in range(NLAYER) for w in ("q_proj", "k_proj"))
    check(qk_zero, "bigram: q_proj and k_proj have zero gradient")

    # Myopic grad_input at (l, t) = the vanilla gradient of the loss at t alone (horizon offset 0).
    Pv = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    lg, resid = forward(Pv, inputs)
    lt = ce_rows(lg, targets) / (B * T)
    diag = [torch.zeros_like(r) for r in resid]
    for t in range(T):
        gs = torch.autograd.grad(lt[:, t].sum(), resid, retain_graph=True)
        for l in range(NLAYER + 1):
            diag[l][:, t] = gs[l][:, t]
    diag_rel = max(rel(M["gin"]["final" if l == NLAYER else str(l)], diag[l]) for l in range(NLAYER + 1))
    check(diag_rel < EQUAL_F64, f"myopic grad_input = per-target diagonal: {diag_rel:.3g}")

    # T = 1: no earlier position, so every flow is vanilla.
    t1 = {}
    for prec, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        base = run_flow(init, keys, tok[:, :2], dtype, "vanilla")
        for name, (f, b) in (("myopic", ("interp", 0.0)), ("myopic_split", ("split", None)),
                             ("beta0.5", ("interp", BETA)), ("bigram", ("bigram", None))):
            r = run_flow(init, keys, tok[:, :2], dtype, f, b)
            g = max([maxabs(r["grads"][k], base["grads"][k]) for k in keys] +
                    [maxabs(r["gin"][k], base["gin"][k]) for k in base["gin"]])
            t1[f"{prec}: {name} vs vanilla max|diff|"] = sig(g, 2)
            check(g < (1e-15 if prec == "f64" else 1e-6), f"T=1 {prec} {name}: {g:.3g}")

    flow_tensors = {}
    for name in flows_saved:
        F_ = X[saved_src[name]]
        for k in keys:
            flow_tensors[f"{name}.grad.{k}"] = F_["grads"][k].float()
        for k, g in F_["gin"].items():
            flow_tensors[f"{name}.grad_input.{k}"] = g.float()
    for k, g in V["gin"].items():
        flow_tensors[f"vanilla.grad_input.{k}"] = g.float()
    rel_vs_fixture = {name: {k: sig(rel(flow_tensors[f"{name}.grad.{k}"], tensors[f"grad.{k}"]), 4) for k in keys}
                      for name in flows_saved}
    fix_same = max(rel(flow_tensors[f"{n}.grad.{k}"], tensors[f"grad.{k}"]) for n in ("myopic", "beta0.5") for k in same_params)
    fix_diff = min(rel(flow_tensors[f"{n}.grad.{k}"], tensors[f"grad.{k}"]) for n in ("myopic", "beta0.5") for k in diff_params)

    # ------------------------------------------------------------ 4. horizon (HF, fp32, row 0)
    hmodel = LlamaForCausalLM.from_pretrained(os.path.join(out, "hf"), attn_implementation="eager").float().eval()
    h_logits, h_hidden, h_final = hf_forward(hmodel, inputs[:1])
    h_losses = ce_rows(h_logits, targets[:1])[0]
    captured = h_hidden + [h_final]
    hgrads = torch.zeros(NLAYER + 1, T, T, HIDDEN)
    causal_ok = True
    for t in range(T):
        gs = torch.autograd.grad(h_losses[t], captured, retain_graph=True)
        for l, g in enumerate(gs):
            hgrads[l, t] = g[0]
            causal_ok &= (t + 1 == T) or g[0, t + 1:].abs().max().item() == 0.0
    check(causal_ok, "horizon: no gradient from a target to later positions")
    h_diag = max(maxabs(hgrads[l, t, t] / (B * T), M["gin"]["final" if l == NLAYER else str(l)][0, t])
                 / M["gin"]["final" if l == NLAYER else str(l)][0].abs().max().item()
                 for l in range(NLAYER + 1) for t in range(T))
    check(h_diag < 1e-5, f"horizon diagonal / (B*T) = myopic grad_input row 0 (rel to max): {h_diag:.3g}")
    norms = hgrads.norm(dim=-1)
    mean_norm = [[float(torch.stack([norms[l, i + k, i] for i in range(T - k)]).mean()) for k in range(T)]
                 for l in range(NLAYER + 1)]

    # ------------------------------------------------------------ 5. tied variant
    tmodel = build_model(True, SEED_MODEL_TIED, SEED_INIT_TIED)
    tmodel.eval()
    with torch.no_grad():
        t_logits = tmodel(input_ids=inputs, use_cache=False).logits
    t_losses = ce_rows(t_logits, targets)
    t_saved = save_and_reload(tmodel, os.path.join(out, "hf_tied"), inputs, t_logits, check)
    check("lm_head.weight" not in t_saved["hf_keys"], "tied: no lm_head.weight in the file")
    check(t_saved["reload"]["reloaded_head_tied"], "tied: from_pretrained ties the head again")
    t_init = {n: p.detach().clone() for n, p in tmodel.named_parameters()}
    t_plain, _ = forward(t_init, inputs, tied=True)
    check(maxabs(t_plain, t_logits) < 1e-5, "tied: plain-torch logits vs HF")

    # ------------------------------------------------------------ 6. write
    save_tensors(tensors, os.path.join(out, "reference.safetensors"))
    save_tensors(flow_tensors, os.path.join(out, "flow_reference.safetensors"))
    save_tensors({"grads": hgrads}, os.path.join(out, "horizon_reference.safetensors"))
    save_tensors({"logits": t_logits.detach(), "losses": t_losses.detach()}, os.path.join(out, "reference_tied.safetensors"))

    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    write_json({
        "source": "tools/reference/llama_reference.py",
        "config": config_doc(False),
        "B": B, "T": T,
        "tokens": tok.tolist(),
        "loss": loss.item(),
        "losses": losses.detach().tolist(),
        "param_keys": keys,
        "param_shapes": shapes,
        "tensors": {"logits": [B, T, VOCAB], "losses": [B, T], "hidden.{l}": f"residual entering layer l, [B,T,{HIDDEN}]",
                    "resid_final": "residual after the last layer, before model.norm",
                    "grad.<hf name>": "gradient of the mean CE over B*T predictions, HF fp32 autograd"},
        "conventions": {
            "inputs_targets": "inputs = tokens[:, :-1], targets = tokens[:, 1:]; loss = mean cross-entropy over B*T",
            "linear": "HF Linear weights are [out, in]: y = x @ W^T (no biases anywhere)",
            "rope": "half-split (rotate_half): pairs (x[i], x[i+HS/2]) rotated by pos * theta^(-2i/HS), theta = "
                    "config.json rope_parameters.rope_theta; HF computes inv_freq and the angles in fp32",
            "gqa": "query head h reads key/value head h // (H/KV) (repeat_kv)",
            "attention_scale": "1/sqrt(head_dim)",
            "rms_norm": "w * x / sqrt(mean(x^2) + eps)",
            "mlp": "down_proj(silu(gate_proj(x)) * up_proj(x))",
        },
        "sensitivity": sensitivity,
        "sensitivity_note": "max |logits - logits_wrong| and |loss - loss_wrong| (float64) when the forward makes one "
                            "mistake; the logits themselves have max |.| %.3g" % logits.abs().max().item(),
        "attention_sensitivity": {
            "layer0_mean_entropy_over_uniform": sig(ent_ratio, 3),
            "layer0_last_row_mean_max_weight": sig(max_weight, 3),
            "note": "layer-0 attention probabilities: mean row entropy / log(t+1) (1 = uniform) and the mean largest "
                    f"weight of the last query row (1/{T} = uniform)",
        },
        "checks": {
            "plain_torch_fp32_vs_hf": {"logits_max_abs": sig(hf_logit_diff, 2), "grads_max_abs": sig(hf_grad_diff, 2)},
            "plain_torch_f64_vs_hf": {"logits_max_abs": sig(fix_logit_diff, 2), "grads_max_abs": sig(fix_grad_diff, 2)},
        },
        "gguf_permutation": gguf,
        "init": f"LlamaForCausalLM under torch.manual_seed({SEED_MODEL}), then every matrix = {INIT_STD}*N(0,1) and every "
                f"RMSNorm weight = 1+{NORM_NOISE}*N(0,1), drawn in named_parameters order from a generator with seed "
                f"{SEED_INIT}",
        "seeds": {"model": SEED_MODEL, "init": SEED_INIT, "tokens": SEED_TOKENS},
        "hf_keys": saved["hf_keys"],
        "hf_metadata": saved["hf_metadata"],
        "hf_dtypes": saved["hf_dtypes"],
        "hf_config_json": saved["config_json"],
        "reload": saved["reload"],
        "versions": versions,
    }, os.path.join(out, "reference.json"))

    losses_f64 = {name: X[saved_src.get(name, name)]["loss"].item() for name in ["vanilla"] + flows_saved}
    write_json({
        "source": "tools/reference/llama_reference.py",
        "model": "Tests/Fixtures/llama_tiny/hf",
        "tokens": "reference.json `tokens` (2x17): inputs = tokens[:, :-1], targets = tokens[:, 1:]; loss = mean "
                  "cross-entropy over B*T = 32 predictions",
        "B": B, "T": T, "beta": BETA,
        "flows": ["vanilla"] + flows_saved,
        "definitions": {
            "vanilla": "Ordinary backprop. Its parameter gradients are grad.<key> of reference.safetensors (this file "
                       "only has vanilla.grad_input.*).",
            "myopic": "As flow_reference.py for GPT-2: in every layer's attention, the keys and values that a query at t "
                      "reads for an earlier position s < t are computed from a detached copy of the input_layernorm "
                      "output with live k_proj / v_proj weights (RoPE is applied to the key after k_proj, as in the "
                      "forward); the diagonal s = t uses live keys and values. Forward values are unchanged.",
            "beta0.5": "Like myopic, but the off-diagonal key/value gradient reaching the input_layernorm output is "
                       "scaled by beta = 0.5 instead of cut (x_beta = x.detach() + beta*(x - x.detach())).",
            "bigram": "Each position attends only to itself, o_t = v_t (v repeated over the H/KV query heads of its "
                      "group). A different model with the same weights.",
        },
        "losses": losses_f64,
        "losses_fp32_run": {name: res["f32"][saved_src.get(name, name)]["loss"].item() for name in ["vanilla"] + flows_saved},
        "tensors": {
            "<flow>.grad.<hf name>": "d(mean CE)/d(param) for flow in myopic, beta0.5, bigram",
            "<flow>.grad_input.{l}": f"d(mean CE)/d(residual entering layer l), [B,T,{HIDDEN}], flow in vanilla, "
                                     "myopic, beta0.5, bigram",
            "<flow>.grad_input.final": "d(mean CE)/d(residual after the last layer, before model.norm)",
            "precision": "computed in float64, stored as F32 (rounded once)",
        },
        "invariants": {
            "forward": "myopic and beta0.5 logits are bit-identical to vanilla's.",
            "equal_to_vanilla_params": same_params,
            "equal_why": "Backward reaches these before any key/value input activation. In the last layer q_proj is "
                         "unchanged and k_proj / v_proj get the sum of the diagonal and off-diagonal parts.",
            "different_from_vanilla_params": diff_params,
            "different_why": f"layer {last}'s input_layernorm gets the gradient of its output with the off-diagonal "
                             f"key/value part cut or scaled; everything below it (the layers before {last}, embed_tokens) "
                             "sees a changed residual gradient.",
            "grad_input": f"grad_input.final equals vanilla for myopic and beta0.5; grad_input.{{0..{last}}} differ, "
                          "except at position T-1, which no later query reads.",
            "embed_absent_rows": {"note": "embed_tokens rows of ids absent from the inputs are zero in every flow "
                                          "(the head is untied)", "present_ids": present},
            "myopic_is_diagonal_horizon": "myopic.grad_input.{l}[:, t] = d(l_t/(B*T))/d h_{l,t} (vanilla), checked "
                                          "against single-target backward passes",
            "myopic_is_diagonal_horizon_max_rel": sig(diag_rel, 2),
            "beta_linearity_rel": {k: sig(v, 3) for k, v in lin.items()},
            "beta_linearity_note": f"beta0.5 equals beta*vanilla + (1-beta)*myopic in layer {last} only",
            "bigram_qk_zero": "bigram: every q_proj and k_proj gradient is exactly zero",
            "T1": t1,
        },
        "sanity": {
            "note": "rel = ||g_flow - g_ref|| / ||g_ref|| per tensor; rel_vs_fixture compares the stored F32 tensors "
                    "with grad.<key> of reference.safetensors",
            "rel_f64": {name: {k: sig(rel(X[saved_src[name]]["grads"][k], V["grads"][k]), 4) for k in keys}
                        for name in flows_saved},
            "rel_vs_fixture": rel_vs_fixture,
            "rel_vs_fixture_equal_params_max": sig(fix_same, 3),
            "rel_vs_fixture_different_params_min": sig(fix_diff, 3),
        },
        "checks": {"implementations": consistency, "fp32_vs_f64": fp32_tol,
                   "implementations_note": "interp0 (saved myopic) vs myopic_split (literal), interp1 vs vanilla: "
                                           "max|diff| / max|ref| over all gradients"},
        "versions": versions,
    }, os.path.join(out, "flow_reference.json"))

    write_json({
        "source": "tools/reference/llama_reference.py",
        "model": "Tests/Fixtures/llama_tiny/hf (from_pretrained, eager, fp32)",
        "T": T,
        "tokens": tok[0].tolist(),
        "losses": [float(x) for x in h_losses.detach()],
        "mean_norm": mean_norm,
        "definition": "grads[l, t, i] = d loss_t / d h_{l,i} on row 0 of reference.json `tokens` (inputs tokens[0, :-1], "
                      "loss_t = cross-entropy of prediction t, not divided by T); h_{l,i} enters decoder layer l, "
                      "l = L is before model.norm; zero for i > t. mean_norm[l][k] = mean over i of ||grads[l, i+k, i]||",
        "checks": {"diagonal_over_BT_vs_flow_myopic_grad_input_max_rel": sig(h_diag, 2),
                   "note": "grads[l, t, t] / (B*T) against myopic.grad_input.{l}[0, t] of flow_reference (float64): "
                           "max |diff| / max |myopic row 0| (fp32 vs f64)"},
        "versions": versions,
    }, os.path.join(out, "horizon_reference.json"))

    write_json({
        "source": "tools/reference/llama_reference.py",
        "config": config_doc(True),
        "B": B, "T": T,
        "tokens": tok.tolist(),
        "loss": t_losses.mean().item(),
        "losses": t_losses.detach().tolist(),
        "tensors": {"logits": [B, T, VOCAB], "losses": [B, T]},
        "init": f"as reference.json, with torch.manual_seed({SEED_MODEL_TIED}) and generator seed {SEED_INIT_TIED}; "
                "the head is embed_tokens (one tensor)",
        "seeds": {"model": SEED_MODEL_TIED, "init": SEED_INIT_TIED, "tokens": SEED_TOKENS},
        "hf_keys": t_saved["hf_keys"],
        "hf_metadata": t_saved["hf_metadata"],
        "hf_config_json": t_saved["config_json"],
        "reload": t_saved["reload"],
        "versions": versions,
    }, os.path.join(out, "reference_tied.json"))

    # ------------------------------------------------------------ summary
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"loss {loss.item():.9g} (tied {t_losses.mean().item():.9g}); flows (f64): {losses_f64}")
    print(f"plain torch vs HF: logits {hf_logit_diff:.3g}, grads {hf_grad_diff:.3g}; gguf: {gguf['logits_permuted_interleaved_vs_hf_fp32_max_abs']}"
          f" (unpermuted {gguf['logits_unpermuted_interleaved_vs_hf_max_abs']})")
    print(f"attention: mean entropy/uniform {ent_ratio:.3f}, last-row max weight {max_weight:.3f}")
    print(f"rel vs fixture: equal params max {fix_same:.3g}, different params min {fix_diff:.3g}")
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            total += os.path.getsize(p)
            print(f"  {os.path.relpath(p, out):34s} {os.path.getsize(p):8d} B  sha256 {file_sha256(p)[:16]}")
    print(f"  total {total} B")
    if check.failures:
        print("FAILED:", check.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
