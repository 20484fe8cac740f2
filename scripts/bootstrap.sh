#!/usr/bin/env bash
# Creates .venv and installs class-hf into it. Safe to run again: it only reinstalls when pyproject.toml changed.
#
# torch is installed first, so pip never replaces it with another build:
#   - if .venv already has torch (e.g. a GPU user installed their CUDA build there), it is kept;
#   - otherwise TORCH_SPEC (default "torch==2.13.0") is installed, with TORCH_INDEX_URL as index when set
#     (e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU build on a machine whose pip would
#     otherwise pick the CUDA build); on a machine with nvidia-smi the default is plain "torch".
# Extras: EXTRAS="dev,evaluate,minilm" (default "dev,evaluate": the test suite also checks the `evaluate` module).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev,evaluate}"

if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python

if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ -z "${TORCH_SPEC:-}" ]; then
    if command -v nvidia-smi >/dev/null 2>&1; then TORCH_SPEC="torch"; else TORCH_SPEC="torch==2.13.0"; fi
  fi
  echo "[bootstrap] installing $TORCH_SPEC first${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
  "$PY" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
fi
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")

stamp=".venv/.class_hf_installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16) $EXTRAS $TORCH_VERSION"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing class-hf[$EXTRAS] (keeping torch $TORCH_VERSION)"
  constraints=$(mktemp)
  echo "torch==$TORCH_VERSION" > "$constraints"
  "$PY" -m pip install -q -c "$constraints" -e ".[$EXTRAS]"
  rm -f "$constraints"
  echo "$want" > "$stamp"
fi
