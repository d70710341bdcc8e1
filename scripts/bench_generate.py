"""Benchmark of ``packtwin generate``: cell-cycles per minute with 1 worker vs all workers, the
DFN cost per cell-cycle of the pack stepper, and (for reference) a plain PyBaMM Experiment solve
of one cell over the same cycle, and a mesh convergence study of the cell model (key
``mesh_study``). Writes JSON (default reports/bench_generate.json).

    .venv/bin/python scripts/bench_generate.py [--out reports/bench_generate.json] [--scenarios 4]
    .venv/bin/python scripts/bench_generate.py --mesh-study-only   # only the mesh study (~minutes)
    .venv/bin/python scripts/bench_generate.py --speed-only   # only old vs new stepping (key speed)
    .venv/bin/python scripts/bench_generate.py --stored-grid-only  # stored x grid vs solver mesh

The mesh study (:mod:`packtwin.sim.convergence`) runs the hardest conditions of the presets in
configs/generate (the coldest pulse scenario, and the highest C-rate the cell can sustain) through
each mesh and through one twice as fine, radial and through-thickness points separately, uniform
and surface-refined (exponential) radial meshes, and reports voltage, surface c_s and SEI errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pybamm

    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "pybamm": pybamm.__version__,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def bench_config(n_scenarios: int):
    from packtwin.sim import config as cfgmod

    # 1s2p at 1C/25 C, one cycle per scenario: the parallel split is exercised, and every
    # scenario costs the same so that 1 vs N workers compare like with like.
    return cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 1.0, 1.0, "cccv") for _ in range(n_scenarios)],
        pack=cfgmod.PackConfig(1, 2), n_cycles=1, seed=0)


def run_generate(cfg, workers: int) -> dict:
    from packtwin.sim.generate import run

    with tempfile.TemporaryDirectory() as d:
        counts = run(cfg, Path(d) / "bench.zarr", workers=workers, quiet=True, log=lambda *_: None)
    minutes = counts["wall_s"] / 60.0
    return {"workers": workers, "wall_s": counts["wall_s"], "cell_cycles": counts["cell_cycles"],
            "cell_cycles_per_minute": counts["cell_cycles"] / minutes,
            "ok": counts["ok"]}


def stepping_cost(cfg, warm: bool = True, keep_result: bool = False) -> dict:
    """Cost of one cell-cycle in the pack stepper, without store I/O or process start-up
    (wall and this process's CPU time; the models are built by a first, untimed run)."""
    from packtwin.sim import config as cfgmod
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.scenario import run_scenario

    cells, nominal = draw_cells(cfg)
    task = {"config": cfgmod.to_dict(cfg), "scenario": 0, "cell_values": cells, "nominal": nominal}
    if warm:
        run_scenario(task)  # builds and caches the models
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_scenario(task)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_cells = cfg.pack.n_series * cfg.pack.n_parallel
    cell_cycles = n_cells * max(res["cycles_done"], 1)
    out = {"s_per_cell_cycle": wall / cell_cycles, "cpu_s_per_cell_cycle": cpu / cell_cycles,
            "status": res["status"], "message": res["message"],
            "pack_steps": res["steps"], "periods": res.get("periods", res["steps"]),
            "newton_iterations_per_step": res["iterations"] / res["steps"],
            "cell_solves_per_cell_cycle": res.get("cell_solves", 0) / cell_cycles,
            "period_s": cfg.solver.period_s, "max_step_periods": cfg.solver.max_step_periods}
    if keep_result:
        out["_result"] = res
    return out


def _stored_difference(new: dict, old: dict) -> dict:
    """Largest differences of the stored values of two runs of one scenario (same grid)."""
    import numpy as np

    a, b = new["snapshots"][0], old["snapshots"][0]
    n = int(min(a["valid"].sum(), b["valid"].sum()))
    diff = lambda x, y: float(np.nanmax(np.abs(x - y)))  # noqa: E731
    out = {"valid_samples": [int(a["valid"].sum()), int(b["valid"].sum())],
           "voltage_mV": 1e3 * diff(a["fields"]["voltage"][:, :n], b["fields"]["voltage"][:, :n]),
           "current_A": diff(a["fields"]["current"][:, :n], b["fields"]["current"][:, :n]),
           "temperature_K": diff(a["fields"]["temperature"][:, :n],
                                 b["fields"]["temperature"][:, :n])}
    for name in ("capacity", "lli", "sei_thickness_end", "plated_lithium_end"):
        x, y = new["summary"][name], old["summary"][name]
        out[f"{name}_relative"] = float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))
    return out


