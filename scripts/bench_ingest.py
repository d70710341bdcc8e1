"""Benchmark ``packtwin ingest`` on a generated BMS log, as JSON.

    .venv/bin/python scripts/bench_ingest.py [--series 24 --parallel 4 --seconds 3600] [--out FILE]

The log is a wide-form CSV (one voltage and one temperature per cell, one pack current) sampled
every second with 1 % of the rows shuffled and a few duplicated, resampled to 10 s. Only the
speed of reading, repairing, resampling and writing is measured; the values are made up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_log(path: Path, n_series: int, n_parallel: int, seconds: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=float)
    n = n_series * n_parallel
    cols = {"time": t, "pack_current": 10.0 * np.sign(np.sin(t / 300.0))}
    for c in range(n):
        cols[f"V_{c + 1}"] = 3.7 - 0.3 * t / seconds + 0.001 * rng.standard_normal(t.size)
        cols[f"T_{c + 1}"] = 25.0 + 0.1 * rng.standard_normal(t.size)
    df = pd.DataFrame(cols)
    swap = rng.choice(t.size - 1, t.size // 100, replace=False)
    idx = np.arange(t.size)
    idx[swap], idx[swap + 1] = idx[swap + 1], idx[swap]
    df = pd.concat([df.iloc[idx], df.iloc[:5]])
    df.to_csv(path, index=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=24)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--period-s", type=float, default=10.0)
    ap.add_argument("--out", default="reports/bench_ingest.json")
    args = ap.parse_args(argv)
    from packtwin.data import ingest

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bms.csv"
        make_log(log, args.series, args.parallel, args.seconds)
        t0 = time.perf_counter()
        ds = ingest.build_dataset([log], period_s=args.period_s,
                                  topology=f"{args.series}s{args.parallel}p",
                                  units={"voltage": "V", "current": "A", "temperature": "degC"})
        t1 = time.perf_counter()
        ingest.write(ds, Path(tmp) / "pack.zarr")
        t2 = time.perf_counter()
        result = {
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs), shared with other jobs",
            "log": {"cells": args.series * args.parallel, "rows": args.seconds + 5,
                    "csv_bytes": log.stat().st_size, "period_in_s": 1.0},
            "period_out_s": args.period_s,
            "read_repair_resample_s": round(t1 - t0, 3),
            "write_s": round(t2 - t1, 3),
            "repairs": json.loads(ds.attrs["repairs"]),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
