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
per-cycle arrays hold all cycles of a cell in one chunk, so each checkpoint rewrites them; their
size at the last checkpoint is given, it grows with the cycles filled).
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
    args = ap.parse_args(argv)
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