def speed(n_series: int = 2, n_parallel: int = 2, max_step_periods: int | None = None) -> dict:
    """The pack stepping of main (coupling every 60 s period) against adaptive long coupling
    steps, DFN on the default mesh, one core, 1C cccv and pulse; with the uninterrupted PyBaMM
    solve of one nominal cell over the CCCV cycle in the same run."""
    from packtwin.sim import config as cfgmod

    new_periods = max_step_periods or cfgmod.SolverConfig().max_step_periods
    out = {"pack": f"{n_series}s{n_parallel}p", "one_core": "one process, IDAKLU num_threads 1",
           "mesh": {"var_pts": cfgmod.ModelConfig().var_pts,
                    "submesh": cfgmod.ModelConfig().submesh}, "scenarios": {}}
    warm = True
    for protocol in ("cccv", "pulse"):
        cfg = cfgmod.GenerateConfig(scenarios=[cfgmod.Scenario(25.0, 1.0, 1.0, protocol)],
                                    pack=cfgmod.PackConfig(n_series, n_parallel), n_cycles=1,
                                    seed=0)
        runs = {}
        for label, periods in (("new", new_periods), ("old", 1)):
            cfg.solver.max_step_periods = periods
            runs[label] = stepping_cost(cfg, warm=warm, keep_result=True)
            warm = False
        row = {k: {kk: vv for kk, vv in v.items() if kk != "_result"} for k, v in runs.items()}
        row["speedup_wall"] = runs["old"]["s_per_cell_cycle"] / runs["new"]["s_per_cell_cycle"]
        row["speedup_cpu"] = (runs["old"]["cpu_s_per_cell_cycle"]
                              / runs["new"]["cpu_s_per_cell_cycle"])
        row["stored_difference_new_vs_old"] = _stored_difference(runs["new"]["_result"],
                                                                 runs["old"]["_result"])
        out["scenarios"][f"25 degC, 1C {protocol}"] = row
    ref = experiment_cost(cfg)
    out["uninterrupted_pybamm_cccv_cycle"] = ref
    for row in out["scenarios"].values():
        for label in ("new", "old"):
            row[label]["ratio_to_uninterrupted"] = (row[label]["s_per_cell_cycle"]
                                                    / ref["solve_s_per_cycle"])
            row[label]["cpu_ratio_to_uninterrupted"] = (row[label]["cpu_s_per_cell_cycle"]
                                                        / ref["cpu_s_per_cycle"])
    return out


def experiment_cost(cfg) -> dict:
    """A plain PyBaMM Experiment of the same cycle on one nominal cell (reference only)."""
    import pybamm

    from packtwin.sim.cell import nominal_parameter_values, submesh_types

    pv = nominal_parameter_values(cfg.model)
    q = float(pv["Nominal cell capacity [A.h]"])
    p = cfg.protocol
    exp = pybamm.Experiment([
        f"Discharge at 1C until {p.v_min} V", f"Rest for {p.rest_s} seconds",
        f"Charge at 1C until {p.v_max} V",
        f"Hold at {p.v_max} V until {p.cv_cutoff_c * q} A", f"Rest for {p.rest_s} seconds"],
        period=f"{cfg.solver.period_s} seconds")
    model = pybamm.lithium_ion.DFN(dict(cfg.model.options))
    sim = pybamm.Simulation(model, parameter_values=pv, experiment=exp,
                            var_pts=dict(cfg.model.var_pts),
                            submesh_types=submesh_types(model, cfg.model.submesh),
                            solver=pybamm.IDAKLUSolver())
    t0 = time.perf_counter()
    sim.solve()  # builds the experiment's models first
    t1, c1 = time.perf_counter(), time.process_time()
    sol = sim.solve()  # the same experiment again, built
    t2, c2 = time.perf_counter(), time.process_time()
    return {"setup_and_solve_s": t1 - t0, "solve_s_per_cycle": t2 - t1,
            "cpu_s_per_cycle": c2 - c1, "var_pts": dict(cfg.model.var_pts),
            "submesh": dict(cfg.model.submesh),
            "discharge_capacity_ah": float(sol["Discharge capacity [A.h]"].entries.max())}


