#!/usr/bin/env bash
# Create a venv (Python 3.11, as Blender 4.2-5.0 embed) with the real Blender (bpy wheel), the
# CPU build of torch and the diffusion stack. Safe to run again: pip installs only what is missing.
#   scripts/setup.sh                     -> .venv with bpy 5.0.1 (requirements.txt)
#   scripts/setup.sh .venv-bpy42 4.2.23  -> another venv with Blender 4.2 LTS instead
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
BPY=${2:-}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (the bpy wheel is built for it); set PYTHON=..." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
# torch first and pinned, so nothing pulls the CUDA build.
"${pip[@]}" torch==2.13.0
if [ -n "$BPY" ]; then
  requirements=$(mktemp)
  grep -v '^bpy' requirements.txt >"$requirements"
  "${pip[@]}" "bpy==$BPY" -r "$requirements"
  rm -f "$requirements"
else
  "${pip[@]}" -r requirements.txt
fi
