#!/usr/bin/env bash
# Installs Debian's chromium for the report's headless-browser test (ReportBrowserTests) when no
# chromium is on PATH; tools/ci/setup.sh runs it. Needs apt-get and root (or password-less sudo).
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi
if ! command -v apt-get >/dev/null; then
    echo "install-chromium: no apt-get here; install chromium with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install-chromium: needs root (or password-less sudo) to run apt-get install chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq chromium >&2
command -v chromium >/dev/null
