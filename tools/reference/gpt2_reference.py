#!/usr/bin/env python3
"""Generate the PyTorch / Hugging Face reference fixtures for a tiny GPT-2.

Writes, under Tests/Fixtures/gpt2_tiny/ (relative to the repo root unless --out is given):

  hf/config.json, hf/model.safetensors
      The initial model as written by transformers' save_pretrained (the "folder saved by
      transformers" that Myopia must be able to load).
  reference.safetensors (all F32)
      logits              [3,40,256]  forward on the eval batch
      hidden.{l}          [3,40,96]   residual stream entering block l (l = 0..n_layer-1)
      resid_final         [3,40,96]   residual after the last block, before ln_f
      grad.<key>                      d(mean CE)/d(param) on the eval batch, canonical GPT-2 key
                                      without the `transformer.` prefix. The tied wte gradient is
                                      the sum of the embedding and LM-head contributions.
      final.<key>                     every parameter after the 10-step AdamW trajectory
  reference.json
      config, eval tokens, eval loss, AdamW hyper-parameters, learning rates, training tokens,
      the 10 losses and 10 pre-clip global grad norms, library versions, keys written by
      save_pretrained.

Everything is fp32, CPU, one thread, deterministic: running it twice gives byte-identical files.
Usage (from the repo root):  /opt/refenv/bin/python tools/reference/gpt2_reference.py
"""

import argparse
import copy
import hashlib
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

import safetensors
from safetensors import safe_open
from safetensors.torch import save_file
import transformers
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from refutil import file_sha256

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "Fixtures", "gpt2_tiny")

# Model / data sizes.
VOCAB, NPOS, NEMBD, NLAYER, NHEAD = 256, 64, 96, 3, 3
B, T = 3, 40  # T = 40 predictions per row (41 tokens): deliberately not a power of two

# AdamW trajectory.
BETAS = (0.9, 0.95)
EPS = 1e-8
WEIGHT_DECAY = 0.1
MAX_LR, MIN_LR = 1e-3, 1e-4
WARMUP, TOTAL = 3, 10
CLIP = 1.0

SEED_MODEL = 0        # torch.manual_seed for HF init
SEED_PERTURB = 1      # generator for LN / bias perturbation
SEED_EVAL = 2         # generator for eval tokens
SEED_TRAIN = 3        # generator for the 10 training batches


def lr_at(step, warmup=WARMUP, total=TOTAL, max_lr=MAX_LR, min_lr=MIN_LR):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def canon(name):
    """HF parameter name -> canonical GPT-2 key without the `transformer.` prefix."""
    assert name.startswith("transformer."), name
    return name[len("transformer."):]


def make_config():
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=NPOS,
        n_embd=NEMBD,
        n_layer=NLAYER,
        n_head=NHEAD,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    return cfg


