#!/usr/bin/env bash
# Coverage-guided fuzzing of every target with libFuzzer (tools/fuzz/README.md).
#
#   tools/fuzz/libfuzzer.sh [RUNS] [TARGET...]     default: 10000 runs of every target
#
# Builds myopia-libfuzzer with `--sanitize fuzzer` (coverage instrumentation, libFuzzer's main)
# into .build-fuzz, then runs each target from a copy of its seeds in tools/fuzz/corpus with a 5 s
# limit per input (-timeout), a 4 GB limit on resident memory (-rss_limit_mb: an allocation sized
# by an unchecked header is a finding; one the system refuses outright is a trap, also a finding)
# and a refusal that is not an InputError naming the file and a field counted as a crash.
# Findings: .build-fuzz/findings/TARGET-crash-*, -timeout-*, -oom-*.
# The corpus libFuzzer grows is kept in .build-fuzz/corpus/TARGET for the next run.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs="${1:-10000}"
[ $# -gt 0 ] && shift
scratch=.build-fuzz
binary="$scratch/release/myopia-libfuzzer"

# Only the fuzzer sanitizer: SwiftPM drops the coverage instrumentation when AddressSanitizer is
# added as well (measured with swift 6.3: no counters at all), and coverage is the point here.
swift build -c release --package-path tools/fuzz --scratch-path "$scratch" --sanitize fuzzer -Xswiftc -DMYOPIA_LIBFUZZER --product myopia-libfuzzer >&2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(ls tools/fuzz/corpus)   # one folder of seeds per target
fi

mkdir -p "$scratch/findings"
status=0
printf "%-15s %8s %9s %6s %8s %s\n" target runs seconds cov result "corpus (inputs kept)"
for t in "${targets[@]}"; do
    work="$scratch/corpus/$t"
    mkdir -p "$work"
    cp -n tools/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
    log="$scratch/findings/$t.log"
    result=ok
    MYOPIA_FUZZ_TARGET="$t" "$binary" -runs="$runs" -seed=1 -timeout=5 -rss_limit_mb=4096 \
        -max_len=$((1 << 20)) -print_final_stats=1 -artifact_prefix="$scratch/findings/$t-" "$work" > "$log" 2>&1 || { result=FOUND; status=1; }
    done_runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | awk '{print $2, $5}' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
    printf "%-15s %8s %9s %6s %8s %s\n" "$t" "${done_runs% *}" "${done_runs#* }" "$cov" "$result" "$(ls "$work" | wc -l)"
    if [ "$result" != ok ]; then grep -E "ERROR|fatal|Fatal|bad refusal|timeout|out-of-memory" "$log" | head -5; fi
done
exit "$status"
