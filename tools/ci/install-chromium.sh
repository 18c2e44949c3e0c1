#!/usr/bin/env bash
# Installs Debian's chromium for the report's headless-browser test (ReportBrowserTests) when no
# chromium is on PATH; tools/ci/setup.sh runs it. Needs apt-get and root (or password-less sudo).
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
bash "$(dirname "$0")/apt-install.sh" install-chromium chromium
command -v chromium >/dev/null
