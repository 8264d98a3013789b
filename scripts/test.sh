#!/usr/bin/env bash
# Install everything, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests
mypy
python -m pytest -n 2 --durations=15 "$@"
# Break each core CT-SGAN mechanism on purpose; the tests above must notice every break.
python scripts/mutation_check.py
