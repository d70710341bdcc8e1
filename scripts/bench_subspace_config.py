"""Step time of the subspace Kalman observer for a pack of nominal cells, per configuration: the
observers' default against CoreConfig / SubspaceConfig overrides, in one run, one thread.

    .venv/bin/python scripts/bench_subspace_config.py \\
        --config '{"core": {"n_x_n": 8, "n_x_p": 8}, "subspace": {"line_search": false}}' \\
        [--cells 100] [--steps 20] [--period 10] [--out reports/bench_subspace_config.json]

Why: issue 9's streaming target (<= 1 ms per 100-cell step) and the cost of each configuration
the README measures. The default is evaluate's (``observer_predict.OBSERVER_CORE`` and ``SubspaceConfig()``: since
stop 31 12 particles and the line search); overrides apply on it.
Each configuration is timed on the same log: 1C discharge at 25 degC from 60 % SOC with a
constant measured voltage (the filter corrects every step), after one untimed step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packtwin.eval.observer_predict import OBSERVER_CORE  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.observer_stream import cell_lines, cell_soc_window  # noqa: E402
from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver  # noqa: E402


def step_ms(core_overrides: dict, subspace_overrides: dict, cells: int, steps: int,
            period_s: float) -> float:
    """Mean wall time [ms] of one filter step for ``cells`` nominal cells."""
    import dataclasses

    core = ReducedCore(CoreParams.nominal(cells),
                       dataclasses.replace(OBSERVER_CORE, **core_overrides))
    lo, hi = cell_soc_window(core)
    c = core.design.constants
    sto = lo + 0.6 * (hi - lo)
    obs = SubspaceObserver(core, hi - lo, SubspaceConfig(**subspace_overrides))
    est = obs.init(core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max))
    I = torch.full((cells,), 5.0, dtype=core.dtype)  # 1C of the 5 A h cells
    T = torch.full((cells,), 298.15, dtype=core.dtype)
    V = torch.full((cells,), 3.7, dtype=core.dtype)
    est = obs.step(est, I, T, V, period_s)[0]  # untimed: first-call set-up
    t0 = time.perf_counter()
    for _ in range(steps):
        est = obs.step(est, I, T, V, period_s)[0]
    return 1e3 * (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", type=json.loads, default=[],
                    help='JSON {"core": {...}, "subspace": {...}}; repeatable (the default '
                         "configuration is always timed first)")
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--out", default="reports/bench_subspace_config.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for cfg in [{}] + args.config:
        unknown = set(cfg) - {"core", "subspace"}
        if unknown:
            ap.error(f"--config: keys must be 'core' and 'subspace', got {sorted(unknown)}")
        ms = step_ms(cfg.get("core", {}), cfg.get("subspace", {}), args.cells, args.steps,
                     args.period)
        rows.append({"config": cfg, "ms_per_step": ms})
        print(f"{json.dumps(cfg) if cfg else 'default'}: {ms:.1f} ms per {args.cells}-cell "
              f"{args.period:g} s step", flush=True)
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1,
                       "load_avg_1min_at_end": os.getloadavg()[0]},
           "cells": args.cells, "steps": args.steps, "period_s": args.period, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
