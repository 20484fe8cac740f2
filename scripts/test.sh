#!/usr/bin/env bash
# Installs what the tests need (see scripts/bootstrap.sh) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
