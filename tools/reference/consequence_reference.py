#!/usr/bin/env python3
"""Reference gradient of Myopia's consequence game (docs/games.md, "The consequence game") with the
exact estimator, on small random models of every family Myopia reads (gpt2, llama, gpt_neox, qwen2,
qwen3, mistral, gemma2, olmo2), in float64.

A training window is inputs x_0..x_{T-1} and targets x_1..x_T; logits row t is p(.|x_<=t). At each
of M fixed positions t per window (t + K <= T - 1), every token v of the vocabulary is put in place of
x_{t+1} and the ground-truth continuation is scored with v in the context:

    R(v) = -(mean cross-entropy of x_{t+2} .. x_{t+1+K}),    b = R(x_{t+1})

R and b are constants (computed under torch.no_grad, by full forward passes of the window with the
token substituted). The objective is

    L = mean CE over the B*T predictions  -  lambda / (B*M) * sum_{pairs} sum_v p(v) (R(v) - b) log p(v)

with p(v) detached in front of log p(v), so that its gradient is the ordinary one minus
lambda/(B*M) * sum_pairs sum_v p(v) (R(v) - b) grad log p(v): the exact expectation of the sampled
REINFORCE estimator (R(x^) - b) grad log p(x^), x^ ~ p.

The weights are seeded N(0, 0.3^2) matrices and embeddings, norm weights 1 + 0.1 N(0, 1) (Gemma 2,
whose RMSNorm scales by 1 + w: 0.1 N(0, 1)), biases 0.1 N(0, 1), rounded to float32 and stored, so
that Myopia loads exactly the same values; tokens and positions are seeded too. Deterministic: two
runs write identical files.

The models. gpt2 and llama (vocabulary 32) are written by this script's own configs and run by
local_myopic_reference.py's forwards. The other six are built from a Hugging Face config of the
family (FAMILIES below: vocabulary 29 to 40, width 16 or 20, 2 layers, grouped-query attention and a
head_dim other than width / heads where the family allows, GPT-NeoX rotating half of each head,
Mistral's and Gemma 2's sliding window 3 < T, Gemma 2's soft-caps set where they bend the scores and
logits) and run by family_reference.py's plain-torch forward, which is checked here against
transformers' float64 model (StrictFloat64): the logits, the whole objective's gradient with
transformers' logits in it, and R(v) from transformers' forwards of the substituted windows.

Writes Tests/Fixtures/consequence/<family>.safetensors:
    weight.<key>        F32  the model (GPT-2 keys without `transformer.`; the others as Hugging Face
                             writes them in model.safetensors, e.g. GPT-NeoX's head embed_out.weight)
    grad.<key>          F32  dL/d param of the whole objective above (float64, rounded)
    policy_grad.<key>   F32  the policy term's part alone: -lambda/(B*M) sum p (R - b) grad log p
    rewards             F32  (B, M, V) R(v) at each fixed position
    baselines           F32  (B, M) b
and <family>.json: the model's config (gpt2, llama: "config", Myopia's fields; the other six:
"hf_config", the family's config.json as transformers writes it, which Myopia's ModelConfig decodes),
tokens (B x T+1), positions (B x M), lambda, K, M, the losses, the checks below with their measured
values, versions.

Checks (float64): the policy gradient equals the sum over v of p(v)(R(v) - b) grad log p(v) formed
token by token with autograd (a second construction); the baseline cancels in the exact
expectation (b = 0 gives the same gradient); R(x_{t+1}) from the substituted forward equals b from
the window's own forward. The six Hugging Face families also: the plain-torch forward against
transformers (above); a sliding window, where there is one, changes the logits; Gemma 2's attention
and final soft-caps are non-linear on more than a fifth of the visible scores and of the logits.

Usage (from the repo root):  /opt/refenv/bin/python tools/reference/consequence_reference.py [--only gemma2,...]
"""

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

import safetensors
from safetensors.torch import save_file
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

import family_reference as fr
from local_myopic_reference import gpt2_forward, llama_forward
from refutil import ce_rows, Checker, file_sha256, maxabs, rel, sig

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "consequence")
B, T, K, M, V = 2, 8, 2, 2, 32
LAMBDA = 0.7
SEED = {"gpt2": 21, "llama": 22, "gpt_neox": 23, "qwen2": 24, "qwen3": 25, "mistral": 26, "gemma2": 27, "olmo2": 28}
NAMES = list(SEED)