# Candidate meshes of the study: (name, var_pts changes, submesh, keys doubled for the reference).
SURFACE_REFINED = {"type": "exponential", "side": "right"}
X_OLD = {"x_n": 8, "x_s": 4, "x_p": 8}
X_PREVIOUS = {"x_n": 16, "x_s": 8, "x_p": 16}  # the default before the thickness study
MESH_GROUPS = ("radial", "thickness", "surface_cs", "order", "x_balance", "fine", "split")
# The default's x family (its x_n:x_s:x_p shape), each mesh against one twice as fine: the
# observed order of every x count refined together (group "order").
ORDER_FAMILY = ({"x_n": 24, "x_s": 4, "x_p": 8}, {"x_n": 48, "x_s": 8, "x_p": 16},
                {"x_n": 96, "x_s": 16, "x_p": 32})


def mesh_candidates(groups=MESH_GROUPS) -> list[tuple[str, dict, dict, tuple, str]]:
    from packtwin.sim.config import ModelConfig
    from packtwin.sim.convergence import RADIAL_KEYS, THICKNESS_KEYS

    default = ModelConfig()
    out = []
    if "radial" in groups:
        exp = {"r_n": SURFACE_REFINED, "r_p": SURFACE_REFINED}
        out += [(f"radial uniform r={r}", {**X_OLD, "r_n": r, "r_p": r}, {}, RADIAL_KEYS)
                for r in (10, 20, 30, 40)]
        out += [(f"radial exponential(right) r={r}", {**X_OLD, "r_n": r, "r_p": r}, exp,
                 RADIAL_KEYS) for r in (10, 15, 20, 25, 30)]
        steep = {k: {**SURFACE_REFINED, "stretch": 3.0} for k in RADIAL_KEYS}
        out += [("radial exponential(right, stretch 3) r=20", {**X_OLD, "r_n": 20, "r_p": 20},
                 steep, RADIAL_KEYS)]
        out = [(*c, "radial") for c in out]
    if "thickness" in groups:
        out += [(*c, "thickness") for c in thickness_candidates(default, THICKNESS_KEYS)]
    if "surface_cs" in groups:
        out += [(*c, "surface_cs") for c in surface_cs_candidates(default, THICKNESS_KEYS)]
    radial = {k: v for k, v in default.submesh.items() if k.startswith("r_")}
    if "order" in groups:
        out += [(f"order: x={x['x_n']}/{x['x_s']}/{x['x_p']} uniform", {**default.var_pts, **x},
                 radial, THICKNESS_KEYS, "order") for x in ORDER_FAMILY]
    if "x_balance" in groups:
        out += [(*c, "x_balance") for c in x_balance_candidates(default, radial, THICKNESS_KEYS)]
    if "split" in groups:  # which domain's x count moves the default's surface c_s
        out += [(f"x=48/8/16 uniform, only {k} doubled", dict(default.var_pts), radial, (k,),
                 "split") for k in ("x_n", "x_p")]
    if "fine" in groups:  # beyond the order family: does the separator cell converge at 5C?
        towards = {"x_n": {"type": "exponential", "side": "right", "stretch": 1.5}}
        out += [("x=128/16/48 uniform", {**default.var_pts, "x_n": 128, "x_s": 16, "x_p": 48},
                 radial, THICKNESS_KEYS, "fine"),
                ("x=96/16/32 x_n exponential towards the separator (stretch 1.5)",
                 {**default.var_pts, "x_n": 96, "x_s": 16, "x_p": 32}, {**radial, **towards},
                 THICKNESS_KEYS, "fine")]
    out += [("default mesh, every domain doubled", dict(default.var_pts), default.submesh,
             RADIAL_KEYS + THICKNESS_KEYS, "default")]
    return out


