#!/bin/sh
# Install Tuneboard into a virtualenv: the one install step `make setup`, `make setup-dev` (so CI) and the
# Dockerfile share, so CI runs the image's install steps.
#
#   scripts/install.sh [--dev]         # VENV (default .venv), PY (default python3)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/install.sh   # the CPU build of torch
#
# torch is pinned in requirements.txt. From PyPI, Linux x86_64 wheels of torch are the CUDA build (the GPU
# image); TORCH_INDEX_URL names another index for torch alone (the CPU image installs the small CPU build).
set -eu
VENV="${VENV:-.venv}"
PY="${PY:-python3}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  torch_pin="$(grep -E '^torch==' "$HERE/requirements.txt" | cut -d' ' -f1)"
  "$VENV/bin/pip" install -q --index-url "$TORCH_INDEX_URL" "$torch_pin"
fi
"$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
if [ "${1:-}" = "--dev" ]; then
  "$VENV/bin/pip" install -q -r "$HERE/requirements-dev.txt"
fi
