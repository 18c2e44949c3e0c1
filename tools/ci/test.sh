#!/usr/bin/env bash
# Every test: the setup (chromium), the package's unit and integration targets, then the fuzz
# package (tools/fuzz) with its smoke campaign. The README's test command; .ci/run runs it.
#   Only the fast unit tests (no network, no downloads, no browser):
#     swift test -c release --skip Integration
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tools/ci/setup.sh
swift test -c release
swift test -c release --package-path tools/fuzz
