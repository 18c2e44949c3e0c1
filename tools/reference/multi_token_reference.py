#!/usr/bin/env python3
"""Reference loss and gradients for Myopia's multi-token prediction heads (docs/DESIGN.md §3).

Builds a tiny random model of every family Myopia reads, each with N = 3 prediction heads, in plain
torch ops:

  gpt2    vocab 24, n_positions 8, n_embd 8, 2 layers, 2 heads, n_inner 32, tied head
  llama   vocab 24, 8 positions, hidden 8, 1 layer (so the extra heads read the embedding output),
          2 query heads sharing 1 key/value head of size 4, intermediate 16, untied head
          (these two with this script's own block functions)
  gpt_neox, qwen2, qwen3, mistral, gemma2, olmo2
          from a Hugging Face config of the family (FAMILIES below: vocabulary 29 to 40, hidden 16,
          2 layers, grouped-query attention and a head_dim other than hidden / heads where the family
          allows; GPT-NeoX sequential, without attention biases, rotating a quarter of each head;
          Mistral's window 3 < T on every layer; Gemma 2's window 3 on its LAST layer (layer_types
          full, sliding), so the extra blocks slide too, and soft-caps that bend the scores and every
          head's logits), run by family_reference.py's plain-torch block, embedding and head
          functions

Head 1 is the model itself (the last block, the final norm and the unembedding predict x_{t+1}).
Head j = 2, 3 is one more block with the family's block keys under `mtp.{j}.`, reading the residual
stream that enters the last block and predicting x_{t+j} through the shared final norm and
unembedding (Gemma 2: and the final soft-cap); its attention has the last trunk layer's window. Position t's target for head j is targets[t + j − 1], masked (−1) past the window; one
target is −1 to begin with, so every head masks a source target too. The loss is the mean over the
heads of each head's mean cross-entropy.

Two flows (as in flow_reference.py): vanilla (ordinary backprop) and myopic (in every block's
attention, trunk and extra, the keys and values a query reads for an earlier position come from a
DETACHED copy of the attention input, with live weights; the diagonal uses live keys and values).

Writes, under Tests/Fixtures/multi_token/ (or --out), about 0.8 MB:

  <family>/                       Hugging Face folders: config.json (with myopia_prediction_heads 3)
                                  and model.safetensors (the standard keys, then mtp.{j}.*)
  multi_token_reference.safetensors (all F32)
      <family>.<flow>.grad.<key>  d(loss)/d(param) for every parameter, flow in vanilla, myopic
  multi_token_reference.json
      per family: B, T, inputs, targets, the loss and each head's loss per flow, the check that
      `transformers` loads the folder (the mtp keys reported as unexpected) and that its logits equal
      this script's t+1 logits, fp32-vs-fp64 distances, versions. For the six Hugging Face families
      also, in float64 (family_reference.StrictFloat64): head j's logits equal those of the
      transformers model whose last layer is block mtp.{j}, and the vanilla gradient equals the
      mean over heads of those models' gradients (mapped back to the keys); the myopic gradient of
      the literal construction equals family_reference's second one ("interp", beta 0).

The saved values are computed in float64 and rounded to float32 once, at the end. CPU, one thread,
deterministic: two runs give byte-identical files. Exits 1 if a check fails.

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/multi_token_reference.py
"""

import argparse
import copy
import functools
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

import safetensors
from safetensors.torch import save_file
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

import family_reference as fr
from refutil import Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "multi_token")

HEADS = 3
B, T = 2, 6
FLOWS = ["vanilla", "myopic"]

GPT2 = dict(vocab=24, positions=8, c=8, layers=2, nh=2, f=32, eps=1e-5)
LLAMA = dict(vocab=24, positions=8, c=8, layers=1, nh=2, nkv=1, hs=4, f=16, eps=1e-6, theta=10000.0)
ALL = ["gpt2", "llama", "gpt_neox", "qwen2", "qwen3", "mistral", "gemma2", "olmo2"]

# The six Hugging Face families: AutoConfig.for_model(model_type, **COMMON, **FAMILIES[...]).
COMMON = dict(max_position_embeddings=8, attention_dropout=0.0, pad_token_id=None, bos_token_id=None,
              eos_token_id=None)