def build_model():
    torch.manual_seed(SEED_MODEL)
    model = GPT2LMHeadModel(make_config())
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    model = model.float()
    # Make every LayerNorm parameter and bias non-trivial (HF inits them to 1 / 0).
    g = torch.Generator().manual_seed(SEED_PERTURB)
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(1.0 + 0.1 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.02 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, (Conv1D, torch.nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(0.02 * torch.randn(mod.bias.shape, generator=g))
    assert model.lm_head.weight is model.transformer.wte.weight, "LM head is not tied to wte"
    return model


def named_params(model):
    """Unique parameters (the tied lm_head appears once, as transformer.wte.weight)."""
    out = list(model.named_parameters())
    names = [n for n, _ in out]
    assert "lm_head.weight" not in names, names
    return out


def ce_loss(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/gpt2_tiny)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    # ---------------------------------------------------------------- model + HF save
    model = build_model()
    init_state = copy.deepcopy(model.state_dict())
    hf_dir = os.path.join(out, "hf")
    model.save_pretrained(hf_dir, safe_serialization=True)
    with safe_open(os.path.join(hf_dir, "model.safetensors"), framework="pt") as f:
        hf_keys = sorted(f.keys())
        hf_meta = f.metadata()

    # ---------------------------------------------------------------- eval forward/backward
    g_eval = torch.Generator().manual_seed(SEED_EVAL)
    tokens = torch.randint(0, VOCAB, (B, T + 1), generator=g_eval)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    model.train()  # all dropouts are 0, so train/eval are numerically identical
    block_inputs = {}
    hooks = []
    for i, block in enumerate(model.transformer.h):
        hooks.append(block.register_forward_pre_hook(
            lambda m, a, kw, i=i: block_inputs.__setitem__(i, (a[0] if a else kw["hidden_states"]).detach().clone()),
            with_kwargs=True))
    resid_final = {}
    hooks.append(model.transformer.ln_f.register_forward_pre_hook(
        lambda m, a: resid_final.__setitem__("x", a[0].detach().clone())))

    model.zero_grad(set_to_none=True)
    outputs = model(inputs, output_hidden_states=True, use_cache=False)
    logits = outputs.logits
    loss = ce_loss(logits, targets)
    loss.backward()
    for h in hooks:
        h.remove()
    assert logits.shape == (B, T, VOCAB)

    # Cross-check the hooks against HF's own hidden_states (HF's last one is after ln_f).
    hs = outputs.hidden_states
    hidden_notes = {"n_hidden_states": len(hs)}
    for l in range(NLAYER):
        hidden_notes[f"hf_hidden_{l}_equals_block_{l}_input"] = bool(torch.equal(hs[l], block_inputs[l]))
    hidden_notes["hf_last_equals_ln_f_output"] = bool(torch.equal(
        hs[-1], model.transformer.ln_f(resid_final["x"])))
    hidden_notes["hf_last_equals_resid_final"] = bool(torch.equal(hs[-1], resid_final["x"]))

    tensors = {"logits": logits.detach().contiguous()}
    for l in range(NLAYER):
        tensors[f"hidden.{l}"] = block_inputs[l].contiguous()
    tensors["resid_final"] = resid_final["x"].contiguous()
    param_keys = []
    for name, p in named_params(model):
        key = canon(name)
        param_keys.append(key)
        assert p.grad is not None, name
        tensors[f"grad.{key}"] = p.grad.detach().clone().contiguous()

    # ---------------------------------------------------------------- AdamW trajectory
    model2 = build_model()  # same construction...
    model2.load_state_dict(init_state)  # ...and exactly the same initial weights
    model2.train()
    params2 = named_params(model2)
    decay = [p for _, p in params2 if p.dim() >= 2]
    no_decay = [p for _, p in params2 if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=lr_at(0), betas=BETAS, eps=EPS, foreach=False, fused=False)

    g_train = torch.Generator().manual_seed(SEED_TRAIN)
    train_tokens = torch.randint(0, VOCAB, (TOTAL, B, T + 1), generator=g_train)
    all_params = [p for _, p in params2]
    lrs, losses, grad_norms = [], [], []
    for step in range(TOTAL):
        lr = lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = train_tokens[step]
        out_logits = model2(batch[:, :-1], use_cache=False).logits
        l = ce_loss(out_logits, batch[:, 1:])
        l.backward()
        gn = torch.nn.utils.clip_grad_norm_(all_params, CLIP, foreach=False)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lrs.append(lr)
        losses.append(float(l.item()))
        grad_norms.append(float(gn.item()))
    for name, p in named_params(model2):
        tensors[f"final.{canon(name)}"] = p.detach().clone().contiguous()

    for k, v in tensors.items():
        assert v.dtype == torch.float32, (k, v.dtype)
    ref_path = os.path.join(out, "reference.safetensors")
    save_file(dict(sorted(tensors.items())), ref_path, metadata={"format": "pt"})  # one key: safetensors orders metadata non-deterministically

    # ---------------------------------------------------------------- JSON
    config = {
        "vocab_size": VOCAB, "n_positions": NPOS, "n_embd": NEMBD, "n_layer": NLAYER, "n_head": NHEAD,
        "n_inner": None, "n_inner_effective": 4 * NEMBD, "activation_function": "gelu_new",
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True, "attn_implementation": "eager", "initializer_range": 0.02,
    }
    ref = {
        "config": config,
        "B": B,
        "T": T,
        "tokens": tokens.tolist(),
        "loss": float(loss.item()),
        "adamw": {
            "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY, "no_decay": "dim<2",
            "max_lr": MAX_LR, "min_lr": MIN_LR, "warmup": WARMUP, "total": TOTAL, "clip": CLIP,
            "lrs": lrs,
            "train_tokens": train_tokens.tolist(),
            "losses": losses,
            "grad_norms": grad_norms,
            "notes": "loss i is computed before update i; grad_norms are the global L2 norm over unique "
                     "parameters (tied wte/lm_head counted once) before clip_grad_norm_(1.0); the lr is set on "
                     "both groups before each step; torch.optim.AdamW(foreach=False), bias-corrected, "
                     "decoupled decay p -= lr*wd*p before the Adam update.",
        },
        "param_keys": param_keys,
        "tensors": {"logits": [B, T, VOCAB], "hidden.{l}": "residual entering block l, [B,T,n_embd]",
                    "resid_final": "residual after last block, before ln_f",
                    "grad.<key>": "gradient of mean CE on `tokens`",
                    "final.<key>": "parameters after the AdamW trajectory"},
        "hidden_state_check": hidden_notes,
        "init": "HF init under torch.manual_seed(0) (normal 0.02; c_proj weights 0.02/sqrt(2*n_layer)); then "
                "LN weight = 1+0.1*N(0,1), LN bias and all Conv1D biases = 0.02*N(0,1) (generator seed 1)",
        "seeds": {"model": SEED_MODEL, "perturb": SEED_PERTURB, "eval_tokens": SEED_EVAL, "train_tokens": SEED_TRAIN},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "python": sys.version.split()[0]},
        "hf_keys": hf_keys,
        "hf_metadata": hf_meta,
    }
    json_path = os.path.join(out, "reference.json")
    with open(json_path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")

    # ---------------------------------------------------------------- summary
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"hf keys written ({len(hf_keys)}): {hf_keys[:4]} ... {hf_keys[-3:]}")
    print(f"hidden-state check: {hidden_notes}")
    print(f"eval loss: {loss.item():.9g}")
    print("lrs:       ", ["%.6g" % x for x in lrs])
    print("losses:    ", ["%.7g" % x for x in losses])
    print("grad_norms:", ["%.7g" % x for x in grad_norms])
    total = 0
    for root, _, files in os.walk(out):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            sz = os.path.getsize(p)
            total += sz
            print(f"  {os.path.relpath(p, out):28s} {sz:9d} B  sha256 {file_sha256(p)[:16]}")
    print(f"  total {total} B ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
