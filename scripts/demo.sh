#!/usr/bin/env bash
# The main job on a fresh machine: install into .venv, render the embedded default scene
# if it is missing (Blender/Cycles on the CPU), train the field, render the test views.
# Extra arguments go to `isrf demo` (e.g. --device cuda, --set train.steps=500).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/isrf demo "$@"
