#!/usr/bin/env bash
# The GPU check in one command, for a session whose task is lent a GPU machine (see docs/gpu.md). Device tool call:
#
#   run(command="bash scripts/gpu_check.sh", carry=["gpu_wheels"], timeout_s=600)
#
# after `bash scripts/fetch_gpu_wheels.sh` here (the machine has no network). It installs the carried wheels (what the
# machine lacks: datasets, rdkit, dill, multiprocess; xxhash) into a folder on PYTHONPATH, installs class-hf without
# dependencies over the machine's torch/transformers/PyG, and runs benchmarks/gpu_check.py within the budget. The
# JSON, the Markdown table and this log go to $OUT (the device tool's folder that comes back), or to
# benchmarks/results when OUT is unset. Extra arguments go to gpu_check.py (e.g. `--compare_backbones dual_encoder`).
#
# Environment: GPU_CHECK_MINUTES (whole budget, default 9, the install included), PYTHON (default python3),
# GPU_WHEELS (default gpu_wheels), GPU_SITE (where the wheels go, default .gpu_site in the checkout).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
MINUTES="${GPU_CHECK_MINUTES:-9}"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-gpu_wheels}"
SITE="${GPU_SITE:-$PWD/.gpu_site}"
RESULTS="${OUT:-benchmarks/results}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

check() {
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
  "$PY" --version
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "== installing $(ls "$WHEELS"/*.whl | wc -l) carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$WHEELS"/*.whl || { echo "error: the wheels of $WHEELS did not install"; return 2; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "== no wheels in $WHEELS/ (scripts/fetch_gpu_wheels.sh, then carry it): using what is installed"
  fi
  echo "== class-hf, without dependencies"
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || echo "(editable install failed: PYTHONPATH)"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" - <<'PYEOF' || return 3
import importlib
import importlib.metadata

found = {}
for name in ("torch", "transformers", "accelerate", "huggingface_hub", "datasets", "pyarrow", "fsspec", "dill",
             "multiprocess", "xxhash", "rdkit", "torch_geometric", "tokenizers", "numpy", "class_hf"):
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", None) or importlib.metadata.version(name)
    except Exception as error:  # a missing package is named here, before the run
        found[name] = f"MISSING ({type(error).__name__}: {error})"
print("== versions:", ", ".join(f"{k} {v}" for k, v in found.items()))
import torch

print("== cuda:", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
major = int(str(found["pyarrow"]).split(".")[0]) if found["pyarrow"][0].isdigit() else 0
if major < 24:
    print(f"warning: pyarrow {found['pyarrow']}; datasets 5.2 declares pyarrow>=24 (it ran on 23.0.1 in tests)")
missing = [k for k, v in found.items() if v.startswith("MISSING")]
if missing:
    raise SystemExit(f"error: cannot import {missing}")
PYEOF
  local left
  left=$("$PY" -c "print(round(max(0.5, $MINUTES - ($(date +%s) - $START) / 60), 2))")
  echo "== benchmarks/gpu_check.py, $left minutes left"
  "$PY" benchmarks/gpu_check.py --max-minutes "$left" --output_dir "$RESULTS" "$@"
}

mkdir -p "$RESULTS"
check "$@" 2>&1 | tee "$RESULTS/gpu_check.log"
rc=${PIPESTATUS[0]}
echo "== exit code $rc; files in $RESULTS:" && ls -l "$RESULTS"
exit "$rc"
