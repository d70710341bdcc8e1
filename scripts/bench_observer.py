"""The learned observer against the EKF and the open-loop core, on logs that start under load.

    .venv/bin/python scripts/bench_observer.py [--out reports/bench_observer.json]
        [--train-cells 24] [--train-samples 60] [--iterations 40] [--test-cells 8]
        [--test-samples 120] [--period 10]

Data: made by the reduced core itself (``packtwin.physics.core``, default resolution), so the
model is exact here and the comparison isolates the estimators; the same comparison on PyBaMM DFN logs
is ``scripts/bench_observer_dfn.py``. Each cell has its own parameters
(D_n, D_p, k_n, k_p, contact resistance drawn within +-20 % of nominal; known to every
estimator, as in the EKF bench), temperature (10-40 degC) and a piecewise-constant current
(-0.5C to 1.5C, some rests, segments of 1-5 min). The truth runs from rest at SOC 40-95 % for
10 min of that load before the log starts, so the log starts mid-drive with gradients in the
particles (a cell may be in one of the drive's rests at its first sample); the measured voltage has 10 mV Gaussian noise. Every estimator starts from a rest
state at the true SOC +-15-30 % (random sign, clipped to 2-98 %), the cell's true parameters and
the first sample's current.

Estimators: the open-loop core from that prior; the EKF (``packtwin.physics.ekf``, default
config); the learned observer (``packtwin.physics.learned_observer``) trained here briefly
(Adam, backpropagation through the core over the whole training log) on training logs drawn with
another seed. Reported on the held-out logs: c_s RMSE over all particles and shells in % of
c_max per electrode vs time since the start, time after which it stays below 1 % of c_max
(both electrodes; per cell, then median and max; None: not within the log), voltage RMSE of the
model voltage (before each sample's correction) against the noise-free truth.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin.eval.observer_bench import (core_made_logs, core_made_pack, mean_std,  # noqa: E402
                                         run_estimator, summarise, train_observer)
from packtwin.physics.learned_observer import ObserverNet  # noqa: E402
from bench_report import write_report  # noqa: E402  (scripts/ is on sys.path when run)


def one_seed(args, seed: int) -> dict:
    """Train on one draw, evaluate every estimator on another (both from ``seed``)."""
    torch.manual_seed(seed)
    g_train = torch.Generator().manual_seed(1000 + seed)
    g_test = torch.Generator().manual_seed(2000 + seed)
    core_tr, lo_tr, hi_tr = core_made_pack(args.train_cells, g_train)
    log_tr = core_made_logs(core_tr, lo_tr, hi_tr, args.train_samples, args.period, g_train)
    net = ObserverNet(args.hidden, args.max_soc_step, args.max_tilt_step).double()
    t0 = time.perf_counter()
    losses = train_observer(net, core_tr, log_tr, lo_tr, hi_tr, args.period, args.iterations,
                            args.lr)
    res: dict = {"training": {"seconds": time.perf_counter() - t0, "loss_first": losses[0],
                              "loss_last": losses[-1], "losses": losses,
                              "n_parameters": sum(p.numel() for p in net.parameters())}}
    core, lo, hi = core_made_pack(args.test_cells, g_test)
    log = core_made_logs(core, lo, hi, args.test_samples, args.period, g_test)
    res["test_prior_soc_error"] = log["prior_soc_error"].tolist()
    res["test_first_current_a"] = log["I"][:, 0].tolist()
    out = {}
    for name in ("open_loop_core", "ekf", "learned_observer"):
        t0 = time.perf_counter()
        with torch.no_grad():
            c_n, c_p, v = run_estimator(name, core, log, lo, hi, args.period, net)
        out[name] = summarise(core, c_n, c_p, v, log, args.period)
        out[name]["seconds"] = time.perf_counter() - t0
        print(seed, name, json.dumps(out[name]), flush=True)
    res["held_out"] = out
    return res


def summary_over_seeds(per_seed: dict) -> dict:
    """Mean and std over seeds of each estimator's headline numbers."""
    names = next(iter(per_seed.values()))["held_out"].keys()
    return {name: mean_std([r["held_out"][name] for r in per_seed.values()]) for name in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_observer.json"))
    ap.add_argument("--train-cells", type=int, default=24)
    ap.add_argument("--train-samples", type=int, default=60)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--test-cells", type=int, default=8)
    ap.add_argument("--test-samples", type=int, default=120)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="one training and one held-out draw per seed")
    ap.add_argument("--max-soc-step", type=float, default=0.02)
    ap.add_argument("--max-tilt-step", type=float, default=0.001)
    ap.add_argument("--hidden", type=int, default=32)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result: dict = {"command": " ".join(["scripts/bench_observer.py"] + (argv or sys.argv[1:])),
                    "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                "torch_version": torch.__version__, "threads": 1,
                                "loadavg_1_5_15_at_start": list(os.getloadavg())},
                    "config": vars(args), "per_seed": {}}
    for seed in args.seeds:
        result["per_seed"][str(seed)] = one_seed(args, seed)
    result["summary"] = summary_over_seeds(result["per_seed"])
    print(json.dumps(result["summary"], indent=1), flush=True)
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
