#!/usr/bin/env bash
# Create .venv (if missing) and install packtwin with every extra. Torch's CPU build goes first so
# no multi-GB CUDA build is pulled by a dependency's "torch" requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[all]"
