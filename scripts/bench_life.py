"""The twin over life: cells aged with PyBaMM, the life estimator judged on unseen cells, an unseen
temperature and cycles beyond the calibration window, against a per-cell sqrt(cycle) fit.

    .venv/bin/python scripts/bench_life.py [--cycles 300] [--cells 4] [--temps 25 35 55]
        [--train-temps 25 35] [--train-cells 2] [--calib-cycles 100] [--workers 2]
        [--cache data/life] [--out reports/bench_life.json] [--mesh-check] [--long 3 55 1000]

Data: the generator's default seeded cell draw (``draw_cells``, seed 0) with ``--cells`` cells in
series, each aged alone by :func:`packtwin.sim.life_reference.run_life` (1C CCCV charge, 1C
discharge, coarse DFN mesh) at every ``--temps`` ambient temperature; each run is cached as
netCDF under ``--cache`` (a rerun reuses finished runs, so a killed run resumes).

Calibration (:func:`packtwin.physics.life_state.calibrate`): only the first ``--train-cells``
cells at ``--train-temps`` and their cycles <= ``--calib-cycles``. Judged: every run, cycles
beyond ``--calib-cycles``, grouped as seen cells at seen temperatures, unseen cells at seen
temperatures, and the unseen temperature (all cells). The estimator reads only the measured
V/I/T of each run (capacity from its coulomb count); the baseline fits each target with
a + b sqrt(cycle) on that run's own truth for cycles <= ``--calib-cycles`` and extrapolates.

``--mesh-check`` ages cell 0 for 20 cycles at 40 C on the coarse mesh and on the generator's
default mesh and reports the differences (the justification of the coarse mesh).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _one_run(task: dict) -> dict:
    from packtwin.sim.config import GenerateConfig, PackConfig
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.life_reference import run_life

    path = Path(task["path"])
    if path.exists():
        import xarray as xr

        with xr.open_dataset(path) as old:
            return {"path": str(path), "seconds": old.attrs.get("solve_cpu_seconds"),
                    "cached": True}
    cfg = GenerateConfig(pack=PackConfig(n_series=task["n_cells"], n_parallel=1))
    cells, nominal = draw_cells(cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    ds = run_life(cells[task["cell"]], nominal, task["cycles"], task["temp"], cell=task["cell"])
    # CPU time: the machine is shared, so wall time says more about the load than the cost.
    seconds = time.process_time() - c0
    ds.attrs["solve_cpu_seconds"] = seconds
    ds.attrs["solve_wall_seconds"] = time.perf_counter() - t0
    tmp = path.with_suffix(".tmp.nc")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)  # a killed run leaves no half-written cache entry
    return {"path": str(path), "seconds": seconds, "cached": False}


def generate(args) -> tuple[list, dict]:
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tasks = [{"path": str(cache / f"life_c{c}_T{t:g}_n{args.cycles}.nc"), "cell": c, "temp": t,
              "cycles": args.cycles, "n_cells": args.cells}
             for t in args.temps for c in range(args.cells)]
    t0 = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp

        from packtwin.sim.generate import _die_with_parent

        # Workers end with this script (a killed bench must not leave solves running).
        with mp.get_context("spawn").Pool(args.workers, initializer=_die_with_parent,
                                          initargs=(os.getpid(),)) as pool:
            done = pool.map(_one_run, tasks, chunksize=1)
    else:
        done = [_one_run(t) for t in tasks]
    cpu = [d["seconds"] for d in done if d["seconds"] is not None]
    cost = {"wall_seconds_this_call": time.perf_counter() - t0, "workers": args.workers,
            "runs_solved": sum(not d["cached"] for d in done),
            "runs_cached": sum(d["cached"] for d in done)}
    if cpu:
        cost["cpu_seconds_per_cell_cycle"] = float(np.sum(cpu) / (len(cpu) * args.cycles))
        cost["cpu_seconds_total"] = float(np.sum(cpu))
    return tasks, cost


def mesh_check() -> dict:
    from packtwin.sim.config import GenerateConfig, ModelConfig
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.life_reference import coarse_model_config, run_life

    cells, nominal = draw_cells(GenerateConfig())
    out = {}
    for name, mc in (("coarse", coarse_model_config()), ("default", ModelConfig())):
        c0 = time.process_time()
        ds = run_life(cells[0], nominal, 20, 40.0, model_cfg=mc, chunk=20)
        out[name] = {"cpu_seconds": time.process_time() - c0, "var_pts": mc.var_pts,
                     **{v: ds[v].values.ravel() for v in
                        ("sei_thickness_end", "lli", "capacity")}}
    c, d = out["coarse"], out["default"]
    growth = float(d["sei_thickness_end"][-1] - d["sei_thickness_end"][0])
    return {
        "conditions": "cell 0 of the default draw, 20 cycles 1C/1C CCCV at 40 C",
        "coarse_var_pts": c["var_pts"], "default_var_pts": d["var_pts"],
        "sei_max_abs_diff_nm": float(np.abs(c["sei_thickness_end"] - d["sei_thickness_end"]).max()),
        "sei_growth_nm": growth,
        "lli_max_abs_diff_points": float(np.abs(c["lli"] - d["lli"]).max()),
        "capacity_max_rel_diff_pct": float(100 * np.abs(c["capacity"] / d["capacity"] - 1).max()),
        "cpu_seconds_coarse": c["cpu_seconds"], "cpu_seconds_default": d["cpu_seconds"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=300)
    p.add_argument("--cells", type=int, default=4)
    p.add_argument("--temps", type=float, nargs="+", default=[25.0, 35.0, 55.0])
    p.add_argument("--train-temps", type=float, nargs="+", default=[25.0, 35.0])
    p.add_argument("--train-cells", type=int, default=2)
    p.add_argument("--calib-cycles", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", default="data/life")
    p.add_argument("--out", default="reports/bench_life.json")
    p.add_argument("--mesh-check", action="store_true")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--long", nargs=3, metavar=("CELL", "TEMP", "CYCLES"), default=None,
                   help="also age one cell this many cycles and judge it (e.g. 3 55 1000)")
    args = p.parse_args(argv)
    report = {"machine": f"{platform.node()} {os.cpu_count()} cores, shared with other jobs",
              "python": sys.version.split()[0], "args": vars(args)}
    tasks, cost = generate(args)
    report["generation"] = cost
    if args.generate_only:
        print(json.dumps(report, indent=1))
        return 0
    if args.mesh_check:
        report["mesh_check"] = mesh_check()
    report.update(evaluate(tasks, args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("generation", "calibration", "groups", "long_run")},
                     indent=1))
    return 0


def run_metrics(truth, est: dict, judged: np.ndarray) -> dict:
    """Errors of one run over the judged cycles (SEI growth from the initial 5 nm)."""
    from packtwin.eval.life import run_metrics as metrics

    return metrics(truth, est, judged, 5.0)


def judge_run(t: dict, ds, model, args, train_cells: set, train_temps: set) -> dict:
    """The twin (live and frozen after the calibration window) and the baseline on one run."""
    from packtwin.eval.life import sqrt_fit
    from packtwin.physics.life_twin import track

    cycles = ds["cycle"].values
    truth = {v: ds[v].values.ravel() for v in ("sei_thickness_end", "lli", "capacity")}
    judged = cycles > args.calib_cycles
    live = track(ds, model)
    forecast = track(ds, model, update_until=args.calib_cycles)

    def pick(est):
        return {"sei": est["sei_thickness_est"].values.ravel(),
                "lli": est["lli_est"].values.ravel(),
                "capacity": est["capacity_est"].values.ravel()}

    methods = {
        "twin": pick(live),
        "twin_forecast": pick(forecast),
        "sqrt_fit": {k: sqrt_fit(cycles, truth[v], args.calib_cycles) for k, v in
                     (("sei", "sei_thickness_end"), ("lli", "lli"), ("capacity", "capacity"))},
    }
    seen_t, seen_c = t["temp"] in train_temps, t["cell"] in train_cells
    group = ("unseen_temperature" if not seen_t else
             "seen_cells_seen_temps" if seen_c else "unseen_cells_seen_temps")
    return {"cell": t["cell"], "ambient_c": t["temp"], "cycles": int(cycles[-1]), "group": group,
            "true_D": float(ds["param_sei_solvent_diffusivity"].values[0]),
            "est_D_end": float(live["sei_diffusivity_est"].values.ravel()[-1]),
            **{m: run_metrics(truth, e, judged) for m, e in methods.items()}}


def evaluate(tasks: list, args) -> dict:
    import xarray as xr

    from packtwin.eval.life import meets_targets
    from packtwin.physics.life_twin import calibrate

    runs = []
    for t in tasks:
        with xr.open_dataset(t["path"]) as ds:
            runs.append((t, ds.load()))
    train_cells = set(range(args.train_cells))
    train_temps = set(args.train_temps)
    calib = [ds for t, ds in runs if t["cell"] in train_cells and t["temp"] in train_temps]
    model = calibrate(calib, upto_cycle=args.calib_cycles)
    per_run = [judge_run(t, ds, model, args, train_cells, train_temps) for t, ds in runs]
    groups = {}
    for g in ("seen_cells_seen_temps", "unseen_cells_seen_temps", "unseen_temperature"):
        rows = [r for r in per_run if r["group"] == g]
        if not rows:
            continue
        groups[g] = {"runs": len(rows), **{m: {k: float(np.mean([r[m][k] for r in rows]))
                                               for k in rows[0][m]}
                                           for m in ("twin", "twin_forecast", "sqrt_fit")}}
        groups[g]["twin_meets_targets"] = meets_targets(groups[g]["twin"])
    return {"calibration": {"runs": len(calib), "upto_cycle": args.calib_cycles,
                            **{f.name: getattr(model, f.name)
                               for f in dataclasses.fields(model)}},
            "judged": f"cycles > {args.calib_cycles} of every run",
            "groups": groups, "per_run": per_run, "long_run": long_run(args, model)}


def long_run(args, model) -> dict | None:
    """One longer life (``--long CELL TEMP CYCLES``) judged with the same calibration."""
    if not args.long:
        return None
    import xarray as xr

    cell, temp, n = int(args.long[0]), float(args.long[1]), int(args.long[2])
    task = {"path": str(Path(args.cache) / f"life_c{cell}_T{temp:g}_n{n}.nc"), "cell": cell,
            "temp": temp, "cycles": n, "n_cells": args.cells}
    done = _one_run(task)
    with xr.open_dataset(task["path"]) as ds:
        ds = ds.load()
    out = judge_run(task, ds, model, args, set(range(args.train_cells)), set(args.train_temps))
    out["cpu_seconds"] = done["seconds"]
    out["cpu_seconds_per_cycle"] = done["seconds"] / n if done["seconds"] else None
    return out


if __name__ == "__main__":
    sys.exit(main())
