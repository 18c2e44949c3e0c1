#!/usr/bin/env python3
"""Reference fixtures for six Hugging Face model families: gpt_neox (Pythia), qwen2, qwen3, mistral, gemma2, olmo2.

For each family the script builds a small random `*ForCausalLM` (eager attention), saves it with save_pretrained
in fp32, and computes in float64 its logits, losses, residual streams and every parameter gradient, and the
myopic flow's gradients from a plain-torch reimplementation of the family's forward. It checks the plain-torch
forward against transformers' float64 model, the myopic flow against a second, literal formulation, and the
family's conventions (sliding-window mask, NeoX's fused q/k/v layout, partial rotary, Gemma 2's normaliser, query
scale and soft-capping, ...) by test. It exits 1 if a check fails.

Writes, under Tests/Fixtures/families/<model_type>/ (relative to the repo root unless --out is given):

  hf/config.json, hf/model.safetensors, hf/generation_config.json
      The model as written by save_pretrained (fp32, HF key names).
  reference.safetensors (all F32, computed in float64, rounded once)
      logits [B,T,V], losses [B,T]          forward on tokens[:, :-1], CE of targets tokens[:, 1:]
      hidden.{l} [B,T,C]                    residual stream entering decoder layer l
      resid_final [B,T,C]                   residual after the last layer, before the final norm
      grad.<name>                           d(mean CE)/d(param); <name> is the key in hf/model.safetensors
      myopic.grad.<name>                    the same under the myopic flow
      vanilla.grad_input.{l}, myopic.grad_input.{l}
                                            d(mean CE)/d(residual entering layer l); l = final: before the final norm
      decode.logits [12,V]                  logits of each step of a cached greedy decode (see reference.json)
  reference.json
      config (the config.json contents), B, T, tokens, loss, losses, myopic loss, param_keys / param_shapes,
      conventions, the checks with their measured values, the decode, notes and versions.

Float64: transformers' `.double()` model is not float64 throughout. Its RMSNorms cast their input to float32,
eager attention takes the softmax in float32 and the rotary tables are computed in float32 (logits differ from a
true float64 forward by about 1e-7 relative). The reference runs the `.double()` model under `StrictFloat64`, a
torch function mode that turns every cast to float32 into a cast to float64 and asserts that no op returns a
float32 tensor. Nothing else changes: RoPE inverse frequencies stay the float32 values HF stores in its buffer and
Gemma 2's normaliser stays HF's float32 sqrt(hidden) (both held in float64).

Everything is CPU, one thread, deterministic: running it twice gives byte-identical files.
Usage (from the repo root):  /opt/refenv/bin/python tools/reference/family_reference.py [--only gemma2,...]
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import safetensors
from safetensors import safe_open
from safetensors.torch import save_file
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from refutil import ce_rows, Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "families")

FAMILIES = ["gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]
VOCAB, INTER, NPOS, NHEAD = 96, 40, 64, 4
B, T = 2, 16
INIT_STD = 0.2        # every matrix and bias (and every embedding except Gemma 2's)
NORM_NOISE = 0.1      # norm weights 1 + 0.1·N(0,1); Gemma 2 stores w with its norm scaling by (1 + w): 0.1·N(0,1)
GEMMA_EMBED_STD = 0.5  # Gemma 2's embedding, multiplied by sqrt(32) = 5.66 in the forward (see notes)
GEMMA_QK_STD = 0.4     # Gemma 2's q_proj / k_proj, so the attention soft-cap (5.0) acts on the scores (see notes)
SEED_TOKENS = 2
SEED_MODEL = 0        # torch.manual_seed before HF's init (all of it is overwritten)
SEED_INIT = {"gpt_neox": 21, "qwen2": 22, "qwen3": 23, "mistral": 24, "gemma2": 25, "olmo2": 26}
PROMPT, NEW_TOKENS = 5, 12

REL_F64 = 1e-10       # plain torch vs HF float64, and myopic (interp) vs myopic (split)
EQUAL_F64 = 1e-12     # "equal in exact arithmetic"
DIFFER = 1e-4         # "really differs"

COMMON = dict(vocab_size=VOCAB, intermediate_size=INTER, max_position_embeddings=NPOS, num_attention_heads=NHEAD,
              attention_dropout=0.0, pad_token_id=None)
CONFIGS = {
    "gpt_neox": dict(hidden_size=48, num_hidden_layers=2, rotary_emb_base=1000.0, rotary_pct=0.5,
                     use_parallel_residual=True, hidden_act="gelu", tie_word_embeddings=False, layer_norm_eps=1e-5,
                     attention_bias=True, hidden_dropout=0.0),
    "qwen2": dict(hidden_size=32, num_hidden_layers=2, num_key_value_heads=2, head_dim=12, rope_theta=1000.0,
                  rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=True),
    "qwen3": dict(hidden_size=32, num_hidden_layers=2, num_key_value_heads=2, head_dim=12, rope_theta=1000.0,
                  rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False, attention_bias=False),
    "mistral": dict(hidden_size=32, num_hidden_layers=2, num_key_value_heads=2, head_dim=12, rope_theta=1000.0,
                    rms_norm_eps=1e-6, hidden_act="silu", sliding_window=6, tie_word_embeddings=False),
    "gemma2": dict(hidden_size=32, num_hidden_layers=3, num_key_value_heads=2, head_dim=12, rope_theta=1000.0,
                   rms_norm_eps=1e-6, sliding_window=6, query_pre_attn_scalar=20, attn_logit_softcapping=5.0,
                   final_logit_softcapping=3.0, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                   attention_bias=False),
    "olmo2": dict(hidden_size=32, num_hidden_layers=2, num_key_value_heads=2, head_dim=12, rope_theta=1000.0,
                  rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False, attention_bias=False),
}


# ============================================================================ float64 throughout

class StrictFloat64(TorchFunctionMode):
    """Run transformers' `.double()` model in float64 throughout: every requested float32 (a dtype=float32
    argument, Tensor.to(float32), Tensor.float()) becomes float64, and float32 results are counted (there must be
    none). `redirected` counts the casts that were turned into float64, by kind."""

    def __init__(self):
        super().__init__()
        self.redirected, self.f32_outputs = {}, 0

    def _note(self, what):
        self.redirected[what] = self.redirected.get(what, 0) + 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if kwargs.get("dtype") is torch.float32:
            kwargs["dtype"] = torch.float64
            self._note(f"{getattr(func, '__name__', str(func))}(dtype=float32)")
        if func is torch.Tensor.float:
            func = torch.Tensor.double
            self._note("Tensor.float()")
        if func is torch.Tensor.to and any(a is torch.float32 for a in args):
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            self._note("Tensor.to(float32)")
        out = func(*args, **kwargs)
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor) and o.dtype == torch.float32:
                self.f32_outputs += 1
        return out


# ============================================================================ HF model

def make_config(fam):
    cfg = AutoConfig.for_model(fam, **COMMON, **CONFIGS[fam])
    cfg._attn_implementation = "eager"
    return cfg


def norm_param_names(model):
    out = set()
    for mname, mod in model.named_modules():
        if "Norm" in type(mod).__name__:
            for pname, _ in mod.named_parameters(recurse=False):
                out.add(f"{mname}.{pname}" if mname else pname)
    return out


def build_model(fam):
    torch.manual_seed(SEED_MODEL)
    model = AutoModelForCausalLM.from_config(make_config(fam), attn_implementation="eager").float()
    assert model.config._attn_implementation == "eager"
    norms = norm_param_names(model)
    emb = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(SEED_INIT[fam])
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied head appears once, as the embedding
            z = torch.randn(p.shape, generator=g)
            if name in norms and name.endswith("weight"):
                p.copy_(NORM_NOISE * z if fam == "gemma2" else 1.0 + NORM_NOISE * z)
            elif p is emb and fam == "gemma2":
                p.copy_(GEMMA_EMBED_STD * z)
            elif fam == "gemma2" and name.endswith(("q_proj.weight", "k_proj.weight")):
                p.copy_(GEMMA_QK_STD * z)
            else:
                p.copy_(INIT_STD * z)
    tied = model.get_output_embeddings().weight is emb
    assert tied == CONFIGS[fam]["tie_word_embeddings"], (fam, tied)
    return model


def file_name(fam, name):
    """In-memory parameter name -> key in model.safetensors (transformers 5 renames NeoX's embed_out on load)."""
    return "embed_out.weight" if fam == "gpt_neox" and name == "lm_head.weight" else name


def base_of(model):
    return model.gpt_neox if hasattr(model, "gpt_neox") else model.model


def hf_forward(model, inputs):
    """logits, [residual entering layer l], residual before the final norm (live tensors)."""
    base = base_of(model)
    final_norm = base.final_layer_norm if hasattr(base, "final_layer_norm") else base.norm
    captured = []

    def grab(_m, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    hooks = [layer.register_forward_pre_hook(grab, with_kwargs=True) for layer in base.layers]
    hooks.append(final_norm.register_forward_pre_hook(grab, with_kwargs=True))
    logits = model(input_ids=inputs, use_cache=False).logits
    for h in hooks:
        h.remove()
    L = len(base.layers)
    assert len(captured) == L + 1
    return logits, captured[:L], captured[L]


# ============================================================================ plain-torch forward of the six families

class Spec:
    """What the plain-torch forward needs, read from the saved config.json."""

    def __init__(self, fam, cfg):
        self.fam = fam
        self.C, self.L, self.H = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.D = cfg.get("head_dim") or self.C // self.H
        rp = cfg["rope_parameters"]
        self.theta = float(rp["rope_theta"])
        self.rot = int(self.D * rp.get("partial_rotary_factor", 1.0))
        self.eps = cfg.get("rms_norm_eps", cfg.get("layer_norm_eps"))
        self.tied = cfg["tie_word_embeddings"]
        self.parallel = cfg.get("use_parallel_residual", True)  # GPT-NeoX: x + attn(ln1(x)) + mlp(ln2(x))
        W = cfg.get("sliding_window")
        if fam == "mistral":
            self.windows = [W] * self.L  # MistralModel: one sliding mask for every layer when sliding_window is set
        elif "layer_types" in cfg:
            self.windows = [W if t == "sliding_attention" else None for t in cfg["layer_types"]]
        else:
            self.windows = [None] * self.L
        self.scale = cfg["query_pre_attn_scalar"] ** -0.5 if fam == "gemma2" else self.D ** -0.5
        self.attn_cap = cfg.get("attn_logit_softcapping")
        self.final_cap = cfg.get("final_logit_softcapping")
        self.normaliser = torch.tensor(self.C ** 0.5, dtype=torch.float32).item() if fam == "gemma2" else None
        pre = "gpt_neox." if fam == "gpt_neox" else "model."
        self.emb = pre + ("embed_in.weight" if fam == "gpt_neox" else "embed_tokens.weight")
        self.head = self.emb if self.tied else ("embed_out.weight" if fam == "gpt_neox" else "lm_head.weight")
        self.layer = pre + "layers.{}."
        self.final_norm = pre + ("final_layer_norm" if fam == "gpt_neox" else "norm")


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rms_norm_1p(x, w, eps):
    """Gemma: the stored weight w scales by (1 + w)."""
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * (1.0 + w)


def rope_tables(Tn, rot, theta, dtype, denom=None):
    """cos, sin [T, rot/2]: angle pos·inv_freq[i]. inv_freq = 1/theta^(2i/rot) is computed in float32 as HF does
    (and as its buffer stores it), then held in `dtype`. `denom` (a mistake for the sensitivity table) replaces rot
    in the exponent."""
    inv_freq = (1.0 / (theta ** (torch.arange(0, rot, 2, dtype=torch.float32) / (denom or rot)))).to(dtype)
    ang = torch.arange(Tn, dtype=dtype)[:, None] * inv_freq[None, :]
    return ang.cos(), ang.sin()


def rope(x, cos, sin, rot, mode="half"):
    """Rotate the first `rot` dims of x [B,H,T,D]; dims rot.. pass through. "half" (HF / NeoX rotate_half):
    pairs (x[i], x[i + rot/2]); "interleaved" (a mistake for the sensitivity table): pairs (x[2i], x[2i+1])."""
    xr, xp = x[..., :rot], x[..., rot:]
    if mode == "half":
        h = rot // 2
        x1, x2 = xr[..., :h], xr[..., h:]
        xr = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    elif mode == "interleaved":
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        xr = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    elif mode == "none":
        pass
    else:
        raise ValueError(mode)
    return torch.cat((xr, xp), dim=-1)


def heads(t, n):
    Bn, Tn, Dn = t.shape
    return t.view(Bn, Tn, n, Dn // n).transpose(1, 2)  # [B,n,T,D]


def lin(x, P, name):
    y = x @ P[name + ".weight"].T
    b = P.get(name + ".bias")
    return y if b is None else y + b


def visible(Tn, window, off_by_one=False):
    """keys s a query t sees: s <= t, and t - W < s with a window W (transformers' convention, checked by test)."""
    t = torch.arange(Tn)[:, None]
    s = torch.arange(Tn)[None, :]
    m = s <= t
    if window is not None:
        m = m & ((t - s <= window) if off_by_one else (t - s < window))
    return m


def attention(q, kv, x, mask, scale, cap, flow, beta, stats=None):
    """q [B,H,T,D] (live); kv(inp) -> k, v [B,H,T,D] (rotated, grouped-query heads repeated) computed from the
    attention input `inp`. Returns o [B,H,T,D].

    The stop-gradient sits on x, the attention input (the output of the block's input norm; OLMo2: the residual
    stream), before every key/value site: the q/k norms, biases, partial rotary and grouped-query repeat are all
    applied to the detached input with live parameters. The soft-cap applies to the combined score.
      "vanilla"  plain attention.
      "split"    myopic, literally: scores q·k_detᵀ with the diagonal replaced by q_t·k_live_t;
                 o = (A with zeroed diagonal)·v_det + diag(A)·v_live.
      "interp"   off-diagonal keys/values from x_beta = x.detach() + beta·(x − x.detach()), plus the exactly-zero
                 terms q_t·(k_live_t − k_off_t) and diag(A)·(v_live − v_off): the forward is vanilla's bit for bit;
                 beta = 0 is myopic, beta = 1 vanilla (llama_reference.py's formulation).
    """
    Tn = q.shape[2]
    eye = torch.eye(Tn, dtype=torch.bool)

    def probs(S):
        S = S * scale
        if stats is not None:
            stats.setdefault("scores", []).append((S.detach(), mask))
        if cap is not None:
            S = torch.tanh(S / cap) * cap
        return S.masked_fill(~mask, float("-inf")).softmax(-1)

    k, v = kv(x)
    if flow == "vanilla":
        return probs(q @ k.transpose(-1, -2)) @ v
    if flow == "split":
        k_d, v_d = kv(x.detach())
        A = probs(torch.where(eye, torch.diag_embed((q * k).sum(-1)), q @ k_d.transpose(-1, -2)))
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A.masked_fill(eye, 0.0) @ v_d + a_diag.unsqueeze(-1) * v
    if flow == "interp":
        xd = x.detach()
        k_o, v_o = kv(xd + beta * (x - xd))
        A = probs(q @ k_o.transpose(-1, -2) + torch.diag_embed((q * (k - k_o)).sum(-1)))
        a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
        return A @ v_o + a_diag.unsqueeze(-1) * (v - v_o)
    raise ValueError(flow)


def block_context(S, Tn, dtype, mistake=None):
    """What every block of a forward over Tn positions shares: the rotary tables and mode, the query scale, the
    attention soft-cap and Gemma's (1 + w) norm (each as `mistake` may change it)."""
    mk = mistake or ""
    rot = S.D if mk == "rotate all head dims" else S.rot
    cos, sin = rope_tables(Tn, rot, S.theta, dtype, S.D if mk == "rotary frequencies over head_dim" else None)
    rmode = "interleaved" if mk.startswith("interleaved") else ("none" if mk == "no rope" else "half")
    scale = S.D ** -0.5 if mk == "query scale head_dim^-1/2" else S.scale
    cap = None if mk == "no attention soft-cap" else S.attn_cap
    n1p = (lambda h, w, e: w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + e))) \
        if mk == "norm scales by w, not 1+w" else rms_norm_1p
    return dict(rot=rot, cos=cos, sin=sin, rmode=rmode, scale=scale, cap=cap, n1p=n1p, mk=mk)


def block(S, P, prefix, x, window, ctx, flow="vanilla", beta=None, stats=None):
    """One decoder layer of the family on the residual stream x [B,T,C], its parameters under `prefix` (a trunk
    layer's `S.layer.format(l)`, or another block with the same keys, e.g. a prediction head's `mtp.{j}.`), its
    attention limited to `window` (None: causal). `ctx`: block_context. Returns the residual stream after it."""
    fam, Bn, Tn = S.fam, x.shape[0], x.shape[1]
    rot, cos, sin, rmode = ctx["rot"], ctx["cos"], ctx["sin"], ctx["rmode"]
    scale, cap, n1p, mk = ctx["scale"], ctx["cap"], ctx["n1p"], ctx["mk"]
    groups = S.H // S.KV
    p = lambda k: prefix + k
    mask = visible(Tn, window, off_by_one=(mk == "window sees t-W too"))

    def grouped(t):
        return t.repeat(1, groups, 1, 1) if mk == "kv head h % KV" else t.repeat_interleave(groups, dim=1)

    if fam == "gpt_neox":
        h = F.layer_norm(x, (S.C,), P[p("input_layernorm.weight")], P[p("input_layernorm.bias")], S.eps)

        def qkv(inp, _p=p):
            y = lin(inp, P, _p("attention.query_key_value"))
            if mk == "qkv as [Q|K|V] blocks":
                y = y.view(Bn, Tn, 3, S.H, S.D).permute(2, 0, 3, 1, 4)
                return y[0], y[1], y[2]
            y = y.view(Bn, Tn, S.H, 3 * S.D).transpose(1, 2)  # per head [q | k | v] (HF's view + chunk)
            return y[..., :S.D], y[..., S.D:2 * S.D], y[..., 2 * S.D:]

        q = rope(qkv(h)[0], cos, sin, rot, rmode)

        def kv(inp):
            _, k, v = qkv(inp)
            return rope(k, cos, sin, rot, rmode), v

        o = attention(q, kv, h, mask, scale, None, flow, beta, stats)
        a = lin(o.transpose(1, 2).reshape(Bn, Tn, S.C), P, p("attention.dense"))
        act = (lambda z: F.gelu(z, approximate="tanh")) if mk == "gelu tanh instead of erf" else F.gelu
        if mk == "sequential residual" or not S.parallel:
            x = x + a
            h2 = F.layer_norm(x, (S.C,), P[p("post_attention_layernorm.weight")],
                              P[p("post_attention_layernorm.bias")], S.eps)
            x = x + lin(act(lin(h2, P, p("mlp.dense_h_to_4h"))), P, p("mlp.dense_4h_to_h"))
        else:
            h2 = F.layer_norm(x, (S.C,), P[p("post_attention_layernorm.weight")],
                              P[p("post_attention_layernorm.bias")], S.eps)
            m = lin(act(lin(h2, P, p("mlp.dense_h_to_4h"))), P, p("mlp.dense_4h_to_h"))
            x = x + a + m  # parallel residual: both branches read the layer input
        return x

    # RMSNorm families (qwen2, qwen3, mistral, gemma2, olmo2)
    if fam == "gemma2":
        h = n1p(x, P[p("input_layernorm.weight")], S.eps)
    elif fam == "olmo2":
        h = rms_norm(x, P[p("post_attention_layernorm.weight")], S.eps) if mk == "olmo2 pre-norm" else x
    else:
        h = rms_norm(x, P[p("input_layernorm.weight")], S.eps)

    def project(inp, which, n, _p=p):
        y = lin(inp, P, _p(f"self_attn.{which}_proj"))
        norm_w = P.get(_p(f"self_attn.{which}_norm.weight"))
        if fam == "olmo2" and mk != "no q/k norm":
            if mk == "olmo2 q/k norm per head":
                y = heads(y, n)
                r = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + S.eps)
                return r * norm_w.view(n, 1, S.D)
            y = rms_norm(y, norm_w, S.eps)  # over the whole projection [n·D], before the head split
        y = heads(y, n)
        if fam == "qwen3" and mk not in ("no q/k norm", "q/k norm after rope"):
            y = rms_norm(y, norm_w, S.eps)  # per head, over D, before RoPE
        return y

    def post(y, which, _p=p):
        if fam == "qwen3" and mk == "q/k norm after rope":
            return rms_norm(y, P[_p(f"self_attn.{which}_norm.weight")], S.eps)
        return y

    q = post(rope(project(h, "q", S.H), cos, sin, rot, rmode), "q")

    def kv(inp):
        k = post(rope(project(inp, "k", S.KV), cos, sin, rot, rmode), "k")
        v = heads(lin(inp, P, p("self_attn.v_proj")), S.KV)
        return grouped(k), grouped(v)

    o = attention(q, kv, h, mask, scale, cap, flow, beta, stats)
    a = lin(o.transpose(1, 2).reshape(Bn, Tn, S.H * S.D), P, p("self_attn.o_proj"))
    if fam == "gemma2":
        x = x + n1p(a, P[p("post_attention_layernorm.weight")], S.eps)
        h2 = n1p(x, P[p("pre_feedforward_layernorm.weight")], S.eps)
        act = F.gelu if mk == "gelu erf instead of tanh" else (lambda z: F.gelu(z, approximate="tanh"))
        m = lin(act(lin(h2, P, p("mlp.gate_proj"))) * lin(h2, P, p("mlp.up_proj")), P, p("mlp.down_proj"))
        x = x + n1p(m, P[p("post_feedforward_layernorm.weight")], S.eps)
    elif fam == "olmo2":
        if mk == "olmo2 pre-norm":
            x = x + a
            h2 = rms_norm(x, P[p("post_feedforward_layernorm.weight")], S.eps)
            x = x + lin(F.silu(lin(h2, P, p("mlp.gate_proj"))) * lin(h2, P, p("mlp.up_proj")), P, p("mlp.down_proj"))
        else:
            x = x + rms_norm(a, P[p("post_attention_layernorm.weight")], S.eps)
            m = lin(F.silu(lin(x, P, p("mlp.gate_proj"))) * lin(x, P, p("mlp.up_proj")), P, p("mlp.down_proj"))
            x = x + rms_norm(m, P[p("post_feedforward_layernorm.weight")], S.eps)
    else:
        x = x + a
        h2 = rms_norm(x, P[p("post_attention_layernorm.weight")], S.eps)
        x = x + lin(F.silu(lin(h2, P, p("mlp.gate_proj"))) * lin(h2, P, p("mlp.up_proj")), P, p("mlp.down_proj"))
    return x