# The six Hugging Face families: each config as AutoConfig.for_model(model_type, **COMMON, **FAMILIES[...]).
COMMON = dict(max_position_embeddings=16, attention_dropout=0.0, pad_token_id=None, bos_token_id=None,
              eos_token_id=None)
FAMILIES = {
    "gpt_neox": dict(vocab_size=29, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     rotary_pct=0.5, rotary_emb_base=1000.0, use_parallel_residual=True, attention_bias=True,
                     hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout=0.0, tie_word_embeddings=False),
    "qwen2": dict(vocab_size=31, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=6, intermediate_size=24, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  tie_word_embeddings=True),
    "qwen3": dict(vocab_size=37, hidden_size=20, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=6, intermediate_size=16, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, tie_word_embeddings=False),
    "mistral": dict(vocab_size=33, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                    head_dim=6, intermediate_size=24, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                    sliding_window=3, tie_word_embeddings=False),
    "gemma2": dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=6, intermediate_size=24, rope_theta=1000.0, rms_norm_eps=1e-6, sliding_window=3,
                   query_pre_attn_scalar=10, attn_logit_softcapping=2.0, final_logit_softcapping=1.5,
                   hidden_activation="gelu_pytorch_tanh", attention_bias=False, tie_word_embeddings=True),
    "olmo2": dict(vocab_size=35, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=10, intermediate_size=24, rope_theta=1000.0, rms_norm_eps=1e-6, hidden_act="silu",
                  attention_bias=False, tie_word_embeddings=False),
}


# ============================================================================ models

def configs(name):
    """The model's config: Myopia's fields (written to the JSON) and the forward's own keys."""
    if name == "gpt2":
        myopia = {"family": "gpt2", "vocab_size": V, "max_positions": T, "d_model": 16, "layers": 2, "heads": 2,
                  "d_mlp": 32, "layer_norm_eps": 1e-5}
        forward_cfg = {"n_layer": 2, "n_head": 2, "layer_norm_epsilon": 1e-5}
    else:
        myopia = {"family": "llama", "vocab_size": V, "max_positions": T, "d_model": 16, "layers": 2, "heads": 4,
                  "kv_heads": 2, "head_dim": 4, "d_mlp": 24, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                  "tied_embeddings": False}
        forward_cfg = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 4,
                       "rms_norm_eps": 1e-6, "rope_parameters": {"rope_theta": 10000.0}, "tie_word_embeddings": False}
    return myopia, forward_cfg


def layout(cfg):
    """(key, shape) of every parameter, in Myopia's order."""
    c, f, v, nl = cfg["d_model"], cfg["d_mlp"], cfg["vocab_size"], cfg["layers"]
    if cfg["family"] == "gpt2":
        keys = [("wte.weight", [v, c]), ("wpe.weight", [cfg["max_positions"], c])]
        for l in range(nl):
            p = f"h.{l}."
            keys += [(p + "ln_1.weight", [c]), (p + "ln_1.bias", [c]),
                     (p + "attn.c_attn.weight", [c, 3 * c]), (p + "attn.c_attn.bias", [3 * c]),
                     (p + "attn.c_proj.weight", [c, c]), (p + "attn.c_proj.bias", [c]),
                     (p + "ln_2.weight", [c]), (p + "ln_2.bias", [c]),
                     (p + "mlp.c_fc.weight", [c, f]), (p + "mlp.c_fc.bias", [f]),
                     (p + "mlp.c_proj.weight", [f, c]), (p + "mlp.c_proj.bias", [c])]
        return keys + [("ln_f.weight", [c]), ("ln_f.bias", [c])]
    a, kv = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]
    keys = [("model.embed_tokens.weight", [v, c])]
    for l in range(nl):
        p = f"model.layers.{l}."
        keys += [(p + "self_attn.q_proj.weight", [a, c]), (p + "self_attn.k_proj.weight", [kv, c]),
                 (p + "self_attn.v_proj.weight", [kv, c]), (p + "self_attn.o_proj.weight", [c, a]),
                 (p + "mlp.gate_proj.weight", [f, c]), (p + "mlp.up_proj.weight", [f, c]),
                 (p + "mlp.down_proj.weight", [c, f]),
                 (p + "input_layernorm.weight", [c]), (p + "post_attention_layernorm.weight", [c])]
    return keys + [("model.norm.weight", [c]), ("lm_head.weight", [v, c])]


