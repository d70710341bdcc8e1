"""How much the identification window decides the identified-parameter observer (issue 9).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diag_identify_window.py --seed 14 \
        --window-s 100000 --out /tmp/identw/s14_W100000

``packtwin evaluate`` with configs/experiments/observer-check_loaded.yaml (from 600 s, carry,
``loaded_window``) on data/observer-check-sS.zarr, observer ``subspace_identified`` only, with
each cell's parameters identified on the first ``--window-s`` seconds of its 25 degC 1C cycle
instead of :data:`packtwin.eval.observer_identify.WINDOW_S` (the whole cycle since stop 38; 1800 s before).
The window is evaluate's ``observer_identify_window_s`` key; this script only fixes the rest.
Development draws only (12-14) until the
window is chosen; cost on the 2-core machine: ~5 CPU-min per pack at 1800 s, ~25 at the whole
cycle (its ~1000 samples per objective evaluation).
"""

from __future__ import annotations

import argparse
import sys

from packtwin.cli import main as packtwin
from packtwin.eval import observer_identify


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, required=True, help="check-pack draw (store -sS)")
    p.add_argument("--window-s", type=float, default=observer_identify.WINDOW_S)
    p.add_argument("--out", required=True, help="evaluate's output folder")
    args = p.parse_args(argv)
    store = ("data/observer-check.zarr" if args.seed == 12
             else f"data/observer-check-s{args.seed}.zarr")
    return packtwin(["evaluate", "--config", "configs/experiments/observer-check_loaded.yaml",
                     "--store", store, "--output", args.out,
                     "--observers", '["subspace_identified"]', "--plots", "false",
                     "--progress", "false",
                     "--observer_identify_window_s", observer_identify.window_arg(args.window_s),
                     "--note",
                     f"subspace_identified, identification window {args.window_s:g} s; "
                     f"loaded start; observer-check draw {args.seed}"])


if __name__ == "__main__":
    sys.exit(main())