def forward(S, P, tok, flow="vanilla", beta=None, mistake=None, stats=None):
    """S: Spec; P: file key -> tensor. Returns (logits, [residual entering layer l] + [residual before the final
    norm]). `mistake` names one deliberate error, only for the sensitivity table."""
    x = embed(S, P, tok, mistake)
    ctx = block_context(S, tok.shape[1], x.dtype, mistake)
    mk = ctx["mk"]
    resid = []
    for l in range(S.L):
        window = S.windows[l]
        if mk == "no sliding window":
            window = None
        if mk == "gemma2 layer types swapped":
            window = None if S.windows[l] is not None else 6
        resid.append(x)
        x = block(S, P, S.layer.format(l), x, window, ctx, flow, beta, stats)
    resid.append(x)
    return head(S, P, x, ctx, stats), resid


def embed(S, P, tok, mistake=None):
    """The token embedding (Gemma 2: times its normaliser)."""
    mk = mistake or ""
    x = P[S.emb][tok]
    if S.fam == "gemma2" and mk != "no embedding normaliser":
        x = x * (math.sqrt(S.C) if mk == "normaliser exact sqrt(C) in float64" else S.normaliser)
    return x


def head(S, P, x, ctx, stats=None):
    """The final norm, the unembedding and (Gemma 2) the final soft-cap: logits from the residual stream."""
    fam, mk, n1p = S.fam, ctx["mk"], ctx["n1p"]
    if fam == "gpt_neox":
        x = F.layer_norm(x, (S.C,), P[S.final_norm + ".weight"], P[S.final_norm + ".bias"], S.eps)
    elif fam == "gemma2":
        x = n1p(x, P[S.final_norm + ".weight"], S.eps)
    else:
        x = rms_norm(x, P[S.final_norm + ".weight"], S.eps)
    logits = x @ P[S.head].T
    if stats is not None:
        stats["logits_precap"] = logits.detach()
    if S.final_cap is not None and mk != "no final soft-cap":
        logits = torch.tanh(logits / S.final_cap) * S.final_cap
    return logits