def random_weights(keys, gen, norm_offset=1.0):
    """Seeded weights, rounded to float32 (what the fixture stores), returned in float64. Norm weights
    are norm_offset + 0.1 N(0, 1) (Gemma 2 stores w for a scale of 1 + w: offset 0)."""
    W = {}
    for k, shape in keys:
        if k.endswith(".bias"):
            w = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif "ln_" in k or "norm" in k:
            w = norm_offset + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            w = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        W[k] = w.float().double()
    return W


def hf_config(name):
    """The family's transformers config and its config.json contents (what save_pretrained writes)."""
    cfg = AutoConfig.for_model(name, **COMMON, **FAMILIES[name])
    return cfg, json.loads(cfg.to_json_string(use_diff=True))


def hf_model(name, cfg, W):
    """transformers' float64 model (eager attention) holding the weights W (file key -> tensor)."""
    torch.manual_seed(0)  # from_config initialises; every value is overwritten below
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").double().eval()
    with torch.no_grad():
        for n, p in model.named_parameters():  # a tied head appears once, as the embedding
            p.copy_(W[fr.file_name(name, n)])
    return model


def hf_layout(name, cfg):
    """(file key, shape) of every parameter, in transformers' named_parameters order."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    return [(fr.file_name(name, n), list(p.shape)) for n, p in model.named_parameters()]


# ============================================================================ the objective

def rewards_and_baselines(forward, P, inputs, targets, positions, cfg, V):
    """R (B, M, V) by full forward passes with each token substituted, and b (B, M) from the
    window's own forward: constants."""
    with torch.no_grad():
        P = {k: w.detach() for k, w in P.items()}
        ce = ce_rows(forward(P, inputs, cfg)[0], targets)
        R = torch.zeros(B, M, V, dtype=torch.float64)
        base = torch.zeros(B, M, dtype=torch.float64)
        own = torch.zeros(B, M, dtype=torch.float64)
        for b in range(B):
            for i, t in enumerate(positions[b]):
                window = inputs[b].repeat(V, 1)
                window[:, t + 1] = torch.arange(V)
                ce_v = ce_rows(forward(P, window, cfg)[0], targets[b].repeat(V, 1))
                R[b, i] = -ce_v[:, t + 1:t + 1 + K].mean(-1)
                base[b, i] = -ce[b, t + 1:t + 1 + K].mean()
                own[b, i] = R[b, i, inputs[b, t + 1]]
    return R, base, own


def objective(forward, P, inputs, targets, positions, R, base, cfg):
    """The mean CE and the exact policy term (its value is the surrogate whose gradient is the term's)."""
    return objective_of_logits(forward(P, inputs, cfg)[0], targets, positions, R, base)


def objective_of_logits(logits, targets, positions, R, base):
    """`objective` from the window's logits (B, T, V)."""
    ce = ce_rows(logits, targets).mean()
    term = 0.0
    for b in range(B):
        for i, t in enumerate(positions[b]):
            logp = F.log_softmax(logits[b, t], -1)
            term = term + (logp.exp().detach() * (R[b, i] - base[b, i]) * logp).sum()
    return ce, -LAMBDA / (B * M) * term


def policy_gradient_token_by_token(forward, P, inputs, positions, R, base, cfg, keys, V):
    """-lambda/(B*M) sum_pairs sum_v p(v) (R(v) - b) grad log p(v), one autograd call per v."""
    logits = forward(P, inputs, cfg)[0]
    total = {k: torch.zeros_like(P[k]) for k in keys}
    for b in range(B):
        for i, t in enumerate(positions[b]):
            logp = F.log_softmax(logits[b, t], -1)
            for v in range(V):
                gs = torch.autograd.grad(logp[v], [P[k] for k in keys], retain_graph=True, allow_unused=True)
                weight = -LAMBDA / (B * M) * logp[v].exp().item() * (R[b, i, v] - base[b, i]).item()
                for k, g in zip(keys, gs):
                    if g is not None:
                        total[k] += weight * g
    return total


def grads(loss, P, keys):
    gs = torch.autograd.grad(loss, [P[k] for k in keys], retain_graph=True, allow_unused=True)
    return {k: torch.zeros_like(P[k]) if g is None else g.detach() for k, g in zip(keys, gs)}


