"""Per-cycle capacity jitter of aged cycles with the grid cut-off and with the exact one (issue
#10's capacity sawtooth). Writes JSON.

    .venv/bin/python scripts/bench_cutoff.py [--config configs/generate/life-demo.yaml]
        [--scenario 0] [--age 88] [--cycles 14] [--skip 1] [--work /tmp/bench_cutoff] [--out FILE]

1. Ages the scenario ``--age`` cycles with ``solver.cutoff: grid`` (the stepping of stores made
   before the exact cut-off) in a scratch store, stopping there with its checkpoint (or reuses
   ``<work>/aged.zarr`` when it holds that checkpoint).
2. From a copy of that aged store runs the next ``--cycles`` cycles once with ``grid`` and once
   with ``crossing`` (in this process, one worker; the checkpoint is resumed directly, so both
   start from the same aged state).
Jitter: the pack capacity (the charge of one parallel group, A.h) of the resumed cycles without
check-ups and without the first ``--skip`` (the first discharge after the resume starts from a
charge made with the grid cut-off), minus a straight line fitted through them (capacity fades smoothly over a few cycles):
RMS and largest residual, also as a fraction of one period's charge at the requested current;
``jitter_steady`` also leaves out the cycle after a check-up (its charge started from the
check-up's deeper discharge and its CV hold is time-limited: a real history effect).
Cost: CPU seconds of this process between the first and the last cycle end, per cell-cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Stop(BaseException):
    """Ends the ageing run after its checkpoint (not an Exception: no failure is recorded)."""


def _config(path: str, scenario: int, n_cycles: int, cutoff: str):
    from packtwin.sim import config as cfgmod
    from packtwin.sim.generate import parse

    cfg, _ = parse(["--config", path])
    d = cfgmod.to_dict(cfg)
    d["scenarios"] = [d["scenarios"][scenario]]
    d["n_cycles"] = n_cycles
    d["solver"]["cutoff"] = cutoff
    return cfgmod.from_dict(d)


def _age(cfg, store: Path, age: int) -> None:
    from packtwin.sim import checkpoint, generate, scenario

    if checkpoint.file_for(store, 0).exists():
        return
    if store.exists():
        shutil.rmtree(store)

    def stop(s, cycle):
        if cycle >= age:
            raise _Stop()

    scenario.CYCLE_HOOK = stop
    try:
        generate.run(cfg, store, workers=1, quiet=True, log=lambda *a: None)
    except _Stop:
        pass
    finally:
        scenario.CYCLE_HOOK = None


def _resume(cfg, aged: Path, work: Path, age: int, skip: int) -> dict:
    from packtwin.sim import config as cfgmod
    from packtwin.sim import scenario
    from packtwin.sim.generate import draw_cells

    copy = work / f"resume-{cfg.solver.cutoff}.zarr"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(aged, copy)
    cells, nominal = draw_cells(cfg)
    ends = []
    scenario.CYCLE_HOOK = lambda s, c: ends.append((c, time.process_time()))
    try:
        res = scenario.run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 0,
                                     "cell_values": cells, "nominal": nominal,
                                     "store": str(copy), "checkpoint_every": 1})
    finally:
        scenario.CYCLE_HOOK = None
    if res["message"]:
        raise RuntimeError(res["message"])
    npar = cfg.pack.n_parallel
    cyc = np.arange(age + 1, cfg.n_cycles + 1)
    cap = res["summary"]["capacity"][:npar].sum(axis=0)[cyc - 1]
    checkup = np.array([cfgmod.is_checkup(cfg, int(c)) for c in cyc])
    keep = ~checkup & (cyc > age + skip)
    # the cycle after a check-up starts from a charge that began deeper (its CV is time-limited):
    # a real history effect, not jitter; reported with and without it
    steady = keep & ~np.array([cfgmod.is_checkup(cfg, int(c) - 1) for c in cyc])
    one_period = cfg.scenarios[0].discharge_c_rate * res_capacity(cfg) * cfg.solver.period_s / 3600
    n_cells = cfg.pack.n_series * npar
    (c0, t0), (c1, t1) = ends[0], ends[-1]
    out = {"cutoff": cfg.solver.cutoff, "cycles": cyc.tolist(),
           "pack_capacity_ah": [round(float(c), 6) for c in cap],
           "one_period_charge_ah": one_period,
           "cpu_s_per_cell_cycle": (t1 - t0) / ((c1 - c0) * n_cells),
           "coupling_steps": res["steps"], "cell_solves": res["cell_solves"]}
    for name, sel in (("jitter", keep), ("jitter_steady", steady)):
        resid = cap[sel] - np.polyval(np.polyfit(cyc[sel], cap[sel], 1), cyc[sel])
        rms, top = float(np.sqrt(np.mean(resid ** 2))), float(np.abs(resid).max())
        out[name] = {"cycles": cyc[sel].tolist(), "rms_ah": rms, "max_ah": top,
                     "rms_per_period_charge": rms / one_period,
                     "max_per_period_charge": top / one_period}
    return out


def res_capacity(cfg) -> float:
    """The pack's nominal capacity at 1C [A.h] (one parallel group)."""
    from packtwin.sim.cell import get_model
    from packtwin.sim.generate import draw_cells

    keys = tuple(p.key for p in cfg.variation.parameters)
    _, nominal = draw_cells(cfg)
    m = get_model(cfg.model, keys, (nominal["neg_radius"], nominal["pos_radius"]))
    return m.capacity_ah * cfg.pack.n_parallel


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "generate" / "life-demo.yaml"))
    ap.add_argument("--scenario", type=int, default=0)
    ap.add_argument("--age", type=int, default=88)
    ap.add_argument("--cycles", type=int, default=14)
    ap.add_argument("--skip", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bench_cutoff")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.age + args.cycles
    aged = work / "aged.zarr"
    t0 = time.perf_counter()
    _age(_config(args.config, args.scenario, n, "grid"), aged, args.age)
    age_s = time.perf_counter() - t0
    out = {"config": args.config, "scenario": args.scenario, "aged_cycles": args.age,
           "ageing_wall_s": age_s,  # ~0 where the aged store was reused "load_average_at_start": list(os.getloadavg()),
           "cpu_count": os.cpu_count()}
    for cutoff in ("grid", "crossing"):
        out[cutoff] = _resume(_config(args.config, args.scenario, n, cutoff), aged, work, args.age,
                              args.skip)
    out["cpu_ratio_crossing_to_grid"] = (out["crossing"]["cpu_s_per_cell_cycle"]
                                         / out["grid"]["cpu_s_per_cell_cycle"])
    out["cell_solve_ratio_crossing_to_grid"] = (out["crossing"]["cell_solves"]
                                                / out["grid"]["cell_solves"])
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
