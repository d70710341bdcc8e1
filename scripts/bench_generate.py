"""Benchmark of ``packtwin generate``: cell-cycles per minute with 1 worker vs all workers, the
DFN cost per cell-cycle of the pack stepper, and (for reference) a plain PyBaMM Experiment solve
of one cell over the same cycle. Writes JSON (default reports/bench_generate.json).

    .venv/bin/python scripts/bench_generate.py [--out reports/bench_generate.json] [--scenarios 4]
"""

from __future__ import annotations

import argparse
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


def stepping_cost(cfg) -> dict:
    """Cost of one cell-cycle in the pack stepper, without store I/O or process start-up."""
    from packtwin.sim import config as cfgmod
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.scenario import run_scenario

    cells, nominal = draw_cells(cfg)
    task = {"config": cfgmod.to_dict(cfg), "scenario": 0, "cell_values": cells, "nominal": nominal}
    run_scenario(task)  # builds and caches the models
    t0 = time.perf_counter()
    res = run_scenario(task)
    wall = time.perf_counter() - t0
    n_cells = cfg.pack.n_series * cfg.pack.n_parallel
    return {"s_per_cell_cycle": wall / (n_cells * res["cycles_done"]),
            "pack_steps": res["steps"], "newton_iterations_per_step": res["iterations"] / res["steps"],
            "period_s": cfg.solver.period_s}


def experiment_cost(cfg) -> dict:
    """A plain PyBaMM Experiment of the same cycle on one nominal cell (reference only)."""
    import pybamm

    from packtwin.sim.cell import nominal_parameter_values

    pv = nominal_parameter_values(cfg.model)
    q = float(pv["Nominal cell capacity [A.h]"])
    p = cfg.protocol
    exp = pybamm.Experiment([
        f"Discharge at 1C until {p.v_min} V", f"Rest for {p.rest_s} seconds",
        f"Charge at 1C until {p.v_max} V",
        f"Hold at {p.v_max} V until {p.cv_cutoff_c * q} A", f"Rest for {p.rest_s} seconds"],
        period=f"{cfg.solver.period_s} seconds")
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(dict(cfg.model.options)), parameter_values=pv,
                            experiment=exp, var_pts=dict(cfg.model.var_pts),
                            solver=pybamm.IDAKLUSolver())
    t0 = time.perf_counter()
    sim.solve()  # builds the experiment's models first
    t1 = time.perf_counter()
    sol = sim.solve()  # the same experiment again, built
    t2 = time.perf_counter()
    return {"setup_and_solve_s": t1 - t0, "solve_s_per_cycle": t2 - t1,
            "discharge_capacity_ah": float(sol["Discharge capacity [A.h]"].entries.max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_generate.json"))
    ap.add_argument("--scenarios", type=int, default=4)
    args = ap.parse_args(argv)
    cfg = bench_config(args.scenarios)
    out = {"machine": machine(), "config": {"pack": "1s2p", "scenario": "25 degC, 1C cccv",
                                            "n_scenarios": args.scenarios, "cycles": 1,
                                            "model": cfg.model.model, "var_pts": cfg.model.var_pts}}
    out["stepping"] = stepping_cost(cfg)
    out["experiment_reference"] = experiment_cost(cfg)
    n_all = os.cpu_count() or 1
    out["generate"] = [run_generate(cfg, 1), run_generate(cfg, n_all)]
    out["speedup"] = (out["generate"][1]["cell_cycles_per_minute"]
                      / out["generate"][0]["cell_cycles_per_minute"])
    out["machine"]["load_average_at_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
