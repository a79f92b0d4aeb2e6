#!/usr/bin/env bash
# Create (or reuse) .venv and install the pinned dependencies and the package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.mocha-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first: the pinned CUDA-capable build that also runs on the CPU
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e ".[dev]"
  echo "$want" > "$stamp"
fi
# A real test video (issue 17: `mocha track` on vtest.avi, tests/test_track_vtest.py): opencv-doc's pedestrian clip
# into .mocha-cache/media/ (ignored by git). Optional: skipped with MOCHA_MEDIA=0, without apt, or offline.
media=.mocha-cache/media
if [ "${MOCHA_MEDIA:-1}" != "0" ] && [ ! -f "$media/vtest.avi" ] && command -v apt-get >/dev/null 2>&1 \
   && command -v dpkg >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download -q opencv-doc >/dev/null 2>&1) && dpkg -x "$tmp"/opencv-doc_*.deb "$tmp/x"; then
    found=$(find "$tmp/x" -name vtest.avi | head -n 1)
    if [ -n "$found" ]; then mkdir -p "$media" && cp "$found" "$media/vtest.avi"; fi
  fi
  rm -rf "$tmp"
  [ -f "$media/vtest.avi" ] || echo "setup: opencv-doc's vtest.avi not fetched (optional; its test is skipped)" >&2
fi
