"""Cost of ageing a pack with ``packtwin generate`` per DFN cell-cycle, against
:func:`packtwin.sim.life_reference.run_life` (one cell, one uninterrupted PyBaMM Experiment per
chunk of cycles) on the same cell, mesh, temperature and C-rates, in the same run. Writes JSON.

    .venv/bin/python scripts/bench_pack_life.py [--config configs/generate/life-demo.yaml]
        [--scenario 0] [--cycles 3] [--max-step-periods N] [--out reports/bench_pack_life.json]

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


def main(argv=None) -> int:
    from bench_generate import machine

    from packtwin.sim.generate import parse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "generate" / "life-demo.yaml"))
    ap.add_argument("--scenario", type=int, default=0)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--max-step-periods", type=int, default=None,
                    help="override the config's solver.max_step_periods")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_pack_life.json"))
    args = ap.parse_args(argv)
    cfg, _ = parse(["--config", args.config])
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
    from bench_report import write_report  # scripts/ is on sys.path when run

    write_report(out, args.out)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
