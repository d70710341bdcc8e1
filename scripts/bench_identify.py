"""The identification's cost: the core's Newton solves backpropagated through every iteration
against implicitly (``CoreConfig.implicit_grad``, :mod:`packtwin.physics.electrode_pair`).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_identify.py \
        [--store data/observer-check-s13.zarr] [--samples 400] [--fit] \
        --out reports/bench_identify.json

The log: the cells of a check store on the cycle ``packtwin evaluate`` identifies them on
(scenario 0, snapshot 0, its first ``--samples`` samples after the rested start), or, without
``--store``, a log the nominal core makes itself (two cells, 1C discharge, rest, 0.5C charge at
10 s, 25 degC). The core is evaluate's (``observer_predict.OBSERVER_CORE``: plating, 12
particles per electrode). For each mode, one evaluation of the fit's objective (forward through
the log and backward to the parameters, at a fixed point 0.5 prior std off nominal, from the
start the fit starts from): wall time of each pass (best of ``--repeats``), the objective, and
per cell the relative difference of the gradient vectors between the modes. ``--fit``: also
the whole fit (:func:`identify`, its default iterations) in each mode: wall time, evaluations,
final objective and the fitted parameters' largest difference (in prior std). One thread.
Cost: ~2 min without ``--fit`` on a store's whole cycle (828 samples), ~25 min with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from packtwin import schema  # noqa: E402
from packtwin.data.store import open_store  # noqa: E402
from packtwin.eval.observer_predict import OBSERVER_CORE  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.identify import (IdentifyConfig, _params_of, identify,  # noqa: E402
                                       model_voltage, start_from_voltage)
from bench_report import write_report  # noqa: E402

PERIOD_DEFAULT = 10.0


def store_log(path: str, samples: int, scenario: int = 0, with_end: bool = False):
    """V, I, T [cells, K] of a scenario (positional; default 0), snapshot 0 of a store (samples
    1..K after the rested start, K at most ``samples``) and its sample period [s]; with
    ``with_end``: (V, I, T, I_end, period), I_end the current at each sample's instant (the
    store's ``current_end``, or I where the store predates it)."""
    ds = open_store(path)
    n = int(ds["valid"].isel(scenario=scenario, snapshot=0).values.sum())
    k = min(samples, n - 1)

    def get(name):
        var = ds[name].isel(scenario=scenario, snapshot=0).transpose("cell", "time")
        return torch.as_tensor(var.values[:, 1:k + 1].astype(float))

    V, I, T = get("voltage"), get("current"), get("temperature")
    period = float(ds.attrs["period_s"])
    if not with_end:
        return V, I, T, period
    return V, I, T, get(schema.instant_current(ds)), period


def _core_log(samples: int):
    third = samples // 3
    charge = third + third // 2
    pattern = [5.0] * third + [0.0] * (samples - third - charge) + [-2.5] * charge
    I = torch.tensor(pattern, dtype=torch.float64)[None].expand(2, -1).contiguous()
    T = torch.full_like(I, 298.15)
    with torch.no_grad():
        V = model_voltage(CoreParams.nominal(2), torch.tensor([0.85, 0.8], dtype=torch.float64),
                          I, T, PERIOD_DEFAULT, OBSERVER_CORE)
    return V, I, T, PERIOD_DEFAULT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    load0 = list(os.getloadavg())
    V, I, T, period = (store_log(args.store, args.samples) if args.store
                       else _core_log(args.samples))
    B = V.shape[0]
    cfg = IdentifyConfig()
    nominal = CoreParams.nominal(B)
    start = start_from_voltage(ReducedCore(nominal, OBSERVER_CORE), V[:, 0], I[:, 0], T[:, 0])
    z0 = 0.5 * torch.randn(B, len(cfg.names), generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    modes, grads = {}, {}
    for implicit in (False, True):
        core = dataclasses.replace(OBSERVER_CORE, implicit_grad=implicit)
        fwd, bwd = [], []
        for _ in range(args.repeats):
            z = z0.clone().requires_grad_(True)
            t0 = time.perf_counter()
            v = model_voltage(_params_of(nominal, z, cfg), start, I, T, period, core)
            loss = 0.5 * (((v - V) / cfg.voltage_noise_v) ** 2).sum()
            t1 = time.perf_counter()
            (g,) = torch.autograd.grad(loss, [z])
            fwd.append(t1 - t0)
            bwd.append(time.perf_counter() - t1)
        grads[implicit] = g
        modes["implicit" if implicit else "unrolled"] = {
            "forward_s": round(min(fwd), 3), "backward_s": round(min(bwd), 3),
            "evaluation_s": round(min(fwd) + min(bwd), 3), "objective": float(loss.detach())}
    # per cell: |g_implicit - g_unrolled| / |g_unrolled| over the cell's parameters
    rel = ((grads[True] - grads[False]).norm(dim=1) / grads[False].norm(dim=1)).tolist()
    result = {
        "log": args.store or "core-made (nominal, 1C discharge / rest / 0.5C charge)",
        "cells": B, "samples": int(V.shape[1]), "period_s": period,
        "fit_iterations": cfg.iterations,
        "core": dataclasses.asdict(OBSERVER_CORE), "modes": modes,
        "evaluation_speedup": round(modes["unrolled"]["evaluation_s"]
                                    / modes["implicit"]["evaluation_s"], 2),
        "gradient_relative_difference_per_cell": rel,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1,
                    "cpu_count": os.cpu_count(), "loadavg_1_5_15_at_start": load0},
    }
    if args.fit:
        fits = {}
        for implicit in (False, True):
            t0 = time.perf_counter()
            res = identify(nominal, V, I, T, period,
                           dataclasses.replace(cfg, implicit_grad=implicit), OBSERVER_CORE)
            fits[implicit] = res
            result.setdefault("fit", {})["implicit" if implicit else "unrolled"] = {
                "wall_s": round(time.perf_counter() - t0, 1),
                "objective_evaluations": len(res.loss_history),
                "final_objective": res.loss_history[-1],
                "fit_voltage_rmse_mV": [round(1e3 * float(x), 3) for x in res.voltage_rmse]}
            print(result["fit"], flush=True)
        result["fit"]["max_z_difference_prior_std"] = float(
            (fits[True].z - fits[False].z).abs().max())
        result["fit"]["speedup"] = round(result["fit"]["unrolled"]["wall_s"]
                                         / result["fit"]["implicit"]["wall_s"], 2)
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
