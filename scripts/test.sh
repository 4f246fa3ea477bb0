#!/usr/bin/env bash
# The test suite on a fresh machine: install into .venv, run pytest.
# Extra arguments go to pytest (e.g. -k loaders, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