def thickness_candidates(default, keys) -> list[tuple[str, dict, dict, tuple]]:
    """Through-thickness meshes on the default radial mesh (radial error equal on both sides)."""
    radial = {k: v for k, v in default.submesh.items() if k.startswith("r_")}
    uniform = lambda x: {**default.var_pts, **x}  # noqa: E731
    out = [(f"thickness x={x['x_n']}/{x['x_s']}/{x['x_p']} uniform", uniform(x), radial, keys)
           for x in (X_PREVIOUS, {"x_n": 24, "x_s": 12, "x_p": 24},
                     {"x_n": 32, "x_s": 8, "x_p": 16}, {"x_n": 48, "x_s": 8, "x_p": 16},
                     {"x_n": 48, "x_s": 12, "x_p": 24})]
    # Which domain carries the error: 16/8/16 against twice the points in one domain only.
    out += [(f"thickness x=16/8/16 uniform, only {k} doubled", uniform(X_PREVIOUS), radial, (k,))
            for k in keys]
    # Cells shrinking towards the separator (where the reaction concentrates at -10 C and 5C).
    for n, s, stretch in ((32, 16, None), (48, 24, 1.5)):
        towards = {"x_n": {"type": "exponential", "side": "right"},
                   "x_p": {"type": "exponential", "side": "left"}}
        if stretch:
            towards = {k: {**v, "stretch": stretch} for k, v in towards.items()}
        out.append((f"thickness x={n}/8/{s} exponential towards the separator"
                    f" (stretch {stretch or 2.3})",
                    uniform({"x_n": n, "x_s": 8, "x_p": s}), {**radial, **towards}, keys))
    return out


def surface_cs_candidates(default, keys) -> list[tuple]:
    """Why surface c_s next to the separator converges slowly at 5C, and cheap remedies: finer
    uniform x_n (the asymptotic rate), lithium plating switched off (is it the cause?), x_n alone refined towards the separator with the same count, and more x_n
    points with fewer radial points. A 6th entry holds model options replacing the default's."""
    radial = {k: v for k, v in default.submesh.items() if k.startswith("r_")}
    x48 = {**default.var_pts, "x_n": 48, "x_s": 8, "x_p": 16}
    out = [(f"thickness x={n}/8/16 uniform" + (" (default)" if n == 48 else ""),
            {**x48, "x_n": n}, radial, keys) for n in (48, 64, 96)]
    out += [("thickness x=48/8/16 uniform, no plating", x48, radial, keys,
             {"lithium plating": "none"}),
            ]
    for stretch in (1.5, 2.3):
        sub = {**radial, "x_n": {"type": "exponential", "side": "right", "stretch": stretch}}
        out.append((f"thickness x=48/8/16, x_n exponential towards the separator (stretch "
                    f"{stretch})", x48, sub, keys))
    for n, r in ((64, 25), (96, 20)):
        out.append((f"x={n}/8/16 uniform, r={r} exponential(right), every domain doubled",
                    {**x48, "x_n": n, "r_n": r, "r_p": r}, radial,
                    tuple(keys) + ("r_n", "r_p")))
    return out


def x_balance_candidates(default, radial, keys) -> list[tuple]:
    """More x_p points, x_n refined towards the separator, or both, near the default's cost.

    The x_n-only rows of group ``surface_cs`` keep x_p at 16 while their reference has 32: at the
    5C charge step that x_p difference alone moves surface c_s n next to the separator by 0.21 %
    (diagnosis in data/README.md), a floor x_n refinement cannot lower."""
    towards = {"x_n": {"type": "exponential", "side": "right", "stretch": 1.5}}
    both = {**towards, "x_p": {"type": "exponential", "side": "left", "stretch": 1.5}}
    out = []
    for n, p, sub in ((48, 32, {}), (48, 48, {}), (64, 24, {}), (64, 32, {}), (64, 24, towards),
                      (48, 32, towards), (56, 40, towards), (64, 32, towards), (64, 32, both)):
        kind = ("x_n and x_p exponential towards the separator (stretch 1.5)" if "x_p" in sub
                else "x_n exponential towards the separator (stretch 1.5)" if sub else "uniform")
        out.append((f"x={n}/8/{p} {kind}", {**default.var_pts, "x_n": n, "x_s": 8, "x_p": p},
                    {**radial, **sub}, keys))
    return out


