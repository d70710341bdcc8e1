#!/usr/bin/env bash
# README test command (also what CI runs): install, then the whole suite, slow and browser tests
# included; the 30 slowest tests are listed at the end (what to trim when CI grows).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed"
fi
export MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo
set +e
.venv/bin/python -m pytest -m "slow or not slow" --durations=30 "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
exit $rc
