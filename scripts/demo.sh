#!/usr/bin/env bash
# README main job: install, then generate a small pack, train the twin, evaluate, and print the app command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/packtwin demo "$@"
