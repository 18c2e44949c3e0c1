#!/usr/bin/env bash
# Every test: the setup (chromium, Open MPI), the package's unit and integration targets, the MPI
# tests (the build with --traits MPI under mpirun -np 2 and 3), then the fuzz package (tools/fuzz)
# with its smoke campaign. The README's test command; .ci/run runs it.
#   Only the fast unit tests (no network, no downloads, no browser):
#     swift test -c release --skip Integration
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/ci/setup.sh
swift test -c release
bash tools/ci/mpi-test.sh
swift test -c release --package-path tools/fuzz
