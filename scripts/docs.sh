#!/usr/bin/env bash
# Builds the documentation site (mkdocs-material + mkdocstrings) into site/, with warnings as errors; CI runs it
# after the tests. Installs the `docs` extra into .venv first (scripts/bootstrap.sh, which keeps torch).
#
#   bash scripts/docs.sh           # build site/ (open site/index.html)
#   bash scripts/docs.sh serve     # live preview on http://127.0.0.1:8000 while editing docs/
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${EXTRAS:-dev,evaluate}"
case ",$extras," in *,docs,*) ;; *) extras="$extras,docs" ;; esac
EXTRAS="$extras" bash scripts/bootstrap.sh
export NO_MKDOCS_2_WARNING=1  # mkdocs-material's banner about its successor
if [ "${1:-}" = "serve" ]; then
  shift
  exec .venv/bin/mkdocs serve --strict "$@"
fi
exec .venv/bin/mkdocs build --strict --site-dir site "$@"
