#!/usr/bin/env bash
# Create .venv (if missing) and install packtwin with every extra. Torch goes first so that no
# dependency's bare "torch" requirement pulls a build we did not choose.
#
# PACKTWIN_TORCH selects the torch build:
#   cpu  (default) the CPU build from PyTorch's CPU wheel index (~200 MB instead of several GB of CUDA
#        libraries on a stock Linux machine). Where that index cannot be reached, pip gives up on it
#        at once (--timeout/--retries below) and takes torch==2.13.0 from the configured indexes.
#   cuda the default PyPI build (CUDA on Linux x86_64): for GPU machines.
#   skip keep whatever torch the environment already has.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=${PACKTWIN_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
case "${PACKTWIN_TORCH:-cpu}" in
  cpu)  python -m pip install -q --timeout 10 --retries 0 --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" ;;
  cuda) python -m pip install -q "torch==$TORCH_VERSION" ;;
  skip) ;;
  *) echo "bootstrap: PACKTWIN_TORCH must be cpu, cuda or skip (found '${PACKTWIN_TORCH}')" >&2; exit 2 ;;
esac
python -m pip install -q -e ".[all]"