FAMILIES = {
    "gpt_neox": dict(vocab_size=29, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                     rotary_pct=0.25, rotary_emb_base=1000.0, use_parallel_residual=False, attention_bias=False,
                     hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout=0.0, tie_word_embeddings=False),
    "qwen2": dict(vocab_size=31, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=6, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  tie_word_embeddings=True),
    "qwen3": dict(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=6, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, tie_word_embeddings=False),
    "mistral": dict(vocab_size=33, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                    head_dim=6, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                    sliding_window=3, tie_word_embeddings=False),
    "gemma2": dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   head_dim=6, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, sliding_window=3,
                   layer_types=["full_attention", "sliding_attention"], query_pre_attn_scalar=10,
                   attn_logit_softcapping=3.0, final_logit_softcapping=2.0, hidden_activation="gelu_pytorch_tanh",
                   attention_bias=False, tie_word_embeddings=True),
    "olmo2": dict(vocab_size=35, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=10, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, tie_word_embeddings=False),
}
FLOW_NAMES = {"vanilla": "vanilla", "myopic": "split"}  # family_reference.attention's names


# ============================================================================ parameters

def gpt2_block_layout(p, c, f):
    return [(p + "ln_1.weight", [c]), (p + "ln_1.bias", [c]),
            (p + "attn.c_attn.weight", [c, 3 * c]), (p + "attn.c_attn.bias", [3 * c]),
            (p + "attn.c_proj.weight", [c, c]), (p + "attn.c_proj.bias", [c]),
            (p + "ln_2.weight", [c]), (p + "ln_2.bias", [c]),
            (p + "mlp.c_fc.weight", [c, f]), (p + "mlp.c_fc.bias", [f]),
            (p + "mlp.c_proj.weight", [f, c]), (p + "mlp.c_proj.bias", [c])]


def llama_block_layout(p, c, f, nh, nkv, hs):
    return [(p + "self_attn.q_proj.weight", [nh * hs, c]), (p + "self_attn.k_proj.weight", [nkv * hs, c]),
            (p + "self_attn.v_proj.weight", [nkv * hs, c]), (p + "self_attn.o_proj.weight", [c, nh * hs]),
            (p + "mlp.gate_proj.weight", [f, c]), (p + "mlp.up_proj.weight", [f, c]),
            (p + "mlp.down_proj.weight", [c, f]),
            (p + "input_layernorm.weight", [c]), (p + "post_attention_layernorm.weight", [c])]


@functools.lru_cache(maxsize=None)
def hf_family(family):
    """A Hugging Face family's config (transformers object), its dict (config.json without Myopia's key)
    and family_reference's Spec of it."""
    cfg = AutoConfig.for_model(family, **COMMON, **FAMILIES[family])
    d = cfg.to_dict()
    return cfg, d, fr.Spec(family, d)


@functools.lru_cache(maxsize=None)
def hf_layout(family):
    """transformers' parameters (file keys, named_parameters order; a tied head once), then the blocks
    mtp.{j}.* with the last layer's keys and shapes."""
    cfg, _, S = hf_family(family)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    keys = [(fr.file_name(family, n), list(p.shape)) for n, p in model.named_parameters()]
    last = S.layer.format(S.L - 1)
    block = [(k[len(last):], shape) for k, shape in keys if k.startswith(last)]
    for j in range(2, HEADS + 1):
        keys += [(f"mtp.{j}.{k}", shape) for k, shape in block]
    return tuple((k, tuple(shape)) for k, shape in keys)