def order_summary(rows: list[dict], target_pct: float = 0.05, target_mv: float = 1.0) -> dict:
    """Observed convergence order of the ``order`` rows (the default's x family, each against the
    next) and the factor on the last one's x counts that would reach the targets."""
    from packtwin.sim.convergence import observed_order

    fam = [r for r in rows if r.get("group") == "order" and "failed" not in r]
    if len(fam) < 2:
        return {}
    out = {"meshes": [r["mesh"] for r in fam]}
    for key, target in (("c_surf_n_max_pct", target_pct), ("c_surf_p_max_pct", target_pct),
                        ("voltage_max_mv", target_mv)):
        out[key] = observed_order([r[key] for r in fam], target)
    for side in "np":
        out[f"c_surf_{side}_rms_pct"] = observed_order(
            [r[f"c_surf_{side}_max_at"]["rms_pct"] for r in fam], target_pct)
    return out


def hardest_conditions() -> dict:
    """The presets' coldest pulse scenario and highest C-rate scenario the cell can sustain."""
    from packtwin.sim.convergence import scenario_currents
    from packtwin.sim.generate import parse, presets

    found = []
    for name in presets():
        cfg, _ = parse(["--preset", name])
        found += [(name, i, cfg) for i in range(len(cfg.scenarios))]
    pulses = [f for f in found if f[2].scenarios[f[1]].protocol == "pulse"]
    cold = min(pulses, key=lambda f: (f[2].scenarios[f[1]].ambient_temperature,
                                      -f[2].scenarios[f[1]].discharge_c_rate))
    out = {"coldest_pulse": cold}
    rate = lambda f: max(f[2].scenarios[f[1]].charge_c_rate,  # noqa: E731
                         f[2].scenarios[f[1]].discharge_c_rate)
    skipped = []
    for f in sorted(found, key=lambda f: (-rate(f), f[2].scenarios[f[1]].ambient_temperature,
                                          f[2].scenarios[f[1]].protocol)):
        n_dis = int((scenario_currents(f[2], f[1]) > 0).sum())
        if n_dis >= 3:  # the cell sustains this rate for more than a step or two
            out["highest_c_rate"] = f
            break
        skipped.append(f"{f[0]}[{f[1]}] {f[2].scenarios[f[1]]}: discharge ends within "
                       f"{n_dis} step(s) of {f[2].solver.period_s} s")
    out["_skipped"] = skipped
    # Not a hardest case: the demo's training-range pulse, to show the mesh where the twin learns.
    demo, _ = parse(["--preset", "demo"])
    out["demo_training_pulse"] = next(
        ("demo", i, demo) for i, s in enumerate(demo.scenarios)
        if (s.ambient_temperature, s.discharge_c_rate, s.protocol) == (25.0, 1.0, "pulse"))
    return out


