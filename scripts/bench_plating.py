"""Plating over life, judged per cycle on generated stores: event precision/recall/F1 against
PyBaMM's (margin below 0 V), the lowest margin's and the plated lithium's errors, and the cost per
cell-cycle, for each choice of the core (plating itself, or the plating kinetics integrated after
it), of its parameters (nominal cell / the store's truth table) and
of each cycle's starting state (coulomb count / the cycle's own voltage read as an OCV).

    .venv/bin/python scripts/bench_plating.py --store S [S ...] [--calib-cycles 8]
        [--coupled true false] [--params nominal truth] [--start coulomb ocv] [--every 1 10]
        [--core JSON] [--out reports/bench_plating.json]

``--every N``: the core on every N-th cycle only, the plated lithium between interpolated
(``plating_over_life``'s ``every``, the life evaluation's ``plating_every``): events are judged
on the cycles run, the plated lithium on every cycle.

Stores: ``packtwin generate`` with ``cycle_series: true`` (configs/generate/plating-short.yaml,
plating-edge.yaml). The life twin (lost lithium, SEI) is calibrated as ``python -m
packtwin.eval.life`` does by default (scenario 0, the first half of the cells, cycles <=
``--calib-cycles``) and run live; the plating estimate reads only each cycle's V/I/T and that
life state.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", nargs="+", required=True)
    ap.add_argument("--calib-cycles", type=int, default=8)
    ap.add_argument("--coupled", nargs="+", choices=("false", "true"), default=["false", "true"],
                    help="the core plates itself (true) or the plating kinetics are integrated "
                         "after it (false); default both")
    ap.add_argument("--params", nargs="+", choices=("nominal", "truth"),
                    default=["nominal", "truth"], help="the core's parameters; default both")
    ap.add_argument("--start", nargs="+", choices=("coulomb", "ocv"), default=["coulomb", "ocv"],
                    help="each cycle's starting state; default both")
    ap.add_argument("--every", nargs="+", type=int, default=[1],
                    help="the core on every N-th cycle only (default 1: every cycle)")
    ap.add_argument("--core", type=json.loads, default={},
                    help="CoreConfig overrides of both cores, JSON (e.g. '{\"n_x_n\": 5, "
                         "\"n_x_s\": 3, \"n_x_p\": 5}': the stores' life mesh)")
    ap.add_argument("--out", default="reports/bench_plating.json")
    args = ap.parse_args(argv)

    from packtwin.data import store as storemod
    from packtwin.eval import plating_life
    from packtwin.physics.core import CoreConfig
    from packtwin.physics.life_pack import calibrate_pack, track_pack

    rows = []
    for path in args.store:
        ds = storemod.open_store(path).load()
        cells = list(range(max(1, ds.sizes["cell"] // 2)))
        live = track_pack(ds, calibrate_pack(ds, [0], cells, upto_cycle=args.calib_cycles))
        for coupled, params, start, every in itertools.product(
                [c == "true" for c in args.coupled], args.params, args.start, args.every):
            t0 = time.process_time()
            est, cost = plating_life.estimate_store(ds, live, params=params, start=start,
                                                    config=CoreConfig(**{**args.core,
                                                                         "plating": coupled}),
                                                    every=every)
            cost["cpu_seconds"] = time.process_time() - t0
            judged = plating_life.judge(ds, est, f"store {path!r}")
            rows.append({"store": path, "params": params, "start": start, "every": every,
                         "core_plates": coupled, "cost": cost, **judged})
            p = judged["pooled"]
            print(f"{Path(path).name} core_plates={coupled} params={params} start={start} "
                  f"every={every}: "
                  f"F1 {p['f1']:.3f} "
                  f"(tp {p['tp']:.0f} fp {p['fp']:.0f} fn {p['fn']:.0f} tn {p['tn']:.0f}), "
                  f"margin MAE {p['margin_min_mae_mv']:.2f} mV, plated MAE "
                  f"{p['plated_lithium_mae']:.1f} of {p['plated_lithium_true_mean']:.1f} "
                  f"mol/m3, {cost['seconds_per_cell_cycle']:.3f} s/cell-cycle", flush=True)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load_avg_1min_at_end": os.getloadavg()[0]},
           "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