def layout(family):
    """Myopia's parameter layout (Transformer.layout): the standard keys, then mtp.{j}.* blocks."""
    if family in FAMILIES:
        return [(k, list(shape)) for k, shape in hf_layout(family)]
    if family == "gpt2":
        m = GPT2
        keys = [("wte.weight", [m["vocab"], m["c"]]), ("wpe.weight", [m["positions"], m["c"]])]
        for l in range(m["layers"]):
            keys += gpt2_block_layout(f"h.{l}.", m["c"], m["f"])
        keys += [("ln_f.weight", [m["c"]]), ("ln_f.bias", [m["c"]])]
        for j in range(2, HEADS + 1):
            keys += gpt2_block_layout(f"mtp.{j}.", m["c"], m["f"])
    else:
        m = LLAMA
        keys = [("model.embed_tokens.weight", [m["vocab"], m["c"]])]
        for l in range(m["layers"]):
            keys += llama_block_layout(f"model.layers.{l}.", m["c"], m["f"], m["nh"], m["nkv"], m["hs"])
        keys += [("model.norm.weight", [m["c"]]), ("lm_head.weight", [m["vocab"], m["c"]])]
        for j in range(2, HEADS + 1):
            keys += llama_block_layout(f"mtp.{j}.", m["c"], m["f"], m["nh"], m["nkv"], m["hs"])
    return keys


def random_parameters(family, seed):
    """Random float32 parameters, large enough that every gradient is well away from zero: norm
    weights 1 + N(0, 0.1²) (Gemma 2, whose norms scale by 1 + w: N(0, 0.1²)), biases N(0, 0.1²),
    matrices and embeddings N(0, 0.5²)."""
    g = torch.Generator().manual_seed(seed)
    P = {}
    for name, shape in layout(family):
        if name.endswith("norm.weight") or ".ln_" in name or name.startswith("ln_f."):
            if name.endswith(".bias"):
                t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
            else:
                t = (0.0 if family == "gemma2" else 1.0) + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.5 * torch.randn(shape, generator=g, dtype=torch.float64)
        P[name] = t.float()
    return P