def mesh_study(factor: int = 2, groups=MESH_GROUPS, only=None, cost: bool = True) -> dict:
    """Every candidate mesh of ``groups`` against one ``factor`` times as fine, on each hardest
    condition (or those labelled in ``only``)."""
    from packtwin.sim.convergence import errors, refined, scenario_currents, trace, with_mesh

    conds = hardest_conditions()
    if only:
        unknown = sorted(set(only) - set(conds) - {"_skipped"})
        if unknown:
            raise SystemExit(f"--mesh-conditions: unknown {unknown}; expected some of "
                             f"{sorted(k for k in conds if k != '_skipped')}")
        conds = {k: v for k, v in conds.items() if k in only or k == "_skipped"}
    result = {"criterion": "max |error| against a mesh twice as fine: voltage <= 1 mV, surface "
                           "c_s <= 0.05 % of c_max (both electrodes), every 60 s sample",
              "skipped_conditions": conds.pop("_skipped"), "conditions": {}}
    for label, (preset, idx, cfg) in conds.items():
        sc = cfg.scenarios[idx]
        currents = scenario_currents(cfg, idx)
        cache: dict[str, object] = {}

        def run(mc):
            key = json.dumps([mc.var_pts, mc.submesh, mc.options], sort_keys=True)
            if key not in cache:
                cache[key] = trace(mc, currents, cfg.solver.period_s, sc.ambient_temperature)
            return cache[key]

        rows = []
        for name, pts, sub, keys, *options, group in mesh_candidates(groups):
            coarse_cfg = with_mesh(cfg.model, pts, sub)
            if options:
                coarse_cfg.options = {**coarse_cfg.options, **options[0]}
            fine_cfg = refined(coarse_cfg, keys, factor)
            try:
                coarse, fine = run(coarse_cfg), run(fine_cfg)
            except Exception as exc:  # a mesh the solver cannot carry through is a result too
                rows.append({"mesh": name, "group": group, "var_pts": coarse_cfg.var_pts,
                             "submesh": coarse_cfg.submesh, "reference_var_pts": fine_cfg.var_pts,
                             "failed": f"{type(exc).__name__}: {exc}"[:300]})
                print(f"[mesh study] {label}: {rows[-1]}", file=sys.stderr, flush=True)
                continue
            rows.append({"mesh": name, "group": group, "var_pts": coarse_cfg.var_pts,
                         "submesh": coarse_cfg.submesh, "reference_var_pts": fine_cfg.var_pts,
                         **({"options": options[0]} if options else {}),
                         **errors(coarse, fine), "build_s": coarse.build_s,
                         "solve_s": coarse.solve_s, "reference_solve_s": fine.solve_s})
            print(f"[mesh study] {label}: {rows[-1]}", file=sys.stderr, flush=True)
        result["conditions"][label] = {
            "preset": preset, "scenario_index": idx, "scenario": dataclasses.asdict(sc),
            "steps": len(currents), "period_s": cfg.solver.period_s,
            "discharge_steps": int((currents > 0).sum()), "charge_steps": int((currents < 0).sum()),
            "rows": rows}
        if "order" in groups:
            result["conditions"][label]["order"] = order_summary(rows)
    if cost:
        result["cost"] = mesh_cost()
    return result


def mesh_cost() -> dict:
    """Pack-stepping cost per cell-cycle of the old, the previous and the default mesh, in the
    same run."""
    from packtwin.sim.config import ModelConfig
    from packtwin.sim.convergence import with_mesh

    cfg = bench_config(1)
    out = {"what": "stepping_cost: 1s2p, 25 degC, 1C cccv, one cycle, 60 s steps"}
    previous = {k: v for k, v in ModelConfig().submesh.items() if k.startswith("r_")}
    for name, mc in (("old 8/4/8, r 10 uniform", with_mesh(ModelConfig(), {**X_OLD, "r_n": 10,
                                                                              "r_p": 10}, {})),
                     ("previous 16/8/16, r 30 exponential",
                      with_mesh(ModelConfig(), X_PREVIOUS, previous)),
                     ("default", ModelConfig()),
                     # meshes the surface-c_s study points at (data/README.md)
                     *((name, with_mesh(ModelConfig(), x, {**previous, **sub}))
                       for name, x, sub in COST_CANDIDATES)):
        cfg.model = mc
        out[name] = {"var_pts": mc.var_pts, "submesh": mc.submesh, **stepping_cost(cfg)}
        # CPU time as well: on a machine shared with other jobs the wall time above measures
        # the load as much as the mesh. Models are cached now, so this call is two warm cycles.
        c0 = time.process_time()
        stepping_cost(cfg)
        out[name]["cpu_s_per_cell_cycle"] = (time.process_time() - c0) / (
            2 * cfg.pack.n_series * cfg.pack.n_parallel * cfg.n_cycles)
    for name in ("old 8/4/8, r 10 uniform", "previous 16/8/16, r 30 exponential"):
        for key in ("s_per_cell_cycle", "cpu_s_per_cell_cycle"):
            out[f"{key} ratio to {name.split(',')[0]}"] = \
                out["default"][key] / out[name][key]
    for name, *_ in COST_CANDIDATES:
        for key in ("s_per_cell_cycle", "cpu_s_per_cell_cycle"):
            out[name][f"{key} ratio to default"] = out[name][key] / out["default"][key]
    return out