def run_flow(S, init, keys, tok, dtype, flow, beta=None):
    """Loss, losses, logits, parameter gradients and residual-stream gradients under one flow."""
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    logits, resid = forward(S, P, tok[:, :-1], flow, beta)
    losses = ce_rows(logits, tok[:, 1:])
    loss = losses.mean()
    gs = torch.autograd.grad(loss, [P[k] for k in keys] + resid, allow_unused=True)
    grads = {k: torch.zeros_like(P[k]) if g is None else g.detach() for k, g in zip(keys, gs[:len(keys)])}
    gin = {("final" if l == S.L else str(l)): g.detach() for l, g in enumerate(gs[len(keys):])}
    return {"loss": loss.detach(), "losses": losses.detach(), "logits": logits.detach(), "grads": grads, "gin": gin,
            "resid": [r.detach() for r in resid]}


# ============================================================================ helpers

def save_tensors(tensors, path):
    for k, v in tensors.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    save_file(dict(sorted((k, v.contiguous()) for k, v in tensors.items())), path, metadata={"format": "pt"})


def write_json(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def worst_rel(a, b, keys):
    """max over tensors of max|a − b| / max|b|."""
    w = 0.0
    for k in keys:
        w = max(w, maxabs(a["grads"][k], b["grads"][k]) / max(b["grads"][k].abs().max().item(), 1e-300))
    for k in b["gin"]:
        w = max(w, maxabs(a["gin"][k], b["gin"][k]) / b["gin"][k].abs().max().item())
    return w


def greedy_decode(model, prompt, steps):
    """Greedy decode with a DynamicCache (use_cache=True): the prompt in one call, then one token per call.
    Returns the generated ids and the logits each step chose from [steps, V]."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=prompt, past_key_values=cache, use_cache=True)
    ids, step_logits = [], []
    for _ in range(steps):
        lg = out.logits[0, -1]
        nxt = int(lg.argmax())
        ids.append(nxt)
        step_logits.append(lg)
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
    return ids, torch.stack(step_logits), cache


# ============================================================================ one family

MISTAKES = {
    "gpt_neox": ["qkv as [Q|K|V] blocks", "rotate all head dims", "rotary frequencies over head_dim", "interleaved pairs in the rotated dims", "no rope",
                 "sequential residual", "gelu tanh instead of erf"],
    "qwen2": ["interleaved rope pairs", "no rope", "kv head h % KV"],
    "qwen3": ["q/k norm after rope", "no q/k norm", "interleaved rope pairs", "kv head h % KV"],
    "mistral": ["no sliding window", "window sees t-W too", "interleaved rope pairs", "kv head h % KV"],
    "gemma2": ["no embedding normaliser", "normaliser exact sqrt(C) in float64", "query scale head_dim^-1/2",
               "no attention soft-cap", "no final soft-cap", "gemma2 layer types swapped", "no sliding window",
               "window sees t-W too", "norm scales by w, not 1+w", "gelu erf instead of tanh"],
    "olmo2": ["olmo2 q/k norm per head", "no q/k norm", "olmo2 pre-norm", "interleaved rope pairs"],
}
TINY_MISTAKES = {"normaliser exact sqrt(C) in float64"}  # reported, expected to be invisible at fp32 precision


def run_family(fam, out_root, tok, check, versions):
    out = os.path.join(out_root, fam)
    hf_dir = os.path.join(out, "hf")
    if os.path.isdir(hf_dir):
        shutil.rmtree(hf_dir)
    os.makedirs(out, exist_ok=True)
    inputs, targets = tok[:, :-1], tok[:, 1:]
    chk = lambda cond, what: check(cond, f"{fam}: {what}")
    checks, notes = {}, []

    # ------------------------------------------------------------ 1. build, save, reload
    model = build_model(fam)
    model.eval()  # no dropout anywhere
    names = [n for n, _ in model.named_parameters()]
    keys = [file_name(fam, n) for n in names]
    with torch.no_grad():
        logits_built = model(input_ids=inputs, use_cache=False).logits
    model.save_pretrained(hf_dir, safe_serialization=True)
    with safe_open(os.path.join(hf_dir, "model.safetensors"), framework="pt") as f:
        file_keys = sorted(f.keys())
        file_dtypes = sorted({str(f.get_tensor(k).dtype) for k in file_keys})
        file_shapes = {k: list(f.get_tensor(k).shape) for k in file_keys}
    cfg_json = json.load(open(os.path.join(hf_dir, "config.json")))
    chk(sorted(keys) == file_keys, f"file keys = parameters (renamed): {sorted(set(keys) ^ set(file_keys))}")
    chk(file_dtypes == ["torch.float32"], f"file dtypes {file_dtypes}")
    m32, info = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32,
                                                     output_loading_info=True)
    m32.eval()
    load_problems = {k: sorted(map(str, v)) for k, v in info.items() if v}
    chk(not load_problems, f"from_pretrained loading info {load_problems}")
    with torch.no_grad():
        logits_reload = m32(input_ids=inputs, use_cache=False).logits
    chk(torch.equal(logits_reload, logits_built), "from_pretrained reproduces the logits bit for bit")
    tied = m32.get_output_embeddings().weight is m32.get_input_embeddings().weight
    chk(tied == cfg_json["tie_word_embeddings"], "reloaded head tied as configured")
    checks["reload"] = {"auto_class": type(m32).__name__, "bit_identical_logits": bool(torch.equal(logits_reload, logits_built)),
                        "reloaded_head_tied": tied}
    init = {file_name(fam, n): p.detach().clone() for n, p in m32.named_parameters()}
    S = Spec(fam, cfg_json)

    # ------------------------------------------------------------ 2. HF float64 (strict) forward / backward
    m64 = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).double()
    m64.eval()
    mode = StrictFloat64()
    with mode:
        logits, hidden, resid_final = hf_forward(m64, inputs)
        losses = ce_rows(logits, targets)
        loss = losses.mean()
        loss.backward()
    chk(mode.f32_outputs == 0, f"strict float64: {mode.f32_outputs} float32 results")
    chk(logits.dtype == torch.float64, "HF float64 logits")
    hf_grads = {file_name(fam, n): p.grad.detach().clone() for n, p in m64.named_parameters()}
    with torch.no_grad():
        logits_double = m64(input_ids=inputs, use_cache=False).logits  # `.double()` as transformers runs it
    checks["strict_float64"] = {
        "float32_casts_redirected": dict(sorted(mode.redirected.items())),
        "float32_results": mode.f32_outputs,
        "plain_double_vs_strict_logits_rel": sig(rel(logits_double, logits.detach()), 3),
        "note": "transformers' .double() model without StrictFloat64: its RMSNorms, softmax and rotary tables run "
                "in float32; rel = ||logits_double - logits_strict|| / ||logits_strict||",
    }
    if fam == "gpt_neox":
        checks["strict_float64"]["note"] = checks["strict_float64"]["note"].replace("RMSNorms, ", "")

    # HF fp32 (the saved model as transformers runs it) against the float64 reference
    m32.zero_grad(set_to_none=True)
    l32, h32, rf32 = hf_forward(m32, inputs)
    loss32 = ce_rows(l32, targets).mean()
    loss32.backward()
    g32 = {file_name(fam, n): p.grad for n, p in m32.named_parameters()}
    checks["hf_fp32_vs_f64"] = {
        "logits_max_abs": sig(maxabs(l32, logits), 2),
        "loss_abs": sig(abs(loss32.item() - loss.item()), 2),
        "grads_max_abs": sig(max(maxabs(g32[k], hf_grads[k]) for k in keys), 2),
        "grads_max_rel": sig(max(rel(g32[k], hf_grads[k]) for k in keys), 2),
        "hidden_max_abs": sig(max(maxabs(a, b) for a, b in zip(h32 + [rf32], hidden + [resid_final])), 2),
        "note": "transformers' fp32 model (from_pretrained) against the float64 reference: what an fp32 "
                "implementation can expect; grads_max_rel is per tensor ||g32 - g64|| / ||g64||",
    }

    # ------------------------------------------------------------ 3. plain torch against HF float64
    variants = {"vanilla": ("vanilla", None), "split": ("split", None), "interp0": ("interp", 0.0),
                "interp1": ("interp", 1.0)}
    X = {name: run_flow(S, init, keys, tok, torch.float64, f, b) for name, (f, b) in variants.items()}
    X32 = {name: run_flow(S, init, keys, tok, torch.float32, f, b) for name, (f, b) in
           (("vanilla", ("vanilla", None)), ("interp0", ("interp", 0.0)))}
    V, M = X["vanilla"], X["interp0"]
    lrel = rel(V["logits"], logits.detach())
    grel = max(rel(V["grads"][k], hf_grads[k]) for k in keys)
    hrel = max(rel(a, b.detach()) for a, b in zip(V["resid"], hidden + [resid_final]))
    chk(lrel <= REL_F64, f"plain torch f64 logits vs HF f64: {lrel:.3g}")
    chk(grel <= REL_F64, f"plain torch f64 grads vs HF f64: {grel:.3g}")
    chk(hrel <= REL_F64, f"plain torch f64 residual streams vs HF f64: {hrel:.3g}")
    checks["plain_torch_f64_vs_hf_f64"] = {"logits_rel": sig(lrel, 2), "logits_max_abs": sig(maxabs(V["logits"], logits), 2),
                                          "grads_max_rel": sig(grel, 2), "residuals_max_rel": sig(hrel, 2),
                                          "loss_abs": sig(abs(V["loss"].item() - loss.item()), 2)}

    # Mistakes: how far one wrong convention moves the logits (float64).
    P64 = {k: v.double() for k, v in init.items()}
    sensitivity = {}
    for mk in MISTAKES[fam]:
        wrong, _ = forward(S, P64, inputs, mistake=mk)
        d = maxabs(wrong, V["logits"])
        dl = abs(ce_rows(wrong, targets).mean().item() - V["loss"].item())
        sensitivity[mk] = {"logits_max_abs": sig(d, 3), "loss_abs": sig(dl, 3)}
        if mk in TINY_MISTAKES:
            chk(d < 1e-5, f"mistake '{mk}' is below fp32 precision: {d:.3g}")
        else:
            chk(d > 1e-3, f"mistake '{mk}' is visible: {d:.3g}")

    # The family's default pad_token_id (here set to null) would make nn.Embedding(padding_idx) drop that row's
    # lookup gradient.
    default_pad = AutoConfig.for_model(fam).pad_token_id
    if default_pad is not None:
        pad_in = inputs.clone()
        pad_in[:, 3] = default_pad
        rows = {}
        for label, kw in (("null", {}), ("default", {"pad_token_id": default_pad})):
            mp = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32, **kw)
            ce_rows(mp(input_ids=pad_in, use_cache=False).logits, targets).mean().backward()
            rows[label] = (mp.get_input_embeddings().padding_idx, mp.get_input_embeddings().weight.grad[default_pad].clone())
        dropped = (rows["null"][1] - rows["default"][1]).norm().item()
        chk(rows["default"][0] == default_pad and rows["null"][0] is None and dropped > 1e-4,
            f"default pad_token_id {default_pad} drops that embedding row's lookup gradient ({dropped:.3g})")
        checks["default_pad_token_id"] = {"family_default": default_pad, "used": None,
                                          "dropped_row_grad_norm_when_the_id_is_an_input": sig(dropped, 3)}
        notes.append(f"pad_token_id is null here. The {fam} default, {default_pad}, becomes nn.Embedding's padding_idx, "
                     f"and then HF's backward drops the embedding-lookup gradient of row {default_pad}: wherever that id "
                     "is an input, the row gets no lookup gradient"
                     + (" (only the tied head's part)" if S.tied else "")
                     + ". This was checked with the id placed at position 3.")

    # ------------------------------------------------------------ 4. conventions by test
    conventions = family_conventions(fam, S, cfg_json, m64, hf_dir, inputs, init, V, chk, checks, notes)

    # ------------------------------------------------------------ 5. myopic flow
    flows = {}
    w_split = worst_rel(X["interp0"], X["split"], keys)
    w_van = worst_rel(X["interp1"], V, keys)
    chk(w_split <= REL_F64, f"myopic interp (beta 0) vs split: {w_split:.3g}")
    chk(w_van <= EQUAL_F64, f"interp beta 1 vs vanilla: {w_van:.3g}")
    for a in ("interp0", "interp1"):
        chk(torch.equal(X[a]["logits"], V["logits"]), f"{a} logits bit-identical to vanilla")
    flows["interp0_vs_split_max_rel"] = sig(w_split, 2)
    flows["interp1_vs_vanilla_max_rel"] = sig(w_van, 2)
    flows["split_logits_vs_vanilla_max_abs"] = sig(maxabs(X["split"]["logits"], V["logits"]), 2)
    flows["logits_bit_identical"] = "interp (beta 0 and 1) gives vanilla's logits bit for bit (float64)"
    last = S.L - 1
    lp = S.layer.format(last)
    final_keys = [k for k in keys if k.startswith(S.final_norm + ".")]
    same = [k for k in keys if (k.startswith(lp) and "input_layernorm" not in k) or k in final_keys
            or (k == S.head and not S.tied)]
    diff = [k for k in keys if k not in same]
    for k in same:
        r = rel(M["grads"][k], V["grads"][k])
        chk(r < EQUAL_F64, f"myopic {k} equals vanilla ({r:.3g})")
    for k in diff:
        r = rel(M["grads"][k], V["grads"][k])
        chk(r > DIFFER, f"myopic {k} differs from vanilla ({r:.3g})")
    chk(rel(M["gin"]["final"], V["gin"]["final"]) < EQUAL_F64, "myopic grad_input.final equals vanilla")
    for l in range(S.L):
        chk(rel(M["gin"][str(l)], V["gin"][str(l)]) > DIFFER, f"myopic grad_input.{l} differs")
        chk(rel(M["gin"][str(l)][:, T - 1], V["gin"][str(l)][:, T - 1]) < EQUAL_F64, f"myopic grad_input.{l}[:, T-1] equals vanilla")
    # The myopic residual gradient at (l, t) is the vanilla gradient of the loss at t alone (horizon offset 0).
    Pv = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    lg, resid = forward(S, Pv, inputs)
    lt = ce_rows(lg, targets) / (B * T)
    diag = [torch.zeros_like(r) for r in resid]
    for t in range(T):
        gs = torch.autograd.grad(lt[:, t].sum(), resid, retain_graph=True)
        for l in range(S.L + 1):
            diag[l][:, t] = gs[l][:, t]
    diag_rel = max(rel(M["gin"]["final" if l == S.L else str(l)], diag[l]) for l in range(S.L + 1))
    chk(diag_rel < EQUAL_F64, f"myopic grad_input = per-target diagonal: {diag_rel:.3g}")
    present = sorted(set(inputs.flatten().tolist()))
    absent = [i for i in range(VOCAB) if i not in present]
    if not S.tied:
        for name, F_ in (("vanilla", V), ("myopic", M)):
            chk(F_["grads"][S.emb][absent].abs().max().item() == 0.0, f"{name}: embedding rows of absent ids are zero")
    fp32 = {}
    for name, src in (("vanilla", "vanilla"), ("myopic", "interp0")):
        a, b = X32[src], X[src]
        fp32[name] = {"grads_max_abs": sig(max(maxabs(a["grads"][k], b["grads"][k]) for k in keys), 2),
                      "grads_max_rel": sig(max(rel(a["grads"][k], b["grads"][k]) for k in keys), 2),
                      "grad_input_max_abs": sig(max(maxabs(a["gin"][k], b["gin"][k]) for k in b["gin"]), 2),
                      "loss_abs": sig(abs(a["loss"].item() - b["loss"].item()), 2)}
    flows.update({
        "equal_to_vanilla_params": same,
        "different_from_vanilla_params": {k: sig(rel(M["grads"][k], V["grads"][k]), 3) for k in diff},
        "different_note": "rel = ||myopic - vanilla|| / ||vanilla|| per tensor (float64)",
        "grad_input": "myopic grad_input.final equals vanilla; grad_input.{l} differ except at position T-1, which no "
                      "later query reads",
        "myopic_is_diagonal_horizon_max_rel": sig(diag_rel, 2),
        "myopic_is_diagonal_horizon": "myopic.grad_input.{l}[:, t] = d(loss_t/(B*T))/d h_{l,t} under vanilla "
                                      "backprop, checked against T single-target backward passes",
        "plain_fp32_vs_f64": fp32,
    })
    if not S.tied:
        flows["embedding_absent_rows"] = "embedding rows of ids absent from the inputs are 0 in both flows (untied head)"

    # ------------------------------------------------------------ 6. cached greedy decode
    decode = cached_decode(fam, S, m32, m64, tok, P64, chk)

    notes.extend(family_notes(fam, S, checks, decode))

    # ------------------------------------------------------------ 7. write
    tensors = {"logits": logits.detach(), "losses": losses.detach(), "resid_final": resid_final.detach(),
               "decode.logits": decode.pop("logits_tensor")}
    for l in range(S.L):
        tensors[f"hidden.{l}"] = hidden[l].detach()
    for k in keys:
        tensors[f"grad.{k}"] = hf_grads[k]
        tensors[f"myopic.grad.{k}"] = M["grads"][k]
    for k in V["gin"]:
        tensors[f"vanilla.grad_input.{k}"] = V["gin"][k]
        tensors[f"myopic.grad_input.{k}"] = M["gin"][k]
    save_tensors({k: v.float() for k, v in tensors.items()}, os.path.join(out, "reference.safetensors"))

    shapes = {k: file_shapes[k] for k in keys}
    doc = {
        "source": "tools/reference/family_reference.py",
        "model_type": fam,
        "auto_class": type(m32).__name__,
        "config": cfg_json,
        "B": B, "T": T,
        "tokens": tok.tolist(),
        "loss": loss.item(),
        "losses": losses.detach().tolist(),
        "loss_hf_fp32": loss32.item(),
        "param_keys": keys,
        "param_shapes": shapes,
        "tied_head": S.tied,
        "tensors": {
            "logits": [B, T, VOCAB], "losses": [B, T],
            "hidden.{l}": f"residual entering decoder layer l, [B,T,{S.C}], l = 0..{S.L - 1}",
            "resid_final": "residual after the last layer, before the final norm",
            "grad.<name>": "d(mean CE)/d(param), HF float64 autograd; <name> = the key in hf/model.safetensors"
                           + ("; the tied head appears once, as the embedding" if S.tied else ""),
            "myopic.grad.<name>": "the same under the myopic flow (plain torch, float64)",
            "vanilla.grad_input.{l}": "d(mean CE)/d(residual entering layer l); l = final: before the final norm",
            "myopic.grad_input.{l}": "the same under the myopic flow",
            "decode.logits": f"[{NEW_TOKENS},{VOCAB}] logits of each step of the cached greedy decode (`decode`)",
            "precision": "computed in float64, stored as F32 (rounded once)",
        },
        "conventions": conventions,
        "myopic": {
            "loss": M["loss"].item(),
            "loss_note": "equal to `loss` up to float64 rounding: the myopic forward is vanilla's",
            "definition": "In every layer's attention, the keys and values that a query at t reads for an earlier "
                          "position s < t are computed from a detached copy of the attention input, with live "
                          "weights; the diagonal s = t is live. Forward values are unchanged (vanilla's logits bit for "
                          "bit). Computed with llama_reference.py's `interp` formulation at beta = 0, cross-checked "
                          "with the literal `split` formulation.",
            "stop_gradient": conventions["myopic_stop_gradient"],
            "checks": flows,
        },
        "sensitivity": sensitivity,
        "sensitivity_note": "max |logits - logits_wrong| and |loss - loss_wrong| (float64) when the forward makes one "
                            "mistake; the logits themselves reach %.3g" % logits.detach().abs().max().item(),
        "checks": checks,
        "decode": decode,
        "init": init_doc(fam, S),
        "seeds": {"model": SEED_MODEL, "init": SEED_INIT[fam], "tokens": SEED_TOKENS},
        "hf_keys": file_keys,
        "hf_files": sorted(os.listdir(hf_dir)),
        "notes": notes,
        "versions": versions,
    }
    write_json(doc, os.path.join(out, "reference.json"))
    return {"loss": loss.item(), "myopic_loss": M["loss"].item(), "plain_vs_hf": lrel, "split": flows["interp0_vs_split_max_rel"]}


def family_conventions(fam, S, cfg, m64, hf_dir, inputs, init, V, chk, checks, notes):
    """The family's conventions, each determined or confirmed by a test; adds measurements to `checks`."""
    conv = {
        "inputs_targets": "inputs = tokens[:, :-1], targets = tokens[:, 1:]; loss = mean cross-entropy over B*T",
        "linear": "HF Linear weights are [out, in]: y = x @ W^T (+ bias)",
        "rope": f"half-split (rotate_half) on the first {S.rot} of {S.D} head dims: pairs (x[i], x[i+{S.rot // 2}]) "
                f"for i < {S.rot // 2}, angle pos * inv_freq[i], inv_freq[i] = theta^(-2i/{S.rot}) with theta = "
                f"{S.theta:g} (config rope_parameters.rope_theta); HF computes inv_freq in float32"
                + (f"; dims {S.rot}..{S.D - 1} pass through unrotated" if S.rot < S.D else ""),
        "query_scale": (f"query_pre_attn_scalar^-1/2 = {cfg['query_pre_attn_scalar']}^-1/2 (not head_dim^-1/2)"
                        if fam == "gemma2" else f"head_dim^-1/2 = {S.D}^-1/2"),
        "head_dim": S.D,
    }
    # Which keys a query sees: the attention probabilities of HF's float64 model, per layer.
    with StrictFloat64():
        att = m64(input_ids=inputs, use_cache=False, output_attentions=True).attentions
    seen = []
    for l, A in enumerate(att):
        vis = (A > 0).all(0).all(0)
        hidden_any = (A > 0).any(0).any(0)
        chk(torch.equal(vis, hidden_any), f"layer {l}: every row and head sees the same keys")
        ok = torch.equal(vis, visible(T, S.windows[l]))
        chk(ok, f"layer {l}: HF's visible keys are s <= t" + (f", t - {S.windows[l]} < s" if S.windows[l] else ""))
        if S.windows[l] is not None:
            chk(not torch.equal(vis, visible(T, S.windows[l], off_by_one=True)), f"layer {l}: not t - W <= s")
        seen.append({"layer": l, "window": S.windows[l], "keys_seen_by_last_query": int(vis[-1].sum()),
                     "matches": "t - W < s <= t" if S.windows[l] else "s <= t"})
    checks["attention_mask_by_test"] = seen
    if any(w is not None for w in S.windows):
        W = cfg["sliding_window"]
        conv["sliding_window"] = (f"sliding_window W = {W}: a query at position t sees the keys s with t - W < s <= t, "
                                  f"i.e. itself and the {W - 1} positions before it ({W} keys); determined from HF's "
                                  "float64 attention probabilities (zero exactly outside that band, for every layer, "
                                  "row and head)")
        conv["sliding_layers"] = [l for l, w in enumerate(S.windows) if w is not None]
    else:
        conv["sliding_window"] = "none: every layer is fully causal (s <= t)"
    conv["myopic_stop_gradient"] = None  # filled below

    # head_dim: honoured where the q_proj has H * head_dim rows.
    if fam != "gpt_neox":
        rows = init[S.layer.format(0) + "self_attn.q_proj.weight"].shape[0]
        honoured = rows == S.H * 12
        chk(honoured, f"head_dim 12 honoured (q_proj rows {rows})")
        conv["head_dim_honoured"] = {"requested": 12, "q_proj_rows": rows, "honoured": honoured,
                                     "config_declares_head_dim": "head_dim" in type(m64.config).__annotations__}

    if fam == "gpt_neox":
        from transformers import GPTNeoXConfig
        legacy = GPTNeoXConfig.from_dict({"hidden_size": 48, "num_attention_heads": 4, "rotary_emb_base": 1000,
                                          "rotary_pct": 0.5})
        bare = GPTNeoXConfig.from_dict({"hidden_size": 48, "num_attention_heads": 4})
        rp_legacy, rp_bare = dict(legacy.rope_parameters), dict(bare.rope_parameters)
        chk(float(rp_legacy["rope_theta"]) == 1000.0 and rp_legacy["partial_rotary_factor"] == 0.5,
            f"legacy rotary_emb_base / rotary_pct keys are read: {rp_legacy}")
        checks["neox_config_keys"] = {"legacy_keys_read_as": rp_legacy, "defaults_when_absent": rp_bare}
        conv.update({
            "layer": "parallel residual (use_parallel_residual): x + dense(attn(LN_in(x))) + mlp(LN_post(x)); both "
                     "LayerNorms read the layer input",
            "layer_norm": f"LayerNorm with weight and bias, eps {S.eps:g}",
            "mlp": "dense_4h_to_h(gelu(dense_h_to_4h(x))), gelu = exact erf form (hidden_act 'gelu'), biases",
            "qkv_layout": f"query_key_value.weight [{3 * S.C}, {S.C}] (+ bias [{3 * S.C}]): per head h, rows "
                          f"h*{3 * S.D} + [0,{S.D}) are q, + [{S.D},{2 * S.D}) k, + [{2 * S.D},{3 * S.D}) v (HF: "
                          f"view(B, T, H, 3*D) then chunk(3)); interleaved per head, not [Q|K|V] blocks",
            "partial_rotary": f"rope_parameters.partial_rotary_factor {cfg['rope_parameters']['partial_rotary_factor']}"
                              f" -> rotary_ndims = int({S.D} * factor) = {S.rot}: dims 0..{S.rot - 1} of each q/k "
                              f"head rotate as pairs (i, i+{S.rot // 2}), i < {S.rot // 2}; the frequencies use "
                              f"rotary_ndims: inv_freq[i] = theta^(-2i/{S.rot}); dims {S.rot}..{S.D - 1} pass through",
            "head": "untied: embed_out.weight in the file (transformers 5 loads it as lm_head.weight); no bias",
            "final_norm": "gpt_neox.final_layer_norm (LayerNorm)",
            "biases": "every Linear has a bias (attention_bias true) and the LayerNorms have biases",
        })
        conv["myopic_stop_gradient"] = (
            "on the output of input_layernorm (the attention input). The off-diagonal keys/values are the k and v "
            "slices of query_key_value(x_det) (live weight and bias) with partial RoPE on k; the MLP branch "
            "(post_attention_layernorm of the same layer input) is untouched.")
        # the pass-through key-bias dims get no gradient: softmax ignores a per-query constant
        rows = [h * 3 * S.D + S.D + j for h in range(S.H) for j in range(S.rot, S.D)]
        kb = torch.stack([V["grads"][S.layer.format(l) + "attention.query_key_value.bias"][rows] for l in range(S.L)])
        notes.append("GPT-NeoX: the key-bias entries of the unrotated dims (query_key_value.bias rows h*36 + 18..23) "
                     "add a per-query constant to the scores, which softmax ignores: their gradient is zero in exact "
                     "arithmetic (float64 noise, compare with an absolute tolerance)")
        checks["neox_passthrough_key_bias_grad_max_abs_f64"] = sig(kb.abs().max().item(), 2)
    elif fam in ("qwen2", "qwen3", "mistral"):
        conv.update({
            "layer": "pre-norm: x + o_proj(attn(RMSNorm_in(x))), then x + mlp(RMSNorm_post(x))",
            "rms_norm": f"w * x / sqrt(mean(x^2) + eps), eps {S.eps:g}",
            "mlp": "down_proj(silu(gate_proj(x)) * up_proj(x)), no biases",
            "gqa": "query head h reads key/value head h // (H/KV) (repeat_kv)",
            "head": "tied to model.embed_tokens.weight (no lm_head.weight in the file)" if S.tied
                    else "untied lm_head.weight [V, C], no bias",
        })
        conv["myopic_stop_gradient"] = ("on the output of input_layernorm (the attention input), before k_proj / "
                                        "v_proj" + (" and their biases (live)" if fam == "qwen2" else "")
                                        + (", so the off-diagonal key is rope(k_norm(k_proj(x_det))) with the live "
                                           "k_norm weight" if fam == "qwen3" else ", so the key is rope(k_proj(x_det))"))
        if fam == "qwen2":
            conv["biases"] = "q_proj, k_proj, v_proj have biases; o_proj and the MLP have none"
        if fam == "qwen3":
            conv["qk_norm"] = (f"q_norm.weight and k_norm.weight have shape [head_dim] = [{S.D}]: an RMSNorm over "
                               "each head's D dims (shared by all heads), applied after the projection and head split "
                               "and BEFORE RoPE: q = rope(q_norm(view(q_proj(x), H, D)))")
        if fam == "mistral":
            conv["sliding_layers_note"] = ("MistralModel applies one sliding-window mask to every layer when "
                                           "config.sliding_window is set (MistralConfig has no layer_types)")
    elif fam == "gemma2":
        w = m64.model.embed_tokens
        buf = w.embed_scale
        m_bf16 = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager",
                                                      dtype=torch.bfloat16)
        b16 = m_bf16.model.embed_tokens.embed_scale
        eff_bf16 = float(b16.to(m_bf16.model.embed_tokens.weight.dtype))
        checks["gemma2_normaliser"] = {
            "value_used_f64": S.normaliser, "exact_sqrt_C": math.sqrt(S.C),
            "hf_buffer_after_double": {"dtype": str(buf.dtype), "value": float(buf)},
            "hf_buffer_bf16_model": {"dtype": str(b16.dtype), "effective_multiplier": eff_bf16},
        }
        chk(float(buf) == S.normaliser, "HF's normaliser (after .double()) is the float32 sqrt(C)")
        conv.update({
            "layer": "sandwich norms: x + post_attention_layernorm(o_proj(attn(input_layernorm(x)))), then "
                     "x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))",
            "rms_norm": f"(x / sqrt(mean(x^2) + eps)) * (1 + w), eps {S.eps:g}; the stored weight w is an offset "
                        "(zeros = identity); HF multiplies in float32 and casts after (Llama casts before)",
            "mlp": "down_proj(gelu_tanh(gate_proj(x)) * up_proj(x)), gelu_tanh = gelu(approximate='tanh') "
                   "(hidden_activation gelu_pytorch_tanh)",
            "embedding_normaliser": f"embed_tokens(ids) * normaliser, normaliser = sqrt(hidden_size) held by HF as a "
                                    f"float32 buffer ({S.normaliser!r}; exact sqrt({S.C}) = {math.sqrt(S.C)!r}) and "
                                    "cast to the weight dtype at use (bf16: %r); the tied head uses the unscaled "
                                    "embedding matrix" % eff_bf16,
            "attention_softcap": f"cap * tanh(s / cap) with cap = attn_logit_softcapping = {S.attn_cap:g}, applied to "
                                 "the scaled score s = (q . k) * query_pre_attn_scalar^-1/2, before the mask and "
                                 "softmax",
            "final_softcap": f"logits = cap * tanh(z / cap), cap = final_logit_softcapping = {S.final_cap:g}, z = "
                             "final-norm output @ embed^T; the loss is taken on the capped logits",
            "layer_types": cfg["layer_types"],
            "layer_types_rule": "default layer_types: layer i is sliding_attention when (i+1) % 2 == 1, i.e. the "
                                "even layers (0, 2, ...) slide and the odd layers are global",
            "gqa": "query head h reads key/value head h // (H/KV) (repeat_kv)",
            "head": "tied to model.embed_tokens.weight (no lm_head.weight in the file)",
        })
        conv["myopic_stop_gradient"] = ("on the output of input_layernorm (the attention input). The soft-cap applies "
                                        "to the combined score (off-diagonal q.k_det and diagonal q_t.k_t alike), "
                                        "after the query scale; keys outside a sliding window are masked and get no "
                                        "gradient")
        # soft-cap regime: fraction of visible scores / logits with |x| / cap > 0.5
        stats = {}
        forward(S, {k: v.double() for k, v in init.items()}, inputs, stats=stats)
        frac = []
        for l, (Sc, mask) in enumerate(stats["scores"]):
            vals = Sc.masked_select(mask.expand_as(Sc)).abs() / S.attn_cap
            frac.append({"layer": l, "frac_over_half": sig((vals > 0.5).double().mean().item(), 3),
                         "max": sig(vals.max().item(), 3)})
        z = stats["logits_precap"].abs() / S.final_cap
        checks["gemma2_softcap_regime"] = {
            "attention_scores": frac,
            "final_logits": {"frac_over_half": sig((z > 0.5).double().mean().item(), 3), "max": sig(z.max().item(), 3)},
            "note": "|x| / cap over the visible (unmasked) scaled scores per layer and over the pre-cap logits; "
                    "tanh(0.5) / 0.5 = 0.924, so entries above 0.5 are visibly capped",
        }
        chk(min(f["frac_over_half"] for f in frac) > 0.2, "attention soft-cap is non-linear on the scores")
        chk((z > 0.5).double().mean().item() > 0.2, "final soft-cap is non-linear on the logits")
    elif fam == "olmo2":
        conv.update({
            "layer": "post-norm, no input norm: x + post_attention_layernorm(o_proj(attn(x))), then "
                     "x + post_feedforward_layernorm(mlp(x)); the attention and the MLP read the raw residual stream",
            "rms_norm": f"w * x / sqrt(mean(x^2) + eps), eps {S.eps:g} (the family default is 1e-5; set here to "
                        "1e-6)",
            "qk_norm": f"q_norm.weight [{S.H * S.D}] and k_norm.weight [{S.KV * S.D}]: one RMSNorm over the whole "
                       "projection (all heads together), applied before the head split and before RoPE: "
                       "q = rope(view(q_norm(q_proj(x)), H, D))",
            "mlp": "down_proj(silu(gate_proj(x)) * up_proj(x)), no biases",
            "gqa": "query head h reads key/value head h // (H/KV) (repeat_kv)",
            "head": "untied lm_head.weight [V, C], no bias; model.norm before it",
        })
        conv["myopic_stop_gradient"] = ("on the residual stream entering the layer (OLMo2 has no pre-attention norm: "
                                        "the attention input is the residual itself). The off-diagonal key is "
                                        "rope(k_norm(k_proj(x_det))) with the live k_norm weight; k_norm normalises "
                                        "the whole [KV*D] projection of that position, so it mixes only that "
                                        "position's own (detached) values")
    return conv


