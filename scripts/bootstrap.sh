#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with uv.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
fi
uv_cmd=(uv)
command -v uv >/dev/null 2>&1 || uv_cmd=(python3 -m uv)
[ -x .venv/bin/python ] || "${uv_cmd[@]}" venv --quiet --python 3.11 .venv
"${uv_cmd[@]}" pip install --quiet --python .venv/bin/python -e '.[dev]'