def hf_checks(name, hf_cfg, S, W, keys, inputs, targets, positions, R, base, g_total, check):
    """The plain-torch forward against transformers' float64 model (StrictFloat64): the window's logits, the
    whole objective's gradient with transformers' logits in it (same R and b), and R(v) from transformers'
    forwards of the substituted windows. Then the family's options: the sliding window changes the logits;
    Gemma 2's soft-caps bend the scores and logits."""
    chk = lambda cond, what: check(cond, f"{name}: {what}")
    P = {k: w.clone() for k, w in W.items()}
    plain = fr.forward(S, P, inputs)[0]
    model = hf_model(name, hf_cfg, W)
    mode = fr.StrictFloat64()
    with mode:
        logits = model(input_ids=inputs, use_cache=False).logits
        ce, policy = objective_of_logits(logits, targets, positions, R, base)
        (ce + policy).backward()
        R_hf = torch.zeros_like(R)
        with torch.no_grad():
            for b in range(B):
                for i, t in enumerate(positions[b]):
                    window = inputs[b].repeat(R.shape[-1], 1)
                    window[:, t + 1] = torch.arange(R.shape[-1])
                    ce_v = ce_rows(model(input_ids=window, use_cache=False).logits, targets[b].repeat(R.shape[-1], 1))
                    R_hf[b, i] = -ce_v[:, t + 1:t + 1 + K].mean(-1)
    chk(mode.f32_outputs == 0, f"strict float64: {mode.f32_outputs} float32 results")
    hf_grads = {fr.file_name(name, n): p.grad for n, p in model.named_parameters()}
    lrel = rel(plain, logits.detach())
    grel = max(rel(g_total[k], hf_grads[k]) for k in keys)
    rdiff = maxabs(R_hf, R)
    chk(lrel < 1e-10, f"plain torch logits vs transformers: {lrel:.3g}")
    chk(grel < 1e-10, f"objective gradient, plain torch vs transformers' logits: {grel:.3g}")
    chk(rdiff < 1e-10, f"R(v), plain torch vs transformers: {rdiff:.3g}")
    out = {"plain_torch_vs_transformers_f64_logits_rel": sig(lrel, 3),
           "plain_torch_vs_transformers_f64_objective_grad_max_rel": sig(grel, 3),
           "plain_torch_vs_transformers_f64_rewards_max_abs": sig(rdiff, 3)}
    if any(w is not None for w in S.windows):
        wide = fr.forward(S, P, inputs, mistake="no sliding window")[0]
        d = maxabs(wide, plain)
        chk(d > 1e-3, f"the sliding window changes the logits: {d:.3g}")
        out["windows"] = S.windows
        out["no_sliding_window_logits_max_abs"] = sig(d, 3)
    if name == "gemma2":
        stats = {}
        fr.forward(S, P, inputs, stats=stats)
        frac = []
        for Sc, mask in stats["scores"]:
            vals = Sc.masked_select(mask.expand_as(Sc)).abs() / S.attn_cap
            frac.append(sig((vals > 0.5).double().mean().item(), 3))
        z = stats["logits_precap"].abs() / S.final_cap
        out["softcap_regime"] = {"attention_frac_over_half_per_layer": frac,
                                 "final_logits_frac_over_half": sig((z > 0.5).double().mean().item(), 3),
                                 "note": "share of |x| / cap above 0.5 (tanh(0.5) / 0.5 = 0.924) over the visible "
                                         "scaled scores per layer and over the pre-cap logits"}
        chk(min(frac) > 0.2, f"attention soft-cap is non-linear on the scores: {frac}")
        chk((z > 0.5).double().mean().item() > 0.2, "final soft-cap is non-linear on the logits")
    return out


