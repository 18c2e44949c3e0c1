#!/usr/bin/env python3
"""PyTorch side of `myopia bench`: the same training steps, for a side-by-side comparison.

For each configuration (SMALL, GPT2-124M) and mode (eager, compile) this times one full training
step as Myopia's bench does it: zero the gradients, forward with the mean cross-entropy loss,
backward, clip the global gradient norm to 1, one AdamW step (lr 1e-4, betas 0.9/0.95, eps 1e-8,
weight decay 0.1 on matrices only; `fused=True` where this torch has it). fp32, random tokens and
targets, the median of --steps steps after --warmup steps. The model is GPT-2 written out in plain
torch ops (nanoGPT's layout): learned positions, LayerNorm eps 1e-5, fused qkv with biases, GELU
(tanh), 4x MLP, head tied to wte, no dropout: the same FLOPs as Myopia's step (6 per parameter per
token for every matrix, the tied head included, plus attention's T×T scores and weighted sums).
Attention is `F.scaled_dot_product_attention(is_causal=True)`, PyTorch's fastest CPU attention
(--attention manual materialises the T×T matrix instead, as nanoGPT's fallback does).

Each (configuration, mode) runs in a fresh Python process so that its peak resident set
(ru_maxrss: model, gradients, AdamW moments, activations, plus torch's own baseline, reported
separately as baseline_rss_mib) is its own.

  /opt/refenv/bin/python tools/reference/bench_pytorch.py                       # both configs, eager and compile
  /opt/refenv/bin/python tools/reference/bench_pytorch.py --configs gpt2-124m --modes eager --json
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    # name: (vocab, seq, layers, heads, d_model, batch, n_ctx)
    "small": dict(name="SMALL", vocab=8192, seq=256, layers=4, heads=4, d_model=256, batch=8, n_ctx=256),
    "gpt2-124m": dict(name="GPT2-124M", vocab=50257, seq=64, layers=12, heads=12, d_model=768, batch=4, n_ctx=1024),
}


def training_flops(c):
    """Myopia's Bench.trainingFLOPs: 6·params·tokens over every matrix (tied head included, wpe
    excluded) plus 12·L·B·T²·C for attention over the full T×T square."""
    C, L, V, B, T = c["d_model"], c["layers"], c["vocab"], c["batch"], c["seq"]
    per_layer = C * 3 * C + C * C + 2 * C * 4 * C
    matrices = L * per_layer + V * C
    return 6 * matrices * B * T + 12 * L * B * T * T * C


def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    baseline = rss_mib("VmRSS")
    c = CONFIGS[args.worker_config]
    C, H, L, V, B, T = c["d_model"], c["heads"], c["layers"], c["vocab"], c["batch"], c["seq"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q = q.view(b, t, H, C // H).transpose(1, 2)  # (B, NH, T, HS)
            k = k.view(b, t, H, C // H).transpose(1, 2)
            v = v.view(b, t, H, C // H).transpose(1, 2)
            if args.attention == "sdpa":
                z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                mask = torch.ones(t, t, dtype=torch.bool).tril()
                att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
                z = att @ v
            x = x + self.c_proj(z.transpose(1, 2).contiguous().view(b, t, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(c["n_ctx"], C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    model = GPT()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
        fused = True
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
        fused = False
    step_model = torch.compile(model) if args.worker_mode == "compile" else model
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)

    times, fwd, bwd, opt = [], [], [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = step_model(idx, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        t3 = time.perf_counter()
        if i >= args.warmup:
            times.append((t3 - t0) * 1e3)
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            opt.append((t3 - t2) * 1e3)
    ms = statistics.median(times)
    flop = training_flops(c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "name": c["name"], "mode": args.worker_mode, "threads": args.threads, "attention": args.attention,
        "fused_adamw": fused, "parameters": n_params, "gflop_per_step": flop / 1e9,
        "ms_per_step": ms, "forward_ms": statistics.median(fwd), "backward_ms": statistics.median(bwd),
        "optimizer_ms": statistics.median(opt), "step_ms_all": times,
        "tokens_per_s": B * T / (ms / 1e3), "gflops": flop / 1e9 / (ms / 1e3),
        "peak_rss_mib": peak, "baseline_rss_mib": baseline, "loss": float(loss),
        "torch": torch.__version__,
    }
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,gpt2-124m", help="comma-separated: small, gpt2-124m")
    ap.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=7, help="timed steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    ap.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    ap.add_argument("--worker-mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_config:
        return worker(args)

    results = []
    for config in args.configs.split(","):
        if config not in CONFIGS:
            sys.exit(f"unknown config {config!r} (expected one of {', '.join(CONFIGS)})")
        for mode in args.modes.split(","):
            if mode not in ("eager", "compile"):
                sys.exit(f"unknown mode {mode!r} (expected eager or compile)")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker-config", config, "--worker-mode", mode,
                   "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--attention", args.attention]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                sys.exit(f"{config} {mode} failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            if not args.json:
                print(f"{r['name']:10s} {mode:7s} {r['threads']}T: {r['ms_per_step']:8.1f} ms/step "
                      f"(forward {r['forward_ms']:.1f}, backward {r['backward_ms']:.1f}, optimiser {r['optimizer_ms']:.1f}), "
                      f"{r['tokens_per_s']:.0f} tokens/s, {r['gflops']:.1f} GFLOP/s, peak RSS {r['peak_rss_mib']:.0f} MiB "
                      f"(torch baseline {r['baseline_rss_mib']:.0f})", flush=True)
    if args.json:
        print(json.dumps({"torch_threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
