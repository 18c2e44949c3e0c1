#!/usr/bin/env bash
# Fuzzes every parser a user's file reaches (docs/DESIGN.md §8; tools/fuzz/README.md).
#
#   tools/fuzz/fuzz.sh                      mutation fuzzing: 10,000 inputs per target, each input
#                                           in a watched child process (traps, hangs > 5 s and
#                                           oversized allocations are caught and saved)
#   tools/fuzz/fuzz.sh --inputs 200000 --jobs 2 --targets gguf,safetensors
#   tools/fuzz/fuzz.sh --coverage [RUNS]    then coverage-guided fuzzing with libFuzzer
#                                           (tools/fuzz/libfuzzer.sh; Linux toolchains)
#
# Any other options go to `myopia-fuzz run` (see `myopia-fuzz --help`). Findings and summary.json
# go to .build/fuzz (or --out). Exit status 0 when nothing was found.
set -euo pipefail
cd "$(dirname "$0")/../.."

coverage=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --coverage)
            coverage="${2:-10000}"
            if [[ "${2:-}" =~ ^[0-9]+$ ]]; then shift; fi ;;
        *) args+=("$1") ;;
    esac
    shift
done

scratch="${MYOPIA_FUZZ_SCRATCH:-tools/fuzz/.build}"
swift build -c release --package-path tools/fuzz --scratch-path "$scratch" --product myopia-fuzz >&2
status=0
"$scratch/release/myopia-fuzz" run "${args[@]}" || status=$?

if [ -n "$coverage" ]; then
    tools/fuzz/libfuzzer.sh "$coverage" || status=$?
fi
exit "$status"