def family_notes(fam, S, checks, decode):
    """transformers 5.23 behaviour worth knowing when reading or writing these folders (each backed by a check)."""
    n = [
        "transformers' `.double()` model is not float64 throughout: its softmax (eager, dtype=float32)"
        + (" and" if fam == "gpt_neox" else ",") + " rotary cos/sin (float32 angles)"
        + ("" if fam == "gpt_neox" else " and RMSNorms (input cast to float32)") + " run in float32; "
        f"its logits differ from a true float64 forward by {checks['strict_float64']['plain_double_vs_strict_logits_rel']} "
        "relative. The reference runs it under StrictFloat64 (every float32 cast made float64, no float32 result).",
        "RoPE is written as config.json rope_parameters {rope_theta, rope_type" + (", partial_rotary_factor" if S.rot < S.D else "")
        + "}; there is no top-level rope_theta. The inverse frequencies are computed in float32 (HF's buffer), which "
        "the float64 reference keeps.",
        "generate() (greedy) picks the same ids as the step-by-step cached loop; its fp32 logits differ from the loop's "
        f"by up to {decode['checks']['generate_vs_manual_loop_fp32_logits_max_abs']} (other kernel shapes).",
    ]
    if fam == "gpt_neox":
        n += [
            "The LM head is lm_head.weight in memory but embed_out.weight in model.safetensors: transformers 5 renames "
            "embed_out -> lm_head on load and back on save (conversion_mapping). Gradients here are keyed by the file name.",
            "rotary_emb_base / rotary_pct (Pythia's config.json keys) are read into rope_parameters (rope_theta, "
            "partial_rotary_factor) and are not written back. Absent both, the defaults are rope_theta "
            f"{checks['neox_config_keys']['defaults_when_absent']['rope_theta']} and partial_rotary_factor "
            f"{checks['neox_config_keys']['defaults_when_absent']['partial_rotary_factor']} (not 1.0).",
            "The rotary frequencies use rotary_ndims, not head_dim: inv_freq[i] = theta^(-2i/rotary_ndims).",
            "hidden_act 'gelu' is the exact erf GELU (Pythia); use_parallel_residual defaults to true.",
        ]
    if fam in ("qwen2", "olmo2"):
        n.append(f"{type_name(fam)} declares no head_dim field, but its attention reads getattr(config, 'head_dim', "
                 "hidden_size // num_attention_heads) and save_pretrained writes the value: head_dim 12 (with hidden 32, "
                 "4 heads) is honoured (q_proj [48, 32]). A reader must not assume head_dim = hidden / heads.")
    if fam == "qwen2":
        n.append("Qwen2 always has q/k/v biases (no attention_bias switch) and never an o_proj bias. With "
                 "use_sliding_window false, save_pretrained writes sliding_window null and layer_types all "
                 "full_attention.")
    if fam == "qwen3":
        n.append("Qwen3Config declares head_dim (default 128, independent of hidden_size / heads). attention_bias "
                 "switches the o_proj bias too (unlike Qwen2). q_norm / k_norm act per head before RoPE.")
    if fam == "mistral":
        n.append("Mistral has no layer_types: a non-null sliding_window applies to every layer (and the cache keeps "
                 "W - 1 = 5 positions per layer, DynamicSlidingWindowLayer). MistralConfig.head_dim defaults to "
                 "hidden_size / heads when null; 12 is honoured.")
    if fam == "gemma2":
        n += [
            "Gemma 2 weights: norm weights are offsets (the RMSNorm scales by 1 + w; HF initialises them to 0). The "
            "embedding is multiplied by sqrt(hidden_size), held as a float32 buffer that is cast to the weight dtype "
            f"({checks['gemma2_normaliser']['value_used_f64']!r} in fp32/f64, "
            f"{checks['gemma2_normaliser']['hf_buffer_bf16_model']['effective_multiplier']!r} in a bf16 model).",
            f"Init: the embedding is {GEMMA_EMBED_STD}*N(0,1) (so sqrt(32)*E has std {GEMMA_EMBED_STD * math.sqrt(S.C):.2f} "
            f"and the tied-head logits cross the final cap's linear range) and q_proj / k_proj are {GEMMA_QK_STD}*N(0,1): "
            "with 0.2 the scaled attention scores stayed below cap/2 for about 98% of entries (max |s|/cap 0.7 to 1.05), "
            "so attn_logit_softcapping 5.0 was nearly linear. All config values are as specified.",
            "The default layer_types alternate starting with sliding: layer i slides when (i + 1) % 2 == 1 (layers 0 and "
            "2 here; layer 1 is global). Gemma2 supports eager attention (its sdpa path does not soft-cap).",
            "query_pre_attn_scalar sets the query scale (20^-1/2 here), independent of head_dim.",
        ]
    if fam == "olmo2":
        n.append("OLMo2's default rms_norm_eps is 1e-5 (1e-6 here) and its default eos_token_id 50279 lies outside this "
                 "vocabulary (generation_config.json carries it). q_norm / k_norm normalise the whole projection across "
                 "heads (weights [H*D] and [KV*D]), unlike Qwen3's per-head [D].")
    return n


