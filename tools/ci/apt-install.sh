#!/usr/bin/env bash
# apt-install.sh WHO PACKAGE…: installs Debian packages for tools/ci's install scripts (WHO names
# the caller in its messages). Needs apt-get and root (or password-less sudo).
set -euo pipefail
who="$1"; shift
if ! command -v apt-get >/dev/null; then
    echo "$who: no apt-get here; install $* with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "$who: needs root (or password-less sudo) to run apt-get install $*" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq "$@" >&2