COST_CANDIDATES = (
    ("x=96/16/32 uniform", {"x_n": 96, "x_s": 16, "x_p": 32}, {}),
    ("x=64/8/32, x_n exponential towards the separator (stretch 1.5)",
     {"x_n": 64, "x_s": 8, "x_p": 32},
     {"x_n": {"type": "exponential", "side": "right", "stretch": 1.5}}))


STORED_X_CANDIDATES = ({"x_n": 8, "x_s": 4, "x_p": 8}, {"x_n": 16, "x_s": 8, "x_p": 16},
                       {"x_n": 24, "x_s": 8, "x_p": 16})


def stored_grid_study(only=None) -> dict:
    """The stored x grid (ModelConfig.stored_x_points) against the solver's mesh: each hardest
    condition run once on the preset's own (default) mesh, its fields then stored on each
    candidate grid (no re-solve), with the values per stored sample and cell that each grid keeps."""
    from packtwin.sim.config import ModelConfig
    from packtwin.sim.convergence import scenario_currents, stored_grid_errors, trace

    conds = hardest_conditions()
    conds.pop("_skipped")
    conds = {k: v for k, v in conds.items() if not only or k in only}
    default = ModelConfig().stored_x_points
    out = {"what": "fields of one nominal cell on the condition's own solver mesh, stored on "
                   "each candidate x grid (conservative cell means); errors are the largest "
                   "over every 60 s sample",
           "default_stored_x_points": default, "conditions": {}}
    for label, (preset, idx, cfg) in conds.items():
        sc = cfg.scenarios[idx]
        t0 = time.process_time()
        tr = trace(cfg.model, scenario_currents(cfg, idx), cfg.solver.period_s,
                   sc.ambient_temperature)
        rows = []
        for cand in STORED_X_CANDIDATES:
            row = stored_grid_errors(tr, cand)
            n = row["stored_x_points"]
            nr = {k: tr.c_stored_n.shape[2] if k == "n" else tr.c_stored_p.shape[2] for k in "np"}
            # values per sample and cell of the x-resolved fields (c_s_n, c_s_p, c_e, SEI)
            row["x_field_values"] = (n["x_n"] * nr["n"] + n["x_p"] * nr["p"]
                                     + sum(n.values()) + n["x_n"])
            rows.append(row)
            print(f"[stored grid] {label}: {row}", file=sys.stderr, flush=True)
        solver = rows[0]["solver_x_points"]
        out["conditions"][label] = {
            "preset": preset, "scenario_index": idx, "scenario": dataclasses.asdict(sc),
            "solver_var_pts": dict(cfg.model.var_pts), "solver_submesh": dict(cfg.model.submesh),
            "samples": int(len(tr.voltage)), "cpu_s": time.process_time() - t0,
            "solver_x_field_values": (solver["x_n"] * tr.c_stored_n.shape[2]
                                      + solver["x_p"] * tr.c_stored_p.shape[2]
                                      + sum(solver.values()) + solver["x_n"]),
            "rows": rows}
    return out


def merge_mesh_study(old: dict, new: dict, groups) -> dict:
    """``new`` with the rows of ``old`` that this run did not redo (other groups or conditions),
    so a partial run (--mesh-groups, --mesh-conditions) updates only what it measured."""
    if not old:
        return new
    out = {**old, **{k: v for k, v in new.items() if k != "conditions"}}
    out["conditions"] = dict(old.get("conditions", {}))
    for label, cond in new["conditions"].items():
        kept = [r for r in out["conditions"].get(label, {}).get("rows", [])
                if r.get("group", r["mesh"].split()[0]) not in (*groups, "default")]
        # keys of old that this run did not redo (e.g. "order" of another run) are kept
        out["conditions"][label] = {**out["conditions"].get(label, {}), **cond,
                                    "rows": kept + cond["rows"]}
    # the runs whose rows are in the file, each with its machine and load
    out.setdefault("runs", [{"groups": list(MESH_GROUPS), "conditions": sorted(old["conditions"]),
                             "machine": old.get("machine")}])
    out["runs"].append({"groups": list(groups),
                                       "conditions": sorted(new["conditions"]),
                                       "machine": new["machine"]})
    return out


