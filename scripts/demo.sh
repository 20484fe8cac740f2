#!/usr/bin/env bash
# The main job: installs what it needs (scripts/bootstrap.sh), then prepares the bundled ChEBI-20 sample, scores
# difficulty, trains the dual encoder with CLASS for a few minutes on CPU, evaluates on the test split and prints
# the metrics. Outputs (checkpoint, metrics JSON, plots, model card) go to outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python recipes/dual_encoder.py --config recipes/configs/demo.yaml "$@"
