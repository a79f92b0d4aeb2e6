#!/usr/bin/env bash
# Set everything up, then run the main job: the whole MOCHA recipe on the embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mocha demo "$@"
