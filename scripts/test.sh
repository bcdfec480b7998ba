#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, then the whole suite against the real Blender
# 5.0 (bpy wheel), then again against Blender 4.2 LTS, the oldest version the manifest promises.
# SDT_SKIP_LTS=1 skips the second run (quicker local iterations).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== Blender 5.0 =="
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ -z "${SDT_SKIP_LTS:-}" ]; then
  echo "== Blender 4.2 LTS =="
  bash scripts/setup.sh .venv-bpy42 4.2.23
  .venv-bpy42/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