def family(name, check):
    hf = name not in ("gpt2", "llama")
    gen = torch.Generator().manual_seed(SEED[name])
    if hf:
        hf_cfg, cfg = hf_config(name)
        forward_cfg = fr.Spec(name, cfg)
        forward = lambda P, tok, spec: fr.forward(spec, P, tok)
        shapes = hf_layout(name, hf_cfg)
        W = random_weights(shapes, gen, norm_offset=0.0 if name == "gemma2" else 1.0)
        vocab = cfg["vocab_size"]
    else:
        cfg, forward_cfg = configs(name)
        forward = gpt2_forward if name == "gpt2" else llama_forward
        shapes = layout(cfg)
        W = random_weights(shapes, gen)
        vocab = V
    keys = [k for k, _ in shapes]
    tokens = torch.randint(0, vocab, (B, T + 1), generator=gen)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    positions = [sorted(torch.randperm(T - K, generator=gen)[:M].tolist()) for _ in range(B)]

    P = {k: w.clone().requires_grad_(True) for k, w in W.items()}
    R, base, own = rewards_and_baselines(forward, P, inputs, targets, positions, forward_cfg, vocab)
    ce, policy = objective(forward, P, inputs, targets, positions, R, base, forward_cfg)
    g_total = grads(ce + policy, P, keys)
    g_policy = grads(policy, P, keys)
    _, policy_no_baseline = objective(forward, P, inputs, targets, positions, R, torch.zeros_like(base), forward_cfg)
    g_no_baseline = grads(policy_no_baseline, P, keys)
    g_by_token = policy_gradient_token_by_token(forward, P, inputs, positions, R, base, forward_cfg, keys, vocab)

    by_token = max(rel(g_by_token[k], g_policy[k]) for k in keys if g_policy[k].norm() > 0)
    no_baseline = max(rel(g_no_baseline[k], g_policy[k]) for k in keys if g_policy[k].norm() > 0)
    own_vs_base = (own - base).abs().max().item()
    check(by_token < 1e-10, f"{name}: token-by-token policy gradient vs the surrogate's: {by_token:.3g}")
    check(no_baseline < 1e-10, f"{name}: the baseline does not cancel: {no_baseline:.3g}")
    check(own_vs_base < 1e-12, f"{name}: R(x_t+1) vs b: {own_vs_base:.3g}")
    extra = hf_checks(name, hf_cfg, forward_cfg, W, keys, inputs, targets, positions, R, base, g_total, check) if hf else {}

    tensors = {"rewards": R.float().contiguous(), "baselines": base.float().contiguous()}
    for k in keys:
        tensors[f"weight.{k}"] = W[k].float().contiguous()
        tensors[f"grad.{k}"] = g_total[k].float().contiguous()
        tensors[f"policy_grad.{k}"] = g_policy[k].float().contiguous()
    st_path = os.path.join(OUT, f"{name}.safetensors")
    save_file(dict(sorted(tensors.items())), st_path, metadata={"format": "pt"})

    doc = {
        "source": "tools/reference/consequence_reference.py",
        **({"family": name, "hf_config": cfg} if hf else {"config": cfg}),
        "B": B, "T": T, "K": K, "M": M, "lambda": LAMBDA,
        "tokens": tokens.tolist(),
        "positions": positions,
        "definition": "L = mean CE - lambda/(B*M) sum_pairs sum_v p(v) (R(v) - b) log p(v), p and R, b constants; "
                      "R(v) = -(mean CE of targets[t+1..t+K] with v in place of x_{t+1}), b = R(x_{t+1})",
        "losses": {"mean_ce": ce.item(), "policy_term": policy.item()},
        "tensors": {"weight.<key>": "F32 weights", "grad.<key>": "dL/d param (float64, rounded to F32)",
                    "policy_grad.<key>": "the policy term's gradient alone",
                    "rewards": "(B, M, V) R(v)", "baselines": "(B, M) b"},
        "checks": {"token_by_token_vs_surrogate_max_rel": sig(by_token, 3),
                   "baseline_cancels_max_rel": sig(no_baseline, 3),
                   "own_token_reward_vs_baseline_max_abs": sig(own_vs_base, 3), **extra},
        "versions": {"torch": torch.__version__, "safetensors": safetensors.__version__,
                     **({"transformers": transformers.__version__} if hf else {}), "python": sys.version.split()[0]},
    }
    json_path = os.path.join(OUT, f"{name}.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{name}: mean CE {ce.item():.9g}, policy term {policy.item():.6g}; token by token {by_token:.3g}, "
          f"baseline {no_baseline:.3g}, R(own) vs b {own_vs_base:.3g}"
          + "".join(f"; {k} {v}" for k, v in extra.items() if not isinstance(v, (dict, list))))
    for p in (st_path, json_path):
        print(f"  {os.path.relpath(p, REPO_ROOT):50s} {os.path.getsize(p):9d} B  sha256 {file_sha256(p)[:16]}")


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help="folder for the files (default: Tests/Fixtures/consequence)")
    ap.add_argument("--only", default=",".join(NAMES), help="comma-separated families")
    args = ap.parse_args()
    OUT = os.path.abspath(args.out)
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    check = Checker()
    for name in args.only.split(","):
        assert name in NAMES, name
        family(name, check)
    if check.failures:
        print("FAILED:", check.failures)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