# ============================================================================ model

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def heads(t, n):
    Bn, Tn, D = t.shape
    return t.view(Bn, Tn, n, D // n).transpose(1, 2)  # [B,n,T,HS]


def rope_half(x, cos, sin):
    """HF: rotate the pairs (x[i], x[i + HS/2]). x [B,H,T,HS]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def attend(q, k, v, k_det, v_det, flow):
    """q [B,H,T,HS]; k, v (live) and k_det, v_det (from the detached input) [B,H,T,HS]."""
    Tn, hs = q.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(hs)
    causal = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    eye = torch.eye(Tn, dtype=torch.bool)
    if flow == "vanilla":
        S = (q @ k.transpose(-1, -2)) * scale
        return S.masked_fill(~causal, float("-inf")).softmax(-1) @ v
    assert flow == "myopic"
    S_off = q @ k_det.transpose(-1, -2)
    d = (q * k).sum(-1)  # q_t · k_live_t
    S = torch.where(eye, torch.diag_embed(d), S_off) * scale
    A = S.masked_fill(~causal, float("-inf")).softmax(-1)
    a_diag = torch.diagonal(A, dim1=-2, dim2=-1)
    return A.masked_fill(eye, 0.0) @ v_det + a_diag.unsqueeze(-1) * v


def gpt2_block(P, p, x, flow):
    m = GPT2
    Bn, Tn, C = x.shape
    h = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"], m["eps"])

    def qkv(inp):
        return (heads(t, m["nh"]) for t in (inp @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]).split(C, -1))

    q, k, v = qkv(h)
    _, k_d, v_d = qkv(h.detach())
    o = attend(q, k, v, k_d, v_d, flow).transpose(1, 2).reshape(Bn, Tn, C)
    x = x + (o @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"])
    h = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"], m["eps"])
    a = gelu_new(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
    return x + (a @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"])


def llama_block(P, p, x, flow):
    m = LLAMA
    Bn, Tn, C = x.shape
    inv_freq = 1.0 / (m["theta"] ** (torch.arange(0, m["hs"], 2, dtype=x.dtype) / m["hs"]))
    ang = torch.arange(Tn, dtype=x.dtype)[:, None] * inv_freq[None, :]
    cos, sin = ang.cos(), ang.sin()  # [T, HS/2]
    groups = m["nh"] // m["nkv"]
    h = rms_norm(x, P[p + "input_layernorm.weight"], m["eps"])

    def kv(inp):
        k = rope_half(heads(inp @ P[p + "self_attn.k_proj.weight"].T, m["nkv"]), cos, sin)
        v = heads(inp @ P[p + "self_attn.v_proj.weight"].T, m["nkv"])
        return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)

    q = rope_half(heads(h @ P[p + "self_attn.q_proj.weight"].T, m["nh"]), cos, sin)
    k, v = kv(h)
    k_d, v_d = kv(h.detach())
    o = attend(q, k, v, k_d, v_d, flow).transpose(1, 2).reshape(Bn, Tn, m["nh"] * m["hs"])
    x = x + o @ P[p + "self_attn.o_proj.weight"].T
    h = rms_norm(x, P[p + "post_attention_layernorm.weight"], m["eps"])
    a = F.silu(h @ P[p + "mlp.gate_proj.weight"].T) * (h @ P[p + "mlp.up_proj.weight"].T)
    return x + a @ P[p + "mlp.down_proj.weight"].T


def shifted_targets(targets, j):
    """Head j's targets: position t reads targets[t + j − 1], −1 past the window."""
    out = torch.full_like(targets, -1)
    out[:, : targets.shape[1] - (j - 1)] = targets[:, j - 1:]
    return out


def family_forward(family, P, inputs, targets, flow, beta=None, stats=None, spec=None):
    """A Hugging Face family's model with its heads, from family_reference's block, embedding and head:
    `flow` is family_reference.attention's ("vanilla", "split" = myopic, "interp" with beta). Head j's
    block reads the residual stream entering the last layer and attends within the last layer's window.
    Returns (loss, [each head's mean loss], [each head's logits]). `spec` replaces the family's Spec."""
    S = spec or hf_family(family)[2]
    x = fr.embed(S, P, inputs)
    ctx = fr.block_context(S, inputs.shape[1], x.dtype)
    for l in range(S.L):
        last_input = x
        x = fr.block(S, P, S.layer.format(l), x, S.windows[l], ctx, flow, beta, stats)

    def head(u):
        lg = fr.head(S, P, u, ctx, stats)
        if stats is not None:
            stats.setdefault("heads_precap", []).append(stats.pop("logits_precap"))
        return lg

    logits = [head(x)]
    for j in range(2, HEADS + 1):
        logits.append(head(fr.block(S, P, f"mtp.{j}.", last_input, S.windows[-1], ctx, flow, beta, stats)))
    V = logits[0].shape[-1]
    losses = [F.cross_entropy(lj.reshape(-1, V), shifted_targets(targets, j).reshape(-1), ignore_index=-1)
              for j, lj in enumerate(logits, start=1)]
    return torch.stack(losses).mean(), losses, logits


def forward(family, P, inputs, targets, flow):
    """Returns (loss, [each head's mean loss], t+1 logits)."""
    if family in FAMILIES:
        loss, losses, logits = family_forward(family, P, inputs, targets, FLOW_NAMES[flow])
        return loss, losses, logits[0]
    Tn = inputs.shape[1]
    if family == "gpt2":
        m, block, prefix = GPT2, gpt2_block, "h."
        x = P["wte.weight"][inputs] + P["wpe.weight"][torch.arange(Tn)][None]
        norm = lambda u: layer_norm(u, P["ln_f.weight"], P["ln_f.bias"], m["eps"])
        head = P["wte.weight"]
    else:
        m, block, prefix = LLAMA, llama_block, "model.layers."
        x = P["model.embed_tokens.weight"][inputs]
        norm = lambda u: rms_norm(u, P["model.norm.weight"], m["eps"])
        head = P["lm_head.weight"]
    for l in range(m["layers"]):
        last_input = x
        x = block(P, f"{prefix}{l}.", x, flow)
    V = head.shape[0]
    logits = norm(x) @ head.T
    losses = [F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)]
    for j in range(2, HEADS + 1):
        u = block(P, f"mtp.{j}.", last_input, flow)
        lj = norm(u) @ head.T
        losses.append(F.cross_entropy(lj.reshape(-1, V), shifted_targets(targets, j).reshape(-1), ignore_index=-1))
    return torch.stack(losses).mean(), losses, logits


def run(family, init, inputs, targets, flow, dtype):
    P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in init.items()}
    loss, losses, logits = forward(family, P, inputs, targets, flow)
    keys = [k for k, _ in layout(family)]
    grads = torch.autograd.grad(loss, [P[k] for k in keys])
    return {"loss": loss.detach(), "losses": [l.item() for l in losses], "logits": logits.detach(),
            "grads": dict(zip(keys, (g.detach() for g in grads)))}


