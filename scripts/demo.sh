#!/usr/bin/env bash
# The main job on a fresh machine: install into .venv, render the embedded default scene
# if it is missing (Blender/Cycles on the CPU), train the field, render the test views,
# score the benchmark; then the artist's loop headless in Blender through the add-on
# (engine started by the add-on, strokes painted, mesh imported): runs/default/blender/.
# Extra arguments go to `isrf demo` (e.g. --device cuda, --set train.steps=500).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/isrf demo "$@"
device=cpu
for argument in "$@"; do [[ "$argument" == cuda || "$argument" == --device=cuda ]] && device=cuda; done
BLENDER_USER_RESOURCES="$PWD/runs/default/blender/user" \
    .venv/bin/python scripts/blender_demo.py --device "$device"
