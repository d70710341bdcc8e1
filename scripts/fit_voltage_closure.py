"""Fit the subspace filter's learned voltage closure on development draws of the observer pack.

    python scripts/fit_voltage_closure.py                       # dev draws 13, 14, 21; val 22
    python scripts/fit_voltage_closure.py --train data/a.zarr data/b.zarr --val data/c.zarr \\
        --out data/voltage_closure.pt --report reports/voltage_closure.json

The stores are ``packtwin generate --config configs/generate/observer-check.yaml --seed S
--store data/observer-check-sS.zarr`` (~2.5 min each on one core): the observer pack's five
conditions, other cell draws. The held-out draws the observers are judged on (15-20,
scripts/observer_seeds.py) are not read here. ``--exclude-scenarios``: leave conditions out of
the fit (e.g. ``2`` for 3C, ``4`` for -10 degC) to judge the closure on a condition it never saw.

What it does (:mod:`packtwin.eval.closure_data`, :mod:`packtwin.physics.voltage_closure`): the
core (each cell's true parameters, evaluate's observer core unless ``--core``) runs open loop
over every cycle from the DFN's state at its start; the closure is fitted to the measured minus
the core's voltage from the core's own state, chosen on the validation store. The report gives
the core's voltage RMSE per condition and store before and after the closure.
Use it: evaluate's ``observer_subspace: {closure: data/voltage_closure.pt}``, or
``scripts/observer_seeds.py --subspace '{"closure": "data/voltage_closure.pt"}'``.
Cost: ~1 CPU-min per store for the trajectories, ~1 min for the fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packtwin.data.store import open_store  # noqa: E402
from packtwin.eval.closure_data import core_residuals  # noqa: E402
from packtwin.eval.observer_predict import core_config  # noqa: E402
from packtwin.physics.voltage_closure import ClosureInfo, fit_closure  # noqa: E402

DEV_TRAIN = [f"data/observer-check-s{s}.zarr" for s in (13, 14, 21)]
DEV_VAL = ["data/observer-check-s22.zarr"]


def _load(paths: list[str], config, exclude: set[int]):
    parts = {}
    for p in paths:
        if not Path(p).exists():
            raise SystemExit(f"{p}: no such store; make it with: packtwin generate --config "
                             f"configs/generate/observer-check.yaml --seed S --store {p}")
        x, r, where = core_residuals(open_store(p), config)
        parts[p] = (x, r, where)
    keep = {p: torch.as_tensor(~np.isin(w, list(exclude))) for p, (_, _, w) in parts.items()}
    x = torch.cat([parts[p][0][keep[p]] for p in paths])
    r = torch.cat([parts[p][1][keep[p]] for p in paths])
    return parts, x, r


def _table(parts: dict, closure) -> dict:
    out = {}
    with torch.no_grad():
        for p, (x, r, where) in parts.items():
            after = r - closure(x)
            rows = {}
            for s in np.unique(where):
                m = torch.as_tensor(where == s)
                rows[int(s)] = {"before_mV": 1e3 * float(r[m].pow(2).mean().sqrt()),
                                "after_mV": 1e3 * float(after[m].pow(2).mean().sqrt())}
            out[p] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", nargs="+", default=DEV_TRAIN)
    ap.add_argument("--val", nargs="+", default=DEV_VAL)
    ap.add_argument("--core", type=json.loads, default=None,
                    help="CoreConfig overrides of evaluate's observer core (JSON)")
    ap.add_argument("--exclude-scenarios", type=int, nargs="*", default=[])
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/voltage_closure.pt")
    ap.add_argument("--report", default="reports/voltage_closure.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = core_config(a.core)
    t0 = time.time()
    exclude = set(a.exclude_scenarios)
    train_parts, x, r = _load(a.train, config, exclude)
    val_parts, xv, rv = _load(a.val, config, exclude)
    t_data = time.time() - t0
    info = ClosureInfo(config.n_x_n, config.n_x_p, config.plating, list(a.train))
    closure = fit_closure(x, r, info, hidden=a.hidden, steps=a.steps, seed=a.seed, val=(xv, rv))
    closure.save(a.out)
    report = {"command": " ".join(["python scripts/fit_voltage_closure.py"] + (argv or sys.argv[1:])),
              "core": asdict(config), "excluded_scenarios": sorted(exclude),
              "info": asdict(closure.info), "data_s": t_data, "total_s": time.time() - t0,
              "train": _table(train_parts, closure), "val": _table(val_parts, closure),
              "out": a.out}
    Path(a.report).parent.mkdir(parents=True, exist_ok=True)
    Path(a.report).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("info", "train", "val")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
