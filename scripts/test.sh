#!/usr/bin/env bash
# Install everything, then run the linters and the whole test suite (unit,
# integration and end-to-end, on real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
exec .venv/bin/pytest "$@"
