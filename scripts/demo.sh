#!/usr/bin/env bash
# Set up (if needed), build the sample scene and texture it with the default model.
# Writes out/demo/: sample.blend, sample_textured.blend, textures/, depth.png and preview.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