# ============================================================================ Hugging Face

def hf_config(family):
    if family in FAMILIES:
        return hf_family(family)[0]
    if family == "gpt2":
        m = GPT2
        return GPT2Config(vocab_size=m["vocab"], n_positions=m["positions"], n_embd=m["c"], n_layer=m["layers"],
                          n_head=m["nh"], n_inner=m["f"], activation_function="gelu_new",
                          layer_norm_epsilon=m["eps"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                          tie_word_embeddings=True)
    m = LLAMA
    return LlamaConfig(vocab_size=m["vocab"], hidden_size=m["c"], intermediate_size=m["f"],
                       num_hidden_layers=m["layers"], num_attention_heads=m["nh"], num_key_value_heads=m["nkv"],
                       head_dim=m["hs"], max_position_embeddings=m["positions"], rms_norm_eps=m["eps"],
                       rope_theta=m["theta"], tie_word_embeddings=False, attention_bias=False, mlp_bias=False)


def save_folder(family, init, folder):
    """config.json (+ myopia_prediction_heads) and model.safetensors with every key."""
    os.makedirs(folder, exist_ok=True)
    config = hf_config(family).to_dict()
    config["myopia_prediction_heads"] = HEADS
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)
        f.write("\n")
    tensors = {k: init[k].contiguous() for k, _ in layout(family)}
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def transformers_check(family, folder, inputs, logits32, check):
    """Loads the folder with transformers: the standard keys are the t+1 model, the mtp keys are
    reported as unexpected, and the logits equal this script's t+1 logits."""
    cls = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}.get(family, AutoModelForCausalLM)
    model, info = cls.from_pretrained(folder, attn_implementation="eager", output_loading_info=True)
    model = model.float().eval()
    with torch.no_grad():
        hf_logits = model(inputs, use_cache=False).logits
    unexpected = sorted(info.get("unexpected_keys", []))
    missing = sorted(info.get("missing_keys", []))
    diff = maxabs(hf_logits, logits32)
    extra = sorted(k for k, _ in layout(family) if k.startswith("mtp."))
    check(not missing, f"{family}: transformers reports missing keys {missing}")
    # (GPT-2 leaves out of its report the keys its ignore patterns match, e.g. mtp.{j}.attn.c_attn.bias.)
    check(unexpected and set(unexpected) <= set(extra), f"{family}: unexpected keys {unexpected} are not mtp keys")
    check(diff < 1e-5, f"{family}: transformers logits vs t+1 logits {diff:.3g}")
    return {"class": type(model).__name__, "loads": True, "missing_keys": missing,
            "unexpected_keys_are_mtp_keys": set(unexpected) <= set(extra), "unexpected_keys": len(unexpected),
            "logits_max_abs_vs_t1": sig(diff, 2)}


# ============================================================================ Hugging Face families in float64

def hf_heads_check(family, init, inputs, targets, r64, check):
    """Head j is the transformers model whose last layer is block mtp.{j} (head 1: the model itself): its
    logits, from transformers' float64 model (StrictFloat64), equal head j's here, and the vanilla gradient
    equals the mean over heads of those models' gradients (each head's loss backward, the last layer's
    gradient credited to mtp.{j}). Returns the measured distances."""
    cfg, _, S = hf_family(family)
    last = S.layer.format(S.L - 1)
    P = {k: v.double() for k, v in init.items()}
    _, _, plain = family_forward(family, P, inputs, targets, "vanilla")
    total = {k: torch.zeros_like(v) for k, v in P.items()}
    mode = fr.StrictFloat64()
    worst_logits = 0.0
    for j in range(1, HEADS + 1):
        def source(n):
            k = fr.file_name(family, n)
            return f"mtp.{j}.{k[len(last):]}" if j > 1 and k.startswith(last) else k

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").double().eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(P[source(n)])
        with mode:
            logits = model(input_ids=inputs, use_cache=False).logits
            V = logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, V), shifted_targets(targets, j).reshape(-1), ignore_index=-1)
            (loss / HEADS).backward()
        for n, p in model.named_parameters():
            total[source(n)] += p.grad
        worst_logits = max(worst_logits, rel(plain[j - 1], logits.detach()))
    check(mode.f32_outputs == 0, f"{family}: strict float64: {mode.f32_outputs} float32 results")
    grel = max(rel(r64["grads"][k], total[k]) for k in total)
    check(worst_logits < 1e-10, f"{family}: head logits vs transformers with mtp.j as the last layer: {worst_logits:.3g}")
    check(grel < 1e-10, f"{family}: vanilla gradient vs transformers' heads: {grel:.3g}")
    return {"head_logits_vs_transformers_f64_max_rel": sig(worst_logits, 3),
            "vanilla_grads_vs_transformers_f64_max_rel": sig(grel, 3),
            "how": "head j = transformers' float64 model (StrictFloat64) with layer L-1 holding mtp.{j}'s weights; "
                   "gradient = mean over j of its loss gradient, layer L-1's credited to mtp.{j}"}


