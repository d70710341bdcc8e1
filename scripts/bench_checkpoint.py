"""Cost of the per-cycle checkpoints of ``packtwin generate`` (time and bytes per cycle) on one
scenario of a preset (default: life-demo's mesh and pack at 45 degC, 4 cycles). Writes JSON.

    .venv/bin/python scripts/bench_checkpoint.py [--config configs/generate/life-demo.yaml]
        [--scenario 1] [--cycles 4] [--out reports/bench_checkpoint.json]

One in-process run (one worker) with a checkpoint after every cycle. Time: the CPU and wall time
spent inside each checkpoint (rows into the store + the state file), split into cycles with and
without a snapshot (life-demo has a snapshot every 50th cycle, so its typical cycle has none),
against the run's own CPU time per cycle (this process; the machine may be shared, so CPU time
says more than wall time).
Bytes: the state file per checkpoint, and the store chunks a checkpoint rewrites (the scenario's
per-cycle chunks a checkpoint touches are rewritten whole: before stop 43 they held all cycles of
a cell, since then ``schema.CYCLE_CHUNK`` cycles of every cell of the scenario for the series and
every cell for the summaries; the size of the scenario's per-cycle chunks at the last checkpoint
is given, it grows with the cycles filled).

``--rows-at-scale CONFIG`` (key ``rows_at_scale``): the rows part alone at a preset's full size
(e.g. configs/generate/life-long.yaml: 1000 cycles), where the short run above cannot show it:
a store of that config's shape is made from the schema's template (no PyBaMM solve), its first
``--rows-filled`` cycles written, then the next 20 checkpoints' rows timed (CPU, one thread), in
the store layout of now (:func:`packtwin.schema.template`, the arrays opened once per run) and in
the layout before stop 43 (a chunk per cell over all cycles, the group opened at every
checkpoint). Per-cycle values are synthetic (smooth signals with noise, so compression works as
on real ones).

    .venv/bin/python scripts/bench_checkpoint.py --rows-at-scale configs/generate/life-long.yaml \
        --out reports/bench_checkpoint_rows.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def chunk_bytes(path: Path, names: list[str], scenario: int) -> int:
    """On-disk size of one scenario's chunks of ``names`` (zarr v3 chunk keys c/<s>/...)."""
    total = 0
    for name in names:
        d = path / name / "c" / str(scenario)
        total += sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.exists() else 0
    return total


def rows_at_scale(config: str, filled: int, timed_checkpoints: int = 20) -> dict:
    """CPU time of a checkpoint's rows (``checkpoint.write_rows``) in a store of ``config``'s
    full shape, after ``filled`` cycles: the layout of now against the one before stop 43."""
    import numpy as np
    import zarr

    from packtwin import schema
    from packtwin.data import store as storemod
    from packtwin.physics.constants import okane2022
    from packtwin.sim import checkpoint
    from packtwin.sim import config as cfgmod
    from packtwin.sim.generate import _grid_and_attrs, parse

    cfg, _ = parse(["--config", config])
    cell = okane2022()  # the nominal radii: they set only the store's grid, not its shape
    nominal = {"neg_radius": cell.neg.R, "pos_radius": cell.pos.R}
    grid, attrs, _ = _grid_and_attrs(cfg, nominal)
    n_cells, n_cycles, n_t = grid.n_series * grid.n_parallel, grid.n_cycles, cfgmod.n_time(cfg)
    rng = np.random.default_rng(0)
    res = {"scenario": 0, "snapshots": {},
           "summary": {n: 1.0 + 1e-3 * rng.standard_normal((n_cells, n_cycles))
                       for n, v in schema.VARIABLES.items() if schema.CYCLE in v.dims},
           "life": {}}
    wave = 3.6 + 0.3 * np.sin(np.arange(n_t) / 40.0)
    for n in grid.life_vars:
        v = schema.LIFE_VARIABLES[n]
        shape = (n_cells, n_cycles) + ((n_t,) if schema.TIME in v.dims else ())
        base = wave if schema.TIME in v.dims else 1.0
        res["life"][n] = base + 1e-4 * rng.standard_normal(shape)
    snaps = cfgmod.snapshot_cycles(cfg)
    layouts = {}
    with tempfile.TemporaryDirectory(prefix="bench-rows-") as tmp:
        for layout in ("now", "before_stop_43"):
            path = Path(tmp) / f"{layout}.zarr"
            ds = schema.template(grid, attrs)
            if layout == "before_stop_43":  # one cell per chunk, all cycles in it
                ds = ds.chunk({schema.CELL: 1, schema.CYCLE: -1})
            storemod.create_store(path, ds)
            # the snapshot cycles are left out of the timed range: a cycle without one is typical
            timed = [c for c in range(filled + 1, n_cycles + 1) if c not in snaps]
            checkpoint.write_rows(path, res, 0, filled, [])
            arrays = (dict(zarr.open_group(str(path), mode="r+").arrays())
                      if layout == "now" else None)
            cpu = []
            for a in timed[:timed_checkpoints]:  # the rows of cycle a alone, as after cycle a
                c0 = time.process_time()
                got = checkpoint.write_rows(path, res, a - 1, a, [], arrays=arrays)
                cpu.append(time.process_time() - c0)
                arrays = got if layout == "now" else None
            layouts[layout] = {
                "cpu_ms_per_checkpoint_median": 1e3 * float(np.median(cpu)),
                "cpu_ms_per_checkpoint": [round(1e3 * c, 2) for c in cpu],
                "cpu_s_per_scenario_of_checkpoint_rows": float(np.median(cpu)) * n_cycles,
                "chunks_life_voltage": list(zarr.open_array(str(path / "life_voltage")).chunks)
                if (path / "life_voltage").exists() else None}
    ratio = (layouts["before_stop_43"]["cpu_ms_per_checkpoint_median"]
             / layouts["now"]["cpu_ms_per_checkpoint_median"])
    return {"config": config, "cells": n_cells, "cycles": n_cycles, "samples_per_cycle": n_t,
            "filled_cycles": filled, "timed_checkpoints": timed_checkpoints,
            "layouts": layouts, "speedup": ratio,
            "note": "rows only (the state file is the same in both); CPU time of this process"}