def type_name(fam):
    return {"qwen2": "Qwen2Config", "olmo2": "Olmo2Config"}[fam]


def cached_decode(fam, S, m32, m64, tok, P64, chk):
    prompt = tok[:1, :PROMPT]
    with StrictFloat64():
        ids64, lg64, cache = greedy_decode(m64, prompt, NEW_TOKENS)
        full = m64(input_ids=torch.cat([prompt, torch.tensor([ids64[:-1]])], 1), use_cache=False).logits[0, PROMPT - 1:]
    d_uncached = maxabs(lg64, full)
    chk(d_uncached < 1e-12, f"cached decode (f64) = uncached forward: {d_uncached:.3g}")
    with torch.no_grad():
        ids32, lg32, _ = greedy_decode(m32, prompt, NEW_TOKENS)
        gen = m32.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                           output_logits=True, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    gen_ids = gen.sequences[0, PROMPT:].tolist()
    gen_logits = torch.stack([g[0] for g in gen.logits])
    chk(ids32 == ids64, f"fp32 decode picks the same ids: {ids32} vs {ids64}")
    chk(gen_ids == ids32, f"generate() picks the same ids: {gen_ids} vs {ids32}")
    d_gen = maxabs(gen_logits, lg32)
    chk(d_gen < 1e-5, f"generate() logits = the manual cached loop's (fp32): {d_gen:.3g}")
    seq = torch.cat([prompt, torch.tensor([ids64[:-1]])], 1)
    plain, _ = forward(S, P64, seq)
    d_plain = maxabs(plain[0, PROMPT - 1:], lg64)
    chk(d_plain < 1e-12, f"plain-torch forward on the decoded sequence = cached decode: {d_plain:.3g}")
    extra = {"plain_torch_f64_on_decoded_sequence_max_abs": sig(d_plain, 2)}
    if any(w is not None for w in S.windows):
        wide, _ = forward(S, P64, seq, mistake="no sliding window")
        d_wide = (wide[0, PROMPT - 1:] - lg64).abs().amax(-1)
        first = int((d_wide > 1e-9).nonzero()[0]) if (d_wide > 1e-9).any() else None
        chk(d_wide.max().item() > 1e-3, f"decode logits depend on the sliding window: {d_wide.max().item():.3g}")
        extra["no_window_logits_max_abs"] = sig(d_wide.max().item(), 3)
        extra["no_window_first_differing_step"] = first
        extra["no_window_note"] = ("the same decode with full causal attention instead of the window: the logits "
                                   "first differ at the step whose position is W (it is the first to lose a key)")
        chk(first == S.windows[[w is not None for w in S.windows].index(True)] - PROMPT + 1,
            f"first step that loses a key is position W: step {first}")
    top2 = lg64.topk(2, dim=-1).values
    layers = []
    for l, layer in enumerate(cache.layers):
        layers.append({"layer": l, "class": type(layer).__name__, "cached_positions": int(layer.keys.shape[-2])})
    return {
        "prompt": prompt[0].tolist(),
        "generated": ids64,
        "positions": f"prompt = tokens[0, :{PROMPT}] at positions 0..{PROMPT - 1}; step i (0-based) feeds position "
                     f"{PROMPT - 1}+i and its logits (decode.logits[i]) choose generated[i]; positions 0..{PROMPT + NEW_TOKENS - 2}",
        "how": "transformers, use_cache=True with DynamicCache(config), greedy (argmax), no eos stop: the prompt in one "
               "call, then one token per call; HF float64 (StrictFloat64)",
        "cache_layers_after": layers,
        "checks": {
            "cached_vs_uncached_f64_max_abs": sig(d_uncached, 2),
            "fp32_cached_vs_f64_max_abs": sig(maxabs(lg32, lg64), 2),
            "fp32_same_ids": ids32 == ids64,
            "generate_same_ids_fp32": gen_ids == ids32,
            "generate_vs_manual_loop_fp32_logits_max_abs": sig(d_gen, 2),
            "min_top1_top2_margin": sig((top2[:, 0] - top2[:, 1]).min().item(), 3),
            **extra,
        },
        "logits_tensor": lg64.detach(),
    }


