#!/usr/bin/env bash
# The trainer, sampler and recipe tests against the lowest transformers release class-hf supports (the floor in
# pyproject.toml), in a second virtual environment (.venv-floor) beside the main one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
FLOOR=$(sed -n 's/^ *"transformers>=\([0-9.]*\)".*/\1/p' pyproject.toml)
if [ -z "$FLOOR" ]; then echo "[test_floor] no transformers floor found in pyproject.toml" >&2; exit 1; fi
VENV=.venv-floor
if [ ! -x "$VENV/bin/python" ]; then
  echo "[test_floor] creating $VENV with transformers==$FLOOR"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
constraints=$(mktemp)
printf 'torch==%s\ntransformers==%s\n' "$TORCH_VERSION" "$FLOOR" > "$constraints"
"$VENV/bin/python" -m pip install -q -c "$constraints" -e ".[dev]"
rm -f "$constraints"
"$VENV/bin/python" -c "import transformers; print('[test_floor] transformers', transformers.__version__)"
exec "$VENV/bin/python" -m pytest -q tests/test_trainer.py tests/test_plan.py tests/test_sampler.py tests/test_recipes.py \
  tests/test_distributed.py "$@"
