"""Does the identification cycle tell the truth table from the fit? (issue 9)

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diag_identify_truth.py --seed 13 \
        --out reports/diag_identify_truth_s13.json

Why: with identified parameters the subspace filter's c_s error is 2-8x the oracle's on some
cells at the identification's own condition (development draw 13, cell 0: 1.17 % of c_max
against the oracle's ~0.15 %), its negative capacity fitted 2.3 % high where the table says
3.1 % low. Either the fit stops short of a better optimum (more iterations, another start would
help) or the cycle cannot tell the two apart (the objective is as low at the table as at the
fit: only other data would help). This fits each cell of a check pack
(data/observer-check-sS.zarr) on evaluate's identification cycle (scenario 0, snapshot 0, the
whole cycle; :func:`identify`, evaluate's core), then evaluates the same objective at the
store's truth table (all parameters, radii included) with only the start fitted (the same
prior on it), and on the straight line between the two in log-parameters (start refitted at
each point). Per cell: data term, prior term and voltage RMSE at each point, and the fit's
parameter errors against the table. Truth is read here only to score. Cost per draw on one core
beside other jobs: the fit ~7-15 min at 20 iterations (reports/diag_identify_truth_s13.json:
``--iterations 20``), twice that at 40; each start-only fit ~3-5 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from packtwin.data.store import open_store  # noqa: E402
from packtwin.eval.observer_predict import OBSERVER_CORE, oracle_params  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.identify import (IdentifyConfig, identify, model_voltage,  # noqa: E402
                                       parameter_errors)
from bench_identify import store_log  # noqa: E402
from _report import add_store_arguments, store_of, write_json  # noqa: E402


def fit_start(params: CoreParams, V, I, T, period: float, cfg: IdentifyConfig,
              iterations: int = 8, I_end=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The start stoichiometry [B] that minimises the identification's objective at fixed
    ``params`` (``identify`` with no parameter named: the same start prior and data term), and
    the model voltage there."""
    fit = identify(params, V, I, T, period, dataclasses.replace(cfg, names=(),
                                                                iterations=iterations),
                   OBSERVER_CORE, I_end=I_end)
    with torch.no_grad():
        return fit.start_sto, model_voltage(params, fit.start_sto, I, T, period, OBSERVER_CORE,
                                            I_end=I_end)


def terms(v, V, z: torch.Tensor | None, cfg: IdentifyConfig) -> dict:
    data = 0.5 * (((v - V) / cfg.voltage_noise_v) ** 2).sum(1)
    prior = 0.5 * (z ** 2).sum(1) if z is not None else torch.full_like(data, float("nan"))
    return {"data_term": data.tolist(), "parameter_prior_term": prior.tolist(),
            "voltage_rmse_mV": (1e3 * ((v - V) ** 2).mean(1).sqrt()).tolist()}


def log_between(a: CoreParams, b: CoreParams, t: float) -> CoreParams:
    return CoreParams(**{n: torch.exp((1 - t) * torch.log(getattr(a, n))
                                      + t * torch.log(getattr(b, n)))
                         if bool((getattr(a, n) > 0).all() & (getattr(b, n) > 0).all())
                         else (1 - t) * getattr(a, n) + t * getattr(b, n)
                         for n in a.names()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(ap)
    ap.add_argument("--samples", type=int, default=10 ** 9,
                    help="fit the cycle's first SAMPLES samples (default: all of it)")
    ap.add_argument("--iterations", type=int, default=IdentifyConfig().iterations)
    ap.add_argument("--line", type=float, nargs="*", default=[0.5])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    store = store_of(args)
    ds = open_store(store)
    V, I, T, I_end, period = store_log(store, args.samples, with_end=True)
    B = V.shape[0]
    cfg = IdentifyConfig(iterations=args.iterations)
    nominal = CoreParams.nominal(B)
    true = oracle_params(ds, list(range(B)), store)
    t0 = time.perf_counter()
    fit = identify(nominal, V, I, T, period, cfg, OBSERVER_CORE, I_end=I_end)
    wall_fit = time.perf_counter() - t0
    with torch.no_grad():
        v_fit = model_voltage(fit.params, fit.start_sto, I, T, period, OBSERVER_CORE,
                              I_end=I_end)
    # the table in the fit's coordinates (its radii are not fitted: z of D and k carry them)
    z_true = torch.stack([torch.log(getattr(true, n) / getattr(nominal, n)) / cfg.prior_std[n]
                          for n in cfg.names], 1)
    points = {"fit": {**terms(v_fit, V, fit.z, cfg), "start_sto": fit.start_sto.tolist()}}
    for t in [1.0, *args.line]:
        truth = t == 1.0
        params = true if truth else log_between(fit.params, true, t)
        start, v = fit_start(params, V, I, T, period, cfg, I_end=I_end)
        label = "truth" if truth else f"line_{t:g}"
        points[label] = {**terms(v, V, z_true if truth else None, cfg),
                         "start_sto": start.tolist()}
        print(label, json.dumps(points[label]), flush=True)
    err = {k: [round(100 * float(x), 2) for x in val]
           for k, val in parameter_errors(fit.params, true).items()}
    out = {"store": store, "cells": B, "samples": int(V.shape[1]), "iterations": args.iterations,
           "fit_wall_s": round(wall_fit, 1), "points": points,
           "fit_relative_error_pct": err,
           "truth_z_in_prior_std": z_true.tolist(), "fit_z": fit.z.tolist(),
           "note": "truth: the table's parameters (radii included), start fitted; line_t: "
                   "log-linear between the fit (0) and the table (1), start fitted"}
    return write_json(args.out, out)


if __name__ == "__main__":
    sys.exit(main())
