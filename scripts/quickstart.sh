#!/usr/bin/env bash
# Install everything, then run the default job on built-in phantom data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ctsgan quickstart --out "${1:-quickstart-out}"
