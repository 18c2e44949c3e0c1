#!/usr/bin/env bash
# Create the Python environment that runs the scripts in tools/reference/.
#
#   tools/reference/setup.sh [VENV_DIR]        (default: /opt/refenv, or $REFENV)
#
# torch: the CPU wheel from $WHEELS_DIR (default /opt/wheels) when one matches this Python,
# otherwise `pip install torch==$TORCH_VERSION` from PyPI (falls back to the newest torch if
# that exact version is not available). Everything else is pinned in requirements.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-${REFENV:-/opt/refenv}}"
PYTHON="${PYTHON:-python3}"
WHEELS_DIR="${WHEELS_DIR:-/opt/wheels}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip

if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch already installed: $("$PY" -c 'import torch; print(torch.__version__)')"
else
    PYTAG="cp$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
    WHEEL="$(ls "$WHEELS_DIR"/torch-"$TORCH_VERSION"*-"$PYTAG"-"$PYTAG"-*linux*_x86_64.whl 2>/dev/null | head -n1 || true)"
    [ -n "$WHEEL" ] || WHEEL="$(ls "$WHEELS_DIR"/torch-*-"$PYTAG"-"$PYTAG"-*linux*_x86_64.whl 2>/dev/null | head -n1 || true)"
    if [ -n "$WHEEL" ]; then
        echo "installing torch from $WHEEL"
        "$PY" -m pip install "$WHEEL"
    else
        echo "no local torch wheel for $PYTAG in $WHEELS_DIR; installing torch==$TORCH_VERSION from PyPI"
        "$PY" -m pip install "torch==$TORCH_VERSION" || {
            echo "torch==$TORCH_VERSION unavailable; installing the newest torch (fixtures may differ in the last bits)"
            "$PY" -m pip install torch
        }
    fi
fi

"$PY" -m pip install -r "$HERE/requirements.txt"
"$PY" -c 'import torch, transformers, safetensors, tiktoken, numpy
print("ok: torch", torch.__version__, "| transformers", transformers.__version__,
      "| safetensors", safetensors.__version__, "| tiktoken", tiktoken.__version__, "| numpy", numpy.__version__)'
