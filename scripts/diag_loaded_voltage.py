"""The loaded prior's curve: the reduced core's loaded terminal voltage against SOC at one store
sample, the curve ``invert_loaded`` bisects (packtwin/physics/loaded_inversion.py; issue #9).

    python scripts/diag_loaded_voltage.py --store data/observer-check-s14.zarr \
        --scenario 4 --snapshot 0 --sample 60 --out reports/diag_loaded_voltage_s14.json

For every cell of the store at that sample (its measured V, I, T, each cell's TRUE parameters
as in evaluate's observer rows): the true SOC, the loaded and OCV priors' SOC, and the loaded
voltage on a SOC grid (``--lo``..``--hi``, ``--n`` points). Counts the grid steps where the curve
goes down (a discharge's loaded voltage should rise with SOC): where it is not monotonic the
bisection may return any of several crossings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin import schema  # noqa: E402
from packtwin.data import store  # noqa: E402
from packtwin.eval.observer_predict import oracle_params  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.loaded_inversion import loaded_voltage, start_stoichiometry  # noqa: E402
from packtwin.physics.observer_stream import cell_lines, cell_soc_window  # noqa: E402


def curve(path: str, scenario: int, snapshot: int, sample: int, grid: np.ndarray) -> dict:
    truth = store.open_store(path).load()
    cells = list(range(truth.sizes[schema.CELL]))
    core = ReducedCore(oracle_params(truth, cells))
    lo, hi = cell_soc_window(core)
    line = cell_lines(core)
    sel = {schema.SCENARIO: scenario, schema.SNAPSHOT: snapshot, schema.TIME: sample}
    V, I, T = (torch.as_tensor(truth[v].isel(sel).values, dtype=torch.float64)
               for v in ("voltage", "current", "temperature"))
    with torch.no_grad():
        prior = {p: ((start_stoichiometry(core, V, I, T, line, p, lo, hi) - lo) / (hi - lo))
                 .numpy() for p in ("loaded", "ocv")}
        volts = np.stack([loaded_voltage(core, lo + (hi - lo) * float(f), I, T, lo, hi).numpy()
                          for f in grid], axis=1)  # [cell, grid]
    down = np.diff(volts, axis=1) < 0
    return {"store": path, "scenario": scenario, "snapshot": snapshot, "sample": sample,
            "time_s": float(truth[schema.TIME].values[sample]),
            "soc_grid": grid.tolist(),
            "cells": [{"cell": c, "voltage_v": float(V[c]), "current_a": float(I[c]),
                       "temperature_c": float(T[c]) - 273.15,
                       "true_soc": float(truth["soc"].isel(sel).values[c]),
                       "loaded_prior_soc": float(prior["loaded"][c]),
                       "ocv_prior_soc": float(prior["ocv"][c]),
                       "loaded_voltage_v": volts[c].tolist(),
                       "steps_going_down": int(down[c].sum()),
                       "largest_drop_mv": float(1e3 * max(0.0, -np.diff(volts[c]).min()))}
                      for c in cells]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--scenario", type=int, default=4)
    ap.add_argument("--snapshot", type=int, default=0)
    ap.add_argument("--sample", type=int, default=60)
    ap.add_argument("--lo", type=float, default=0.70)
    ap.add_argument("--hi", type=float, default=0.90)
    ap.add_argument("--n", type=int, default=41)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    res = curve(args.store, args.scenario, args.snapshot, args.sample,
                np.linspace(args.lo, args.hi, args.n))
    res["command"] = " ".join(["scripts/diag_loaded_voltage.py"] + (argv or sys.argv[1:]))
    for c in res["cells"]:
        print(f"cell {c['cell']}: V {c['voltage_v']:.4f} V, I {c['current_a']:.2f} A, "
              f"T {c['temperature_c']:.1f} C; true SOC {c['true_soc']:.3f}, loaded prior "
              f"{c['loaded_prior_soc']:.3f}, OCV prior {c['ocv_prior_soc']:.3f}; loaded voltage "
              f"goes down in {c['steps_going_down']} of {len(res['soc_grid']) - 1} steps "
              f"(largest drop {c['largest_drop_mv']:.0f} mV)")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
