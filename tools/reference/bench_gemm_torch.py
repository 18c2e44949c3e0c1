#!/usr/bin/env python3
"""torch.matmul beside `myopia bench`'s GEMM: the same shapes and layouts, GFLOP/s.

The shapes (M, K, N) and layouts are Bench.gemmShapes: transformer projections at B·T = 2048 rows,
each as A·B (NN), A·Bᵀ (NT) and Aᵀ·B (TN), fp32, C = op(A)·op(B) written into a preallocated C
(`torch.matmul(..., out=C)`; the transposes are views, as Myopia's are flags). Each case is the
fastest of --rounds × --reps products, each timed alone, after one warm-up (Myopia's bench also
reports its fastest product, of at least 3). On x86 this
torch's CPU matmul is MKL (oneDNN), the fastest sgemm the reference environment has.

With --myopia FILE (the output of `myopia bench --json --no-training ...`), it prints Myopia's
figure for each case beside torch's and the geometric mean of Myopia / torch per thread count.

  /opt/refenv/bin/python tools/reference/bench_gemm_torch.py --threads 2
  myopia bench --json --threads 2 --no-training --no-games --no-horizon --no-tokenizers --no-decode > m.json
  /opt/refenv/bin/python tools/reference/bench_gemm_torch.py --threads 2 --myopia m.json --json
"""
import argparse
import json
import math
import time

# Bench.gemmShapes: (M, K, N).
SHAPES = [(2048, 256, 768), (2048, 768, 256), (2048, 256, 1024), (2048, 1024, 256), (2048, 256, 8192), (256, 2048, 768)]
LAYOUTS = ["NN", "NT", "TN"]


def operands(torch, m, k, n, layout, gen):
    """op(A) (m×k) and op(B) (k×n), stored as the layout says (transposed ones as views)."""
    a = torch.randn(k, m, generator=gen).t() if layout == "TN" else torch.randn(m, k, generator=gen)
    b = torch.randn(n, k, generator=gen).t() if layout == "NT" else torch.randn(k, n, generator=gen)
    return a, b


def measure(torch, m, k, n, layout, rounds, reps):
    gen = torch.Generator().manual_seed(m * 7 + k * 3 + n)
    a, b = operands(torch, m, k, n, layout, gen)
    c = torch.empty(m, n)
    torch.matmul(a, b, out=c)  # warm-up
    best = 0.0
    for _ in range(rounds * reps):
        start = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = max(best, 2.0 * m * k * n / (time.perf_counter() - start) * 1e-9)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5, help="products per round")
    ap.add_argument("--myopia", help="`myopia bench --json` output to compare with")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    myopia = {}
    if args.myopia:
        with open(args.myopia) as f:
            report = json.load(f)
        for case in report["gemm"]:
            if case["threads"] == args.threads:
                myopia[(case["m"], case["k"], case["n"], case["layout"])] = case["gflops"]
    cases, logs = [], []
    for m, k, n in SHAPES:
        for layout in LAYOUTS:
            g = measure(torch, m, k, n, layout, args.rounds, args.reps)
            case = {"m": m, "k": k, "n": n, "layout": layout, "torch_gflops": round(g, 2)}
            ours = myopia.get((m, k, n, layout))
            line = f"GEMM {m:4d}×{k:4d}×{n:4d} {layout} {args.threads}T: torch.matmul {g:6.1f} GFLOP/s"
            if ours is not None:
                case["myopia_gflops"] = ours
                case["ratio"] = round(ours / g, 3)
                logs.append(math.log(ours / g))
                line += f", Myopia {ours:6.1f}, ratio {ours / g:.2f}"
            cases.append(case)
            if not args.json:
                print(line, flush=True)
    out = {"torch": torch.__version__, "threads": args.threads, "mkl": torch.backends.mkl.is_available(),
           "cases": cases}
    if logs:
        out["geomean_ratio_myopia_over_torch"] = round(math.exp(sum(logs) / len(logs)), 3)
    if args.json:
        print(json.dumps(out, indent=1))
    elif logs:
        print(f"geometric mean Myopia / torch.matmul over {len(logs)} cases, {args.threads} thread(s): "
              f"{out['geomean_ratio_myopia_over_torch']:.3f}")


if __name__ == "__main__":
    main()