def main(argv=None) -> int:
    from bench_generate import machine

    import numpy as np

    from packtwin import schema
    from packtwin.sim import config as cfgmod
    from packtwin.sim import scenario as scenario_mod
    from packtwin.sim.generate import parse, run

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "generate" / "life-demo.yaml"))
    ap.add_argument("--scenario", type=int, default=1)
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_checkpoint.json"))
    ap.add_argument("--rows-at-scale", metavar="CONFIG", default=None,
                    help="time only the rows part at this config's full size (no solve)")
    ap.add_argument("--rows-filled", type=int, default=500)
    args = ap.parse_args(argv)
    if args.rows_at_scale:
        from bench_report import write_report  # scripts/ is on sys.path when run

        out = {"machine": machine(), "command": " ".join(["scripts/bench_checkpoint.py"]
                                                        + list(argv or sys.argv[1:])),
               "rows_at_scale": rows_at_scale(args.rows_at_scale, args.rows_filled)}
        write_report(out, args.out)
        print(json.dumps(out["rows_at_scale"], indent=1))
        return 0
    cfg, _ = parse(["--config", args.config])
    cfg = dataclasses.replace(cfg, scenarios=[cfg.scenarios[args.scenario]], n_cycles=args.cycles)
    out = {"machine": machine(), "config": args.config,
           "scenario": dataclasses.asdict(cfg.scenarios[0]),
           "pack": f"{cfg.pack.n_series}s{cfg.pack.n_parallel}p", "cycles": args.cycles,
           "var_pts": cfg.model.var_pts, "cycle_series": cfg.cycle_series,
           "snapshot_cycles": cfgmod.snapshot_cycles(cfg), "checkpoint_every": 1}
    times = []  # (cycle, cpu s, wall s) of every checkpoint
    save = scenario_mod._save

    def timed(path, task, result, *args):
        c, t = time.process_time(), time.perf_counter()
        save(path, task, result, *args)
        times.append((result["cycles_done"], time.process_time() - c, time.perf_counter() - t))

    scenario_mod._save = timed
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        path = Path(tmp) / "s.zarr"
        lines: list[str] = []
        c0, t0 = time.process_time(), time.perf_counter()
        counts = run(cfg, path, workers=1, quiet=True, log=lines.append, checkpoint_every=1)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        per_cycle = [n for n, v in {**schema.VARIABLES, **schema.LIFE_VARIABLES}.items()
                     if schema.CYCLE in v.dims and (path / n).exists()]
        snap = [n for n, v in schema.VARIABLES.items() if schema.SNAPSHOT in v.dims]
        rows_bytes = chunk_bytes(path, per_cycle, 0)
        snapshot_bytes = chunk_bytes(path, snap, 0) / max(1, len(out["snapshot_cycles"]))
    n = counts["checkpoints"]
    assert counts["ok"] == 1 and n == args.cycles == len(times), (counts, lines)
    snapped = [c in out["snapshot_cycles"] for c, _, _ in times]
    plain = [t for t, s in zip(times, snapped) if not s] or times
    cpu_plain = float(np.mean([t[1] for t in plain]))
    out["run"] = {"cpu_s": cpu, "wall_s": wall, "cpu_s_per_cycle": cpu / args.cycles,
                  "log": lines}
    out["checkpoint"] = {
        "count": n,
        "per_checkpoint_cycle_cpu_s_wall_s": times,
        "cpu_s_per_cycle_without_snapshot": cpu_plain,
        "wall_s_per_cycle_without_snapshot": float(np.mean([t[2] for t in plain])),
        "cpu_s_per_cycle_with_snapshot": float(np.mean([t[1] for t, s in zip(times, snapped)
                                                        if s] or [np.nan])),
        "cpu_fraction_of_a_cycle_without_snapshot": cpu_plain / (cpu / args.cycles),
        "cpu_fraction_of_run": counts["checkpoint_cpu_s"] / cpu,
        "state_file_bytes": counts["checkpoint_bytes"] / n,
        "per_cycle_chunks_rewritten_bytes_at_last": rows_bytes,
        "per_cycle_arrays": per_cycle,
        "snapshot_chunk_bytes_per_snapshot_cycle": snapshot_bytes,
        "note": "the run's CPU time (and so its time per cycle, the fraction's denominator) "
                "includes the model builds and the initial rest",
    }
    from bench_report import write_report  # scripts/ is on sys.path when run

    write_report(out, args.out)
    print(json.dumps({k: v for k, v in out.items() if k != "run"} | {"run_cpu_s": cpu,
                                                                  "run_wall_s": wall}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
