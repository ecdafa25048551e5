#!/usr/bin/env bash
# Install everything, then run Attune's main job on the embedded stack until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/attune dev "$@"