def family_checks(family, init, inputs, targets, results, check):
    """The myopic gradient against family_reference's second construction (interp, beta 0); the window
    of the extra blocks (dropping every window changes each head's logits; for Gemma 2 only the last layer
    slides, so the extra heads' change comes from their own blocks); Gemma 2's soft-caps bend the scores
    of every block and every head's logits."""
    cfg, _, S = hf_family(family)
    out = {}
    keys = [k for k, _ in layout(family)]
    P = {k: v.double().clone().requires_grad_(True) for k, v in init.items()}
    loss, _, _ = family_forward(family, P, inputs, targets, "interp", beta=0.0)
    gs = torch.autograd.grad(loss, [P[k] for k in keys])
    split = results["myopic"]["grads"]
    w = max(rel(g, split[k]) for k, g in zip(keys, gs))
    check(w < 1e-10, f"{family}: myopic split vs interp (beta 0): {w:.3g}")
    out["myopic_split_vs_interp_max_rel"] = sig(w, 3)
    out["windows"] = S.windows
    out["extra_block_window"] = S.windows[-1]
    P64 = {k: v.double() for k, v in init.items()}
    if S.windows[-1] is not None:
        wide = copy.copy(S)
        wide.windows = [None] * S.L
        _, _, with_window = family_forward(family, P64, inputs, targets, "vanilla")
        _, _, without = family_forward(family, P64, inputs, targets, "vanilla", spec=wide)
        d = [maxabs(a, b) for a, b in zip(with_window, without)]
        check(min(d) > 1e-3, f"{family}: every head's logits depend on the window: {d}")
        out["no_window_head_logits_max_abs"] = [sig(x, 3) for x in d]
    if family == "gemma2":
        stats = {}
        family_forward(family, P64, inputs, targets, "vanilla", stats=stats)
        frac = [sig(((Sc.masked_select(mask.expand_as(Sc)).abs() / S.attn_cap) > 0.5).double().mean().item(), 3)
                for Sc, mask in stats["scores"]]
        heads_frac = [sig(((z.abs() / S.final_cap) > 0.5).double().mean().item(), 3) for z in stats["heads_precap"]]
        check(min(frac) > 0.2, f"{family}: attention soft-cap non-linear in every block: {frac}")
        check(min(heads_frac) > 0.2, f"{family}: final soft-cap non-linear on every head: {heads_frac}")
        out["softcap_regime"] = {"attention_frac_over_half_per_block": frac, "final_frac_over_half_per_head": heads_frac,
                                 "note": "share of |x| / cap above 0.5 over the visible scaled scores of each block "
                                         "(trunk layers, then mtp.2, mtp.3) and over each head's pre-cap logits"}
    return out