def _update_key(path: Path, key: str, section) -> int:
    """Run ``section()`` and store it under ``key`` of the JSON at ``path`` (other keys kept)."""
    out = json.loads(path.read_text()) if path.is_file() else {}
    out[key] = {"machine": machine(), **section()}
    out[key]["machine"]["load_average_at_end"] = list(os.getloadavg())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out[key], indent=2))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_generate.json"))
    ap.add_argument("--scenarios", type=int, default=4)
    ap.add_argument("--mesh-study-only", action="store_true",
                    help="run only the mesh study and update its key in --out (other keys kept)")
    ap.add_argument("--mesh-groups", default=",".join(MESH_GROUPS),
                    help=f"candidate groups of the mesh study, comma-separated, from "
                         f"{MESH_GROUPS} (rows of other groups already in --out are kept)")
    ap.add_argument("--mesh-conditions", default="",
                    help="only these conditions (coldest_pulse, highest_c_rate, "
                         "demo_training_pulse), comma-separated; default all")
    ap.add_argument("--mesh-cost-only", action="store_true",
                    help="run only the mesh study's cost per cell-cycle (key mesh_study.cost)")
    ap.add_argument("--mesh-skip-cost", action="store_true",
                    help="leave out the mesh study's cost per cell-cycle (key cost kept as is)")
    ap.add_argument("--speed-only", action="store_true",
                    help="run only the stepping speed comparison (key 'speed': 2s2p, old vs new "
                         "stepping, ratio to an uninterrupted PyBaMM solve) and update it in --out")
    ap.add_argument("--stored-grid-only", action="store_true",
                    help="run only the stored x grid's errors against the solver's mesh (key "
                         "stored_grid; --mesh-conditions selects conditions)")
    args = ap.parse_args(argv)
    if args.stored_grid_only:
        only = [c for c in args.mesh_conditions.split(",") if c]
        return _update_key(Path(args.out), "stored_grid", lambda: stored_grid_study(only))
    if args.speed_only:
        return _update_key(Path(args.out), "speed", speed)
    groups = tuple(g for g in args.mesh_groups.split(",") if g)
    if set(groups) - set(MESH_GROUPS):
        ap.error(f"--mesh-groups {args.mesh_groups!r}: expected some of {MESH_GROUPS}")
    only = [c for c in args.mesh_conditions.split(",") if c]
    if args.mesh_cost_only:
        path = Path(args.out)
        out = json.loads(path.read_text()) if path.is_file() else {}
        cost = {"machine": machine(), **mesh_cost()}
        cost["machine"]["load_average_at_end"] = list(os.getloadavg())
        out.setdefault("mesh_study", {})["cost"] = cost
        path.write_text(json.dumps(out, indent=2))
        print(json.dumps(cost, indent=2))
        return 0
    if args.mesh_study_only:
        path = Path(args.out)
        out = json.loads(path.read_text()) if path.is_file() else {}
        new = {"machine": machine(), **mesh_study(groups=groups, only=only,
                                                    cost=not args.mesh_skip_cost)}
        new["machine"]["load_average_at_end"] = list(os.getloadavg())
        out["mesh_study"] = merge_mesh_study(out.get("mesh_study", {}), new, groups)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2))
        print(json.dumps(out["mesh_study"], indent=2))
        return 0
    cfg = bench_config(args.scenarios)
    out = {"machine": machine(), "config": {"pack": "1s2p", "scenario": "25 degC, 1C cccv",
                                            "n_scenarios": args.scenarios, "cycles": 1,
                                            "model": cfg.model.model, "var_pts": cfg.model.var_pts}}
    out["stepping"] = stepping_cost(cfg)
    out["speed"] = speed()
    out["experiment_reference"] = experiment_cost(cfg)
    n_all = os.cpu_count() or 1
    out["generate"] = [run_generate(cfg, 1), run_generate(cfg, n_all)]
    out["speedup"] = (out["generate"][1]["cell_cycles_per_minute"]
                      / out["generate"][0]["cell_cycles_per_minute"])
    out["mesh_study"] = mesh_study()
    out["stored_grid"] = stored_grid_study()
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
