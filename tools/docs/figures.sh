#!/usr/bin/env bash
# Reruns the commands whose output README.md and docs/benchmarks.md quote, and writes each block
# between its markers, stamped with the date, the CPU (lscpu's "Model name") and the commit:
#
#   <!-- figures:NAME -->  …generated, do not edit by hand…  <!-- /figures:NAME -->
#
#   README.md            demo-summary       the table `myopia demo` prints
#   docs/benchmarks.md   demo-summary       the same table
#                        demo-stages        the demo's wall time per stage (its summary.json)
#                        bench-peak         FMA peak per thread count (`myopia bench --json`)
#                        bench-training     SMALL and GPT-2 124M training step, vanilla and myopic
#                        bench-decode       SmolLM2-135M decode and prompt tokens/s
#                        bench-gemm         GEMM GFLOP/s on the transformer shapes, beside OpenBLAS
#                        bench-tokenizers   tokenizer encode / decode MB/s
#                        bench-horizon      the exact horizon's cost in backward passes
#
# Usage: tools/docs/figures.sh [BINARY] [--skip-demo] [--skip-bench] [--quick-demo] [--demo-out=DIR] [--self-test]
#
#   BINARY        the built CLI (default .build/release/myopia); built with
#                 `swift build -c release --product myopia` when it is missing
#   --skip-demo   leave the demo blocks as they are
#   --skip-bench  leave the bench blocks as they are
#   --quick-demo  `myopia demo --quick` instead of the full demo (to try this script; the stamp says so)
#   --demo-out=DIR  run the demo into DIR and keep it there (its report.html, to look at); by
#                 default it runs in a temporary folder, removed at the end
#   --self-test   check the block replacement and the bench formatting on dummy input, and exit
#
# MYOPIA_BENCH_ARGS adds arguments to `myopia bench` (e.g. "--threads 2"), MYOPIA_DEMO_ARGS to
# `myopia demo` (e.g. "--budget 1800" on a busy machine, so that the SmolLM2 stage still runs; the
# stamp names them). The full demo takes
# about 4–12 minutes on 2 cores and the bench a few more; run it on a quiet machine (nothing else
# building) and commit the result. Nothing is written unless every command succeeded.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

binary=".build/release/myopia"
run_demo=1
run_bench=1
quick_demo=0
demo_out=""
self_test=0
for arg in "$@"; do
    case "$arg" in
        --skip-demo) run_demo=0 ;;
        --skip-bench) run_bench=0 ;;
        --quick-demo) quick_demo=1 ;;
        --demo-out=*) demo_out="${arg#--demo-out=}" ;;
        --self-test) self_test=1 ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "figures.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) binary="$arg" ;;
    esac
done