# ============================================================================ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/multi_token)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    check = Checker()

    tensors, doc = {}, {"heads": HEADS, "flows": FLOWS, "families": {}}
    for seed, family in enumerate(ALL):
        if family in FAMILIES:
            m = {"vocab": hf_family(family)[1]["vocab_size"]}
            config_doc = {"config.json": f"{family}/config.json", "options": FAMILIES[family]}
        else:
            m = GPT2 if family == "gpt2" else LLAMA
            config_doc = {k: v for k, v in m.items()}
        init = random_parameters(family, seed=1000 + seed)
        g = torch.Generator().manual_seed(2000 + seed)
        tokens = torch.randint(0, m["vocab"], (B, T + 1), generator=g)
        inputs, targets = tokens[:, :-1].clone(), tokens[:, 1:].clone()
        targets[1, 2] = -1  # a masked source target: every head skips the position that reads it

        fam = {"config": config_doc, "batch": B, "seq_len": T,
               "inputs": inputs.tolist(), "targets": targets.tolist(), "flows": {}}
        results = {}
        for flow in FLOWS:
            r64 = run(family, init, inputs, targets, flow, torch.float64)
            r32 = run(family, init, inputs, targets, flow, torch.float32)
            results[flow] = r64
            gdiff = max(maxabs(r32["grads"][k], r64["grads"][k]) for k in r64["grads"])
            ldiff = abs(r32["loss"].item() - r64["loss"].item())
            check(gdiff < 1e-5 and ldiff < 1e-5, f"{family} {flow}: fp32 vs fp64 {gdiff:.3g} {ldiff:.3g}")
            for k, v in r64["grads"].items():
                tensors[f"{family}.{flow}.grad.{k}"] = v.float()
            fam["flows"][flow] = {"loss": r64["loss"].item(), "head_losses": r64["losses"],
                                  "fp32_vs_fp64": {"grads_max_abs": sig(gdiff, 2), "loss_abs": sig(ldiff, 2)},
                                  "grads_max_abs": sig(max(v.abs().max().item() for v in r64["grads"].values()), 4)}
        # The forward does not depend on the flow; the gradients do (below the last block and in
        # every extra block's attention input).
        v, my = results["vanilla"], results["myopic"]
        check(abs(v["loss"].item() - my["loss"].item()) < 1e-12, f"{family}: myopic loss = vanilla loss")
        differs = max(maxabs(v["grads"][k], my["grads"][k]) for k in v["grads"])
        check(differs > 1e-4, f"{family}: myopic gradients differ from vanilla ({differs:.3g})")
        # Every parameter gets a gradient (the extra blocks included).
        zero = [k for k, t in v["grads"].items() if t.abs().max().item() == 0.0]
        check(not zero, f"{family}: parameters without gradient {zero}")

        folder = os.path.join(out, family)
        save_folder(family, init, folder)
        logits32 = run(family, init, inputs, targets, "vanilla", torch.float32)["logits"]
        fam["transformers"] = transformers_check(family, folder, inputs, logits32, check)
        if family in FAMILIES:
            fam["transformers"]["heads_f64"] = hf_heads_check(family, init, inputs, targets, results["vanilla"], check)
            fam["checks"] = family_checks(family, init, inputs, targets, results, check)
        doc["families"][family] = fam
        print(f"{family}: loss vanilla {results['vanilla']['loss'].item():.6g}, heads {[round(x, 5) for x in results['vanilla']['losses']]}"
              + (f"; {fam['transformers']['heads_f64']}; {fam['checks']}" if family in FAMILIES else ""), flush=True)

    doc["definitions"] = {
        "loss": "mean over heads j = 1..N of the mean cross-entropy of head j over positions with a target",
        "head_targets": "head j at position t predicts targets[t + j - 1]; -1 (no loss) where t + j - 1 >= T or that target is -1",
        "myopic": "keys and values read by later queries come from a detached copy of the attention input (live weights); the diagonal is live",
        "grad": "<family>.<flow>.grad.<key>: d(loss)/d(param), float64 rounded to float32",
    }
    doc["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                       "safetensors": safetensors.__version__, "python": sys.version.split()[0]}
    save_file(dict(sorted((k, t.contiguous()) for k, t in tensors.items())),
              os.path.join(out, "multi_token_reference.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "multi_token_reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for root, _, files in sorted(os.walk(out)):
        for name in sorted(files):
            p = os.path.join(root, name)
            print(f"  {os.path.relpath(p, REPO_ROOT):60s} {os.path.getsize(p):7d} B  sha256 {file_sha256(p)[:16]}")
    if check.failures:
        print(f"{len(check.failures)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
