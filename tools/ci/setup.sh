#!/usr/bin/env bash
# What the tests need beyond the Swift toolchain, pip and apt: Debian's chromium for the report's
# headless-browser test, and Open MPI for the MPI tests (tools/ci/mpi-test.sh). Idempotent; .ci/run
# and the README's test command run it first.
# (Python 3 with pip is on the machine already; assets are fetched by the tests themselves.)
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/ci/install-chromium.sh
bash tools/ci/install-mpi.sh