# The helpers: block replacement and formatting, in Python (standard library only).
helpers() {
    python3 - "$@" <<'PY'
import json, math, os, sys, tempfile

def replace_block(path, name, content):
    """Replaces what lies between <!-- figures:NAME --> and <!-- /figures:NAME --> in `path`."""
    start, end = f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(start) != 1 or text.count(end) != 1:
        sys.exit(f"figures.sh: {path}: expected exactly one {start} and one {end}")
    i, j = text.index(start) + len(start), text.index(end)
    if j < i:
        sys.exit(f"figures.sh: {path}: {end} comes before {start}")
    text = text[:i] + "\n" + content.strip("\n") + "\n" + text[j:]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".figures-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)

def num(x):
    """A JSON number, or None for null and the strings "nan" / "inf" that `--json` writes."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

def f(x, digits=1):
    v = num(x)
    return "n/a" if v is None else f"{v:.{digits}f}"

def stamp(what):
    return f"_{what}: {os.environ['FIGURES_STAMP']}._"

def bench_blocks(report):
    blocks = {}
    cmd = "`myopia bench --json" + (" " + os.environ["FIGURES_BENCH_ARGS"] if os.environ.get("FIGURES_BENCH_ARGS") else "") + "`"
    peaks = report.get("fma_peak_gflops") or {}
    lines = [stamp(cmd), "", f"Kernel: {report.get('kernel', '?')}, {report.get('cores', '?')} cores.", ""]
    sel = report.get("kernel_selection") or {}
    if sel:
        tiles = ", ".join(f"{k} {f(v)}" for k, v in sorted((sel.get("tile_gflops") or {}).items()))
        lines += [f"Chosen by: {sel.get('reason', '?')}" + (f" (one thread, GFLOP/s: {tiles})" if tiles else "") + ".", ""]
    widths = report.get("fma_peak_gflops_by_width") or {}
    if widths:
        names = sorted(widths)
        lines += ["| threads | " + " | ".join(f"FMA peak, {w} (GFLOP/s)" for w in names) + " |",
                  "|---|" + "---|" * len(names)]
        lines += [f"| {t} | " + " | ".join(f(widths[w].get(t)) for w in names) + " |" for t in sorted(peaks, key=int)]
    elif peaks:
        lines += ["| threads | FMA peak (GFLOP/s) |", "|---|---|"]
        lines += [f"| {t} | {f(peaks[t])} |" for t in sorted(peaks, key=int)]
    else:
        lines.append("Not measured (no GEMM or training in this run).")
    blocks["bench-peak"] = "\n".join(lines)

    rows = report.get("training") or []
    lines = [stamp(cmd), ""]
    if rows:
        lines += ["| config | flow | threads | ms/step | forward | backward | optimiser | tokens/s | GFLOP/s | MFU | peak RSS (MiB) | allocations/step |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in rows:
            alloc = num(s.get("allocations_per_step"))
            alloc = "n/a" if alloc is None else (str(int(alloc)) if alloc == int(alloc) else f"{alloc:.1f}")
            lines.append(f"| {s['name']} | {s['flow']} | {s['threads']} | {f(s.get('ms_per_step'))} | {f(s.get('forward_ms'))} | "
                         f"{f(s.get('backward_ms'))} | {f(s.get('optimizer_ms'))} | {f(s.get('tokens_per_s'), 0)} | "
                         f"{f(s.get('gflops'))} | {f(s.get('mfu'), 2)} | {f(s.get('peak_rss_mib'), 0)} | {alloc} |")
        ratios = report.get("myopic_over_vanilla") or {}
        if ratios:
            lines += ["", "Myopic / vanilla step time: " + "; ".join(
                f"{k.split('/')[0]}, {k.split('/')[1]} thread(s): {f(v, 3)}" for k, v in sorted(ratios.items())) + "."]
        configs = {s["name"]: s.get("config", "") for s in rows}
        lines += [""] + [f"{n}: {c}." for n, c in configs.items()]
    else:
        lines.append("Not measured in this run.")
    blocks["bench-training"] = "\n".join(lines)

    rows = report.get("decode") or []
    lines = [stamp(cmd), ""]
    if rows:
        lines += ["| model | parameters | threads | decode (tokens/s) | weights streamed (GB/s) | prompt processing (tokens/s) |",
                  "|---|---|---|---|---|---|"]
        for d in rows:
            lines.append(f"| {d['model']} | {num(d.get('parameters')) / 1e6:.0f}M | {d['threads']} | {f(d.get('tokens_per_s'))} | "
                         f"{f(d.get('weight_gb_per_s'))} | {f(d.get('prompt_tokens_per_s'), 0)} |")
        lines += ["", f"Greedy decoding after a {rows[0].get('prompt_tokens', '?')}-token prompt, {rows[0].get('tokens', '?')} tokens "
                  "one at a time (median of 3 runs); prompt processing: 256 tokens in chunks of 64."]
    else:
        lines.append("Skipped: the model could not be fetched, or --no-decode.")
    blocks["bench-decode"] = "\n".join(lines)

    rows = report.get("gemm") or []
    lines = [stamp(cmd), ""]
    if rows:
        lines += ["| M×K×N | layout | threads | Myopia (GFLOP/s) | OpenBLAS (GFLOP/s) | ratio |", "|---|---|---|---|---|---|"]
        for c in rows:
            lines.append(f"| {c['m']}×{c['k']}×{c['n']} | {c['layout']} | {c['threads']} | {f(c.get('gflops'))} | "
                         f"{f(c.get('openblas_gflops'))} | {f(c.get('ratio'), 2)} |")
        geo = report.get("gemm_geomean_ratio_vs_openblas") or {}
        lines += [""] + ([("Geometric mean of Myopia / OpenBLAS: " + "; ".join(
            f"{t} thread(s) {f(geo[t], 3)}" for t in sorted(geo, key=int)) + ".")] if geo
            else ["OpenBLAS was not installed: Myopia's figures only."])
        lines.append("Layouts: NN = A·B, NT = A·Bᵀ, TN = Aᵀ·B. Each case: the best of 5 rounds, alternating which library goes first.")
    else:
        lines.append("Not measured in this run.")
    blocks["bench-gemm"] = "\n".join(lines)

    rows = report.get("tokenizers") or []
    lines = [stamp(cmd), ""]
    if rows:
        lines += ["| tokenizer | corpus | MB | tokens | encode (MB/s) | decode (MB/s) |", "|---|---|---|---|---|---|"]
        for t in rows:
            lines.append(f"| {t['tokenizer']} | {t['corpus']} | {num(t['bytes']) / 1e6:.2f} | {t['tokens']} | "
                         f"{f(t.get('encode_mb_per_s'))} | {f(t.get('decode_mb_per_s'))} |")
    else:
        lines.append("Skipped: the tokenizer assets could not be fetched, or --no-tokenizers.")
    blocks["bench-tokenizers"] = "\n".join(lines)

    h = report.get("horizon")
    lines = [stamp(cmd), ""]
    if h:
        ks = sorted((h.get("horizon_ms") or {}), key=int)
        lines += [f"Configuration: {h.get('config', '?')}. One backward pass: {f(h.get('backward_ms'))} ms; "
                  f"brute force (one backward pass per target): {f(h.get('brute_force_ms'), 0)} ms.", "",
                  "| max offset K | horizon (ms) | in backward passes |", "|---|---|---|"]
        lines += [f"| {k} | {f(h['horizon_ms'][k])} | {f(h['horizon_in_backward_passes'][k], 2)} |" for k in ks]
    else:
        lines.append("Not measured in this run.")
    blocks["bench-horizon"] = "\n".join(lines)
    return blocks

def demo_stages(summary):
    lines = [stamp("`myopia demo`"), "", "| stage | seconds | note |", "|---|---|---|"]
    for s in summary.get("stages", []):
        note = "skipped" + (f": {s['note']}" if s.get("note") else "") if s.get("skipped") else (s.get("note") or "")
        lines.append(f"| {s['stage']} | {f(s.get('seconds'), 0)} | {note} |")
    load = lambda xs: " ".join(f(x) for x in xs or [])
    lines += ["", f"Total {f(summary.get('seconds'), 0)} s of a {f(summary.get('budget_seconds'), 0)} s budget on "
              f"{summary.get('cores', '?')} cores; load average {load(summary.get('load_average_start'))} at the start, "
              f"{load(summary.get('load_average_end'))} at the end."]
    return "\n".join(lines)

def self_test():
    import shutil
    d = tempfile.mkdtemp()
    try:
        p = os.path.join(d, "doc.md")
        with open(p, "w") as fh:
            fh.write("intro\n<!-- figures:a -->\nold\nlines\n<!-- /figures:a -->\nmiddle\n<!-- figures:b -->\n<!-- /figures:b -->\nend\n")
        replace_block(p, "a", "new\n")
        replace_block(p, "b", "\nB1\nB2")
        replace_block(p, "a", "newer")
        got = open(p).read()
        want = "intro\n<!-- figures:a -->\nnewer\n<!-- /figures:a -->\nmiddle\n<!-- figures:b -->\nB1\nB2\n<!-- /figures:b -->\nend\n"
        assert got == want, repr(got)
        for bad in ("c",):
            try:
                replace_block(p, bad, "x")
            except SystemExit:
                pass
            else:
                raise AssertionError("a missing marker was not refused")
        assert open(p).read() == want, "a refused replacement changed the file"
        os.environ.setdefault("FIGURES_STAMP", "2000-01-01, Test CPU (2 CPUs), commit 0000000")
        report = {"kernel": "avx2-fma 6x16", "cores": 2, "fma_peak_gflops": {"1": 117.2, "2": "nan"},
                  "gemm": [{"m": 2048, "k": 256, "n": 768, "layout": "NN", "threads": 1, "gflops": 107.0,
                            "openblas_gflops": 101.3, "ratio": 1.056}],
                  "gemm_geomean_ratio_vs_openblas": {"1": 1.05},
                  "training": [{"name": "SMALL", "config": "vocab 8192, seq 256", "flow": "vanilla", "threads": 2,
                                "gflop_per_step": 70.9, "ms_per_step": 420.5, "tokens_per_s": 4870, "gflops": 168.6,
                                "mfu": 0.73, "forward_ms": 120, "backward_ms": 260, "optimizer_ms": 40,
                                "peak_rss_mib": 338, "baseline_rss_mib": 20, "allocations_per_step": 0}],
                  "myopic_over_vanilla": {"SMALL/2": 0.99}, "horizon": None, "tokenizers": [], "decode": []}
        blocks = bench_blocks(report)
        assert "| SMALL | vanilla | 2 | 420.5 |" in blocks["bench-training"], blocks["bench-training"]
        assert "| 2 | n/a |" in blocks["bench-peak"], blocks["bench-peak"]
        wide = dict(report, kernel="avx512 12x32", fma_peak_gflops={"1": 118.0},
                    kernel_selection={"kernel": "avx512", "reason": "timed", "tile_gflops": {"avx2": 106.5, "avx512": 109.7}},
                    fma_peak_gflops_by_width={"ymm": {"1": 117.9}, "zmm": {"1": 118.0}})
        peak_block = bench_blocks(wide)["bench-peak"]
        assert "| threads | FMA peak, ymm (GFLOP/s) | FMA peak, zmm (GFLOP/s) |" in peak_block, peak_block
        assert "| 1 | 117.9 | 118.0 |" in peak_block and "avx512 109.7" in peak_block, peak_block
        assert "Skipped" in blocks["bench-decode"] and "Not measured" in blocks["bench-horizon"]
        assert "1.06 |" in blocks["bench-gemm"], blocks["bench-gemm"]
        stages = demo_stages({"stages": [{"stage": "sine", "seconds": 97.4, "skipped": False},
                                         {"stage": "smollm2", "seconds": 0, "skipped": True, "note": "--skip-smollm2"}],
                              "seconds": 400, "budget_seconds": 900, "cores": 2,
                              "load_average_start": [1.4, 1.2, 1.0], "load_average_end": [1.9, 1.5, 1.1]})
        assert "| smollm2 | 0 | skipped: --skip-smollm2 |" in stages, stages
        print("figures.sh self-test: ok")
    finally:
        shutil.rmtree(d)

mode = sys.argv[1]
if mode == "replace":                       # replace FILE NAME CONTENT_FILE
    replace_block(sys.argv[2], sys.argv[3], open(sys.argv[4], encoding="utf-8").read())
elif mode == "bench-blocks":                # bench-blocks BENCH_JSON OUT_DIR: one NAME.md per block
    blocks = bench_blocks(json.load(open(sys.argv[2], encoding="utf-8")))
    for name, content in blocks.items():
        with open(os.path.join(sys.argv[3], name + ".md"), "w", encoding="utf-8") as fh:
            fh.write(content + "\n")
elif mode == "demo-stages":                 # demo-stages SUMMARY_JSON OUT_FILE
    with open(sys.argv[3], "w", encoding="utf-8") as fh:
        fh.write(demo_stages(json.load(open(sys.argv[2], encoding="utf-8"))) + "\n")
elif mode == "self-test":
    self_test()
else:
    sys.exit(f"figures.sh: unknown helper mode {mode}")
PY
}

if [ "$self_test" -eq 1 ]; then
    helpers self-test
    exit 0
fi

# The stamp: date, CPU, commit.
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1 || true)"
if [ -z "$cpu" ]; then
    cpu="$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1 || true)"
fi
if [ -z "$cpu" ]; then
    cpu="$(sysctl -n machdep.cpu.brand_string 2>/dev/null || echo "unknown CPU")"
fi
cpus="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo "?")"
commit="$(git rev-parse --short HEAD)"
if ! git diff --quiet HEAD -- Sources Package.swift 2>/dev/null; then
    commit="$commit with uncommitted changes to Sources"
fi
export FIGURES_STAMP="$(date -u +%Y-%m-%d), $cpu ($cpus CPUs), commit $commit"
export FIGURES_BENCH_ARGS="${MYOPIA_BENCH_ARGS:-}"

if [ ! -x "$binary" ]; then
    echo "figures.sh: $binary is missing; building it" >&2
    swift build -c release --product myopia
    [ -x "$binary" ] || { echo "figures.sh: still no $binary after the build" >&2; exit 1; }
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/myopia-figures.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blocks"

if [ "$run_demo" -eq 1 ]; then
    demo_dir="${demo_out:-$work/demo}"
    demo_args=(demo --out "$demo_dir")
    what="\`myopia demo\`"
    if [ -n "${MYOPIA_DEMO_ARGS:-}" ]; then
        # shellcheck disable=SC2206  # MYOPIA_DEMO_ARGS is split on purpose
        demo_args+=(${MYOPIA_DEMO_ARGS})
        what="\`myopia demo ${MYOPIA_DEMO_ARGS}\`"
    fi
    if [ "$quick_demo" -eq 1 ]; then
        demo_args+=(--quick)
        what="\`myopia demo --quick\` (not the full demo)"
    fi
    echo "figures.sh: running myopia ${demo_args[*]} (progress on stderr)" >&2
    "$binary" "${demo_args[@]}" > "$work/demo-stdout.txt"
    # The table, without the blank lines around it and the report's (temporary) path.
    grep -v '^report: ' "$work/demo-stdout.txt" | sed '/./,$!d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' > "$work/demo-table.txt"
    [ -s "$work/demo-table.txt" ] || { echo "figures.sh: the demo printed no table" >&2; exit 1; }
    {
        echo "_${what}: ${FIGURES_STAMP}._"
        echo
        echo '```'
        cat "$work/demo-table.txt"
        echo '```'
    } > "$work/blocks/demo-summary.md"
    helpers demo-stages "$demo_dir/summary.json" "$work/blocks/demo-stages.md"
fi

if [ "$run_bench" -eq 1 ]; then
    # shellcheck disable=SC2206  # MYOPIA_BENCH_ARGS is split on purpose
    bench_args=(bench --json --quiet ${MYOPIA_BENCH_ARGS:-})
    echo "figures.sh: running myopia ${bench_args[*]}" >&2
    "$binary" "${bench_args[@]}" > "$work/bench.json"
    helpers bench-blocks "$work/bench.json" "$work/blocks"
fi

# Every command succeeded: write the blocks.
for block in "$work"/blocks/*.md; do
    [ -e "$block" ] || continue
    name="$(basename "$block" .md)"
    case "$name" in
        demo-summary) targets=(README.md docs/benchmarks.md) ;;
        *) targets=(docs/benchmarks.md) ;;
    esac
    for target in "${targets[@]}"; do
        helpers replace "$target" "$name" "$block"
        echo "figures.sh: $target: $name" >&2
    done
done
echo "figures.sh: done ($FIGURES_STAMP); review with git diff README.md docs/benchmarks.md" >&2
