#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, then the whole test suite against real Blender.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