def init_doc(fam, S):
    emb = (f"{GEMMA_EMBED_STD}*N(0,1) (multiplied by sqrt({S.C}) = {math.sqrt(S.C):.3f} in the forward, so the "
           f"embedded residual has std {GEMMA_EMBED_STD * math.sqrt(S.C):.2f} and the tied-head logits reach the "
           "final soft-cap's non-linear range)") if fam == "gemma2" else f"{INIT_STD}*N(0,1)"
    norm = f"{NORM_NOISE}*N(0,1) (Gemma's RMSNorm scales by 1 + w)" if fam == "gemma2" else f"1 + {NORM_NOISE}*N(0,1)"
    qk = (f" except q_proj and k_proj, {GEMMA_QK_STD}*N(0,1) (so that the attention soft-cap acts: with "
          f"{INIT_STD} the scaled scores stay below cap/2 for 98% of entries)") if fam == "gemma2" else ""
    return (f"AutoModelForCausalLM.from_config under torch.manual_seed({SEED_MODEL}), then, in named_parameters "
            f"order from one generator seeded {SEED_INIT[fam]} (one draw per parameter, the full shape): every matrix "
            f"and bias {INIT_STD}*N(0,1){qk}, every norm weight {norm}, the embedding {emb}")


# ============================================================================ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/families)")
    ap.add_argument("--only", default=",".join(FAMILIES), help="comma-separated model types")
    args = ap.parse_args()
    out_root = os.path.abspath(args.out)
    os.makedirs(out_root, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    check = Checker()
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__}
    tok = torch.randint(0, VOCAB, (B, T + 1), generator=torch.Generator().manual_seed(SEED_TOKENS))

    summary = {}
    for fam in args.only.split(","):
        assert fam in FAMILIES, fam
        print(f"== {fam}", flush=True)
        summary[fam] = run_family(fam, out_root, tok, check, versions)

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for fam, s in summary.items():
        d = os.path.join(out_root, fam)
        total = 0
        print(f"{fam}: loss {s['loss']:.9g}, myopic loss {s['myopic_loss']:.9g}, plain vs HF f64 logits rel "
              f"{s['plain_vs_hf']:.2g}, interp vs split {s['split']}")
        for root, _, files in sorted(os.walk(d)):
            for fn in sorted(files):
                p = os.path.join(root, fn)
                total += os.path.getsize(p)
                print(f"  {os.path.relpath(p, d):28s} {os.path.getsize(p):8d} B  sha256 {file_sha256(p)[:16]}")
        print(f"  total {total} B")
    if check.failures:
        print("FAILED:", check.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
