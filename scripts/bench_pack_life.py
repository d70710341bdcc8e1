"""Cost of ageing a pack with ``packtwin generate`` per DFN cell-cycle, against
:func:`packtwin.sim.life_reference.run_life` (one cell, one uninterrupted PyBaMM Experiment per
chunk of cycles) on the same cell, mesh, temperature and C-rates, in the same run. Writes JSON.

    .venv/bin/python scripts/bench_pack_life.py [--config configs/generate/life-demo.yaml]
        [--scenario 0] [--cycles 3] [--max-step-periods N] [--out reports/bench_pack_life.json]
    .venv/bin/python scripts/bench_pack_life.py --compare [--cycles 3] [--repeats 2]
        [--out reports/bench_pack_life_compare.json]

``--compare``: every scenario of the config (life-demo: 25 and 45 C) with the old stepping
(PyBaMM's ``solver.step`` every period, solver.fewer_trials off), the lean step alone (must store
bit-identical values) and the new stepping (lean step + fewer_trials), in one run; the largest
difference of every stored value against the old stepping; and the restart cost of one IDAKLU
call (N one-period calls against one call over the same N periods from the same state, same
cell), which bounds what any per-period stepping can reach.

Both are timed in this process's CPU time (the machine is shared: wall time says more about the
load than the cost), after an untimed first run that builds and caches the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def pack_cost(cfg) -> dict:
    from bench_generate import stepping_cost

    return stepping_cost(cfg, warm=True)


def single_cell_cost(cfg) -> dict:
    """run_life of cell 0 for the same cycles (charge first: its cycle 1 starts CV-full)."""
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.life_reference import run_life

    cells, nominal = draw_cells(cfg)
    sc = cfg.scenarios[0]
    kw = dict(model_cfg=cfg.model, period_s=cfg.solver.period_s, chunk=cfg.n_cycles)
    run_life(cells[0], nominal, 1, sc.ambient_temperature, sc.charge_c_rate,
             sc.discharge_c_rate, **kw)  # warm-up (imports, first build)
    c0, t0 = time.process_time(), time.perf_counter()
    ds = run_life(cells[0], nominal, cfg.n_cycles, sc.ambient_temperature, sc.charge_c_rate,
                  sc.discharge_c_rate, **kw)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"cpu_s_per_cell_cycle": cpu / cfg.n_cycles, "s_per_cell_cycle": wall / cfg.n_cycles,
            "cycles": int(ds.sizes["cycle"]), "note": "includes the Simulation build of each chunk"}


PATHS = {"old": (False, False), "lean": (True, False), "new": (True, True)}  # lean, fewer_trials


def stored_difference(new: dict, old: dict) -> dict:
    """Largest absolute difference of every stored value of two runs of one scenario: snapshot
    fields and pack series, per-cycle series, summaries (NaN where both are NaN is equal)."""
    import numpy as np

    out = {}

    def put(key, a, b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if a.shape != b.shape:
            out[key] = float("inf")
            return
        both = np.isnan(a) & np.isnan(b)
        d = np.where(both, 0.0, np.abs(a - b))
        out[key] = float(np.nanmax(np.where(np.isnan(d), np.inf, d))) if d.size else 0.0

    for k, snap in new["snapshots"].items():
        ref = old["snapshots"][k]
        for group in ("fields", "pack"):
            for name in snap[group]:
                put(f"snapshot{k}.{name}", snap[group][name], ref[group][name])
        put(f"snapshot{k}.valid", snap["valid"], ref["valid"])
    for name in new["life"]:
        put(f"life.{name}", new["life"][name], old["life"][name])
    for name in new["summary"]:
        put(f"summary.{name}", new["summary"][name], old["summary"][name])
    return out


def restart_cost(cfg, n: int = 30, repeats: int = 3) -> dict:
    """CPU cost of one IDAKLU restart: ``n`` lean one-period steps against one lean step over
    the same ``n`` periods (sampled at each), same cell (cell 0), state and 1C current; the
    smallest of ``repeats`` (the machine is shared)."""
    import numpy as np

    from packtwin.sim.cell import CURRENT, RAMP_START, SLOPE, get_model
    from packtwin.sim.generate import draw_cells

    cells, nominal = draw_cells(cfg)
    varied = tuple(p.key for p in cfg.variation.parameters)
    radii = (cells[0].get("neg_radius", nominal["neg_radius"]),
             cells[0].get("pos_radius", nominal["pos_radius"]))
    model = get_model(cfg.model, varied, radii)
    dt = cfg.solver.period_s
    base = model.inputs(cells[0], nominal, 0.0, cfg.scenarios[0].ambient_temperature + 273.15)

    def inputs(t0):
        ins = dict(base)
        ins.update({CURRENT: model.capacity_ah * 1.0, SLOPE: 0.0, RAMP_START: t0})
        return ins

    start = model.step(None, inputs(0.0), dt)  # one 1C period by the full path (set-up)
    t0 = float(start.t[-1])
    many, one = [], []
    for _ in range(repeats):
        c0, sol = time.process_time(), start
        for _k in range(n):
            sol = model.step(sol, inputs(t0), dt, lean=True)
        many.append(time.process_time() - c0)
        y_many = sol.y[:, -1]
        c0 = time.process_time()
        sol = model.step(start, inputs(t0), n * dt, n, lean=True)
        one.append(time.process_time() - c0)
        y_one = sol.y[:, -1]
    per_call = (min(many) - min(one)) / (n - 1)
    return {"periods": n, "period_s": dt, "cpu_s_n_calls": min(many),
            "cpu_s_one_call": min(one), "cpu_s_per_one_period_call": min(many) / n,
            "restart_cpu_s_per_call": per_call,
            "restart_share_of_a_one_period_call": per_call / (min(many) / n),
            "end_state_relative_difference": float(np.max(np.abs(y_many - y_one))
                                                   / np.max(np.abs(y_one)))}


def distinct_models(cfg) -> int:
    """Built PyBaMM models a pack of this config needs (one per distinct pair of particle radii,
    sim.cell): the cells of one IDAKLU call must share one model."""
    from packtwin.sim.cell import GEOMETRIC_KEYS
    from packtwin.sim.generate import draw_cells

    cells, nominal = draw_cells(cfg)
    return len({tuple(c.get(k, nominal[k]) for k in GEOMETRIC_KEYS) for c in cells})


def compare(cfg, cycles: int, repeats: int = 2) -> dict:
    """Old, lean and new stepping on every scenario of ``cfg`` (see the module docstring); each
    path run ``repeats`` times, interleaved, keeping its cheapest run (the machine is shared)."""
    import os

    from packtwin.sim import lean_step

    out = {"paths": {k: {"lean_step": v[0], "fewer_trials": v[1]} for k, v in PATHS.items()},
           "repeats": repeats, "scenarios": {}}
    for sc in cfg.scenarios:
        one = dataclasses.replace(cfg, scenarios=[sc], n_cycles=cycles, snapshot_every=cycles)
        row, results = {}, {}
        pack_cost(one)  # untimed: builds the models, sets the solvers up
        for rep in range(repeats):
            for name, (lean, fewer) in PATHS.items():
                lean_step.LEAN_STEP = lean
                one.solver.fewer_trials = fewer
                load0 = list(os.getloadavg())
                cost = stepping_cost_kept(one)
                results[name] = cost.pop("_result")
                cost["loadavg_1_5_15_before"], cost["loadavg_1_5_15_after"] = load0, \
                    list(os.getloadavg())
                runs = row.setdefault(name, {"cpu_s_per_cell_cycle_each_run": []})
                runs["cpu_s_per_cell_cycle_each_run"].append(cost["cpu_s_per_cell_cycle"])
                if cost["cpu_s_per_cell_cycle"] <= min(runs["cpu_s_per_cell_cycle_each_run"]):
                    runs.update(cost)
        lean_step.LEAN_STEP = True
        one.solver.fewer_trials = False
        row["run_life_same_cell"] = single_cell_cost(one)
        ref = row["run_life_same_cell"]["cpu_s_per_cell_cycle"]
        for name in PATHS:
            row[name]["ratio_cpu_to_run_life"] = row[name]["cpu_s_per_cell_cycle"] / ref
        row["speedup_cpu_new_vs_old"] = (row["old"]["cpu_s_per_cell_cycle"]
                                         / row["new"]["cpu_s_per_cell_cycle"])
        row["speedup_cpu_lean_vs_old"] = (row["old"]["cpu_s_per_cell_cycle"]
                                          / row["lean"]["cpu_s_per_cell_cycle"])
        row["difference_lean_vs_old"] = stored_difference(results["lean"], results["old"])
        row["lean_bit_identical_to_old"] = all(v == 0.0 for v in
                                                row["difference_lean_vs_old"].values())
        row["difference_new_vs_old"] = stored_difference(results["new"], results["old"])
        row["restart"] = restart_cost(one)
        row["restart"]["restart_cpu_s_per_cell_cycle_new"] = (
            row["restart"]["restart_cpu_s_per_call"] * row["new"]["cell_solves_per_cell_cycle"])
        out["scenarios"][f"{sc.ambient_temperature:g} degC, {sc.discharge_c_rate:g}C "
                         f"{sc.protocol}"] = row
    out["distinct_built_models_per_pack"] = distinct_models(cfg)
    out["pack_cells"] = cfg.pack.n_series * cfg.pack.n_parallel
    return out


def stepping_cost_kept(cfg) -> dict:
    from bench_generate import stepping_cost

    return stepping_cost(cfg, warm=False, keep_result=True)


def main(argv=None) -> int:
    from bench_generate import machine

    from packtwin.sim.generate import parse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "generate" / "life-demo.yaml"))
    ap.add_argument("--scenario", type=int, default=0)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--max-step-periods", type=int, default=None,
                    help="override the config's solver.max_step_periods")
    ap.add_argument("--out", default=None,
                    help="default reports/bench_pack_life.json (--compare: "
                         "reports/bench_pack_life_compare.json)")
    ap.add_argument("--compare", action="store_true",
                    help="old vs lean vs new stepping on every scenario of the config")
    ap.add_argument("--repeats", type=int, default=2,
                    help="--compare: runs of each path (interleaved; the cheapest is kept)")
    args = ap.parse_args(argv)
    cfg, _ = parse(["--config", args.config])
    from bench_report import write_report  # scripts/ is on sys.path when run

    if args.compare:
        if args.max_step_periods is not None:
            cfg.solver.max_step_periods = args.max_step_periods
        out = {"machine": machine(), "config": args.config, "cycles": args.cycles,
               "pack": f"{cfg.pack.n_series}s{cfg.pack.n_parallel}p",
               "var_pts": cfg.model.var_pts, "max_step_periods": cfg.solver.max_step_periods,
               "cpu": "this process's CPU time (time.process_time), one core"}
        out.update(compare(cfg, args.cycles, args.repeats))
        write_report(out, args.out or ROOT / "reports" / "bench_pack_life_compare.json")
        print(json.dumps(out, indent=2))
        return 0
    cfg = dataclasses.replace(cfg, scenarios=[cfg.scenarios[args.scenario]], n_cycles=args.cycles,
                              snapshot_every=args.cycles)
    if args.max_step_periods is not None:
        cfg.solver.max_step_periods = args.max_step_periods
    out = {"machine": machine(), "config": args.config,
           "scenario": dataclasses.asdict(cfg.scenarios[0]),
           "pack": f"{cfg.pack.n_series}s{cfg.pack.n_parallel}p", "cycles": args.cycles,
           "var_pts": cfg.model.var_pts, "max_step_periods": cfg.solver.max_step_periods}
    out["pack_generator"] = pack_cost(cfg)
    out["run_life_same_cell"] = single_cell_cost(cfg)
    out["ratio_cpu_pack_to_run_life"] = (out["pack_generator"]["cpu_s_per_cell_cycle"]
                                        / out["run_life_same_cell"]["cpu_s_per_cell_cycle"])
    write_report(out, args.out or ROOT / "reports" / "bench_pack_life.json")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
