#!/usr/bin/env bash
# Set everything up, then run the full test suite. Fails when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the browser test (tests/test_serve_browser.py) drives Debian's Chromium: installed here, where apt is (CI: root),
# not in setup.sh, so the main job's set-up does not pay for it
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "test.sh: could not install chromium" >&2
fi
# Real photos and videos (issue 14: `mocha data media`; issue 17: tests/test_track_vtest.py): opencv-doc's examples
# into .mocha-cache/media/ (ignored by git). Optional: skipped with MOCHA_MEDIA=0, without apt, or offline.
bash scripts/fetch_media.sh
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check src tests
# --basetemp: this checkout's own scratch folder (cleared at start), not the shared /tmp/pytest-of-<user>/, where
# a second pytest session of the same user (another clone's CI run) prunes the numbered folders of this one
.venv/bin/python -m pytest --durations=25 --basetemp=.pytest-tmp "$@"  # the 25 slowest tests in every CI log
