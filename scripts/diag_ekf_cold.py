"""Why the EKF with the cells' TRUE parameters was the worst estimator at -10 degC (issue 9).

    .venv/bin/python scripts/diag_ekf_cold.py [--out reports/diag_ekf_cold.json] [--cells 4]
        [--seed 0] [--only pulses_-10degC ...]

The held-out logs of ``scripts/bench_observer_dfn.py`` (``--seed``: the same test cells, lead-ins,
noise and priors as ``--seeds S --only pulses_-10degC 3C_25degC``; the 3C log is always made, as
the bench makes it first), then, per condition and
parameter set (the cells' true parameters from the draw, and nominal ones), each row changing one
thing:

* ``open_loop_true_start``: the core from the DFN's own state at the log's start, never corrected:
  how good the model with these parameters is (a wrongly mapped true parameter shows here);
* ``ekf_true_start``: the EKF started at that state (is the filter stable near the truth?), and
  ``ekf_true_start_floor_trace``: the samples where its prediction drained the electrolyte to
  the core's floor and the c_s error around the first one (where it leaves the truth);
* ``ekf_rest_ce``: the EKF from the log's prior (true SOC -30 %, at rest) with a uniform
  electrolyte at rest: the EKF before this diagnosis;
* ``ekf_true_ce``: the same prior with the DFN's electrolyte at the start (oracle electrolyte);
* ``ekf_load_ce``: the same prior with the electrolyte's steady polarisation under the first
  current at the first temperature (``packtwin.physics.ekf.electrolyte_load_state``): the EKF now;
* ``ekf_load_ce_load_std_1A``: ``ekf_load_ce`` with a 1 A std on the particles' load profile
  (``EKFConfig.prior_load_std_a``): how much the ranking of the parameter sets moves with one
  tuning knob;
* ``ekf_load_ce_params_1e-9_larger``: ``ekf_load_ce`` with every parameter 1e-9 larger: a
  filter whose result moves with that is chaotic on this log, and a ranking of parameter sets
  on 4 cells says little.

Also the prior's electrolyte error against the DFN's (rest and steady load profile), per cell.
Metrics as the bench's (``packtwin.eval.observer_bench.summarise``): c_s RMSE per electrode over
the last 5 min in % of c_max, voltage RMSE of the model voltage against the noise-free DFN.
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

from bench_observer_dfn import TEST, core_for, nominal_params  # noqa: E402
from bench_report import write_report  # noqa: E402
from packtwin.eval.dfn_logs import dfn_logs, draw  # noqa: E402
from packtwin.eval.observer_bench import _prior, run_ekf, run_open_loop, summarise  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.ekf import (STEADY_S, CoreEKF, EKFConfig,  # noqa: E402
                                  electrolyte_load_state)
from packtwin.physics.electrolyte import C_MIN  # noqa: E402
from packtwin.physics.observer_stream import cell_soc_window  # noqa: E402
from packtwin.sim.reference import fine_model_config  # noqa: E402

KEYS = ("c_s_n_rmse_pct_last_5min", "c_s_p_rmse_pct_last_5min", "voltage_rmse_mV")


def _row(core, out, log, period: float, t0: float) -> dict:
    m = summarise(core, *out, log, period)
    row = {k: m[k] for k in KEYS}
    # per cell: which cells carry the mean (a single failed cell moves it a lot)
    c = core.design.constants
    last = int(round(300 / period))
    row["c_s_n_rmse_pct_last_5min_per_cell"] = (
        ((out[0][:, -last:] - log["c_n"][:, -last:]) ** 2).mean((1, 2, 3)).sqrt()
        / c.neg.c_max * 100).tolist()
    row["seconds"] = time.perf_counter() - t0
    return row


def floor_trace(core: ReducedCore, log: dict, period: float) -> dict:
    """The EKF from the DFN's true state, per cell: the samples at which the filter's own
    prediction drained the electrolyte to its floor (``electrolyte.C_MIN``), and the negative
    c_s error [% c_max] before that sample, after its prediction and after its update (the
    first such sample), and at the end."""
    lo, hi = cell_soc_window(core)
    ekf = CoreEKF(core, EKFConfig(prior_ce_load=False))
    B = core.params.n_cells
    est = ekf.init(log["true_start"], hi - lo, torch.zeros(B, dtype=core.dtype), log["T"][:, 0])
    c_max = core.design.constants.neg.c_max
    err = lambda c_n, k: ((c_n - log["c_n"][:, k]) ** 2).mean((1, 2)).sqrt() / c_max * 100  # noqa: E731
    at_floor: list[list[int]] = [[] for _ in range(B)]
    first: list[dict | None] = [None] * B
    prev = err(ekf.state(est).c_n, 0)
    with torch.no_grad():
        for k in range(log["I"].shape[1]):
            pred = core.step(ekf.state(est), log["I"][:, k], log["T"][:, k], period)
            est, _ = ekf.step(est, log["I"][:, k], log["T"][:, k], log["V"][:, k], period)
            e_pred, e_post = err(pred.c_n, k), err(ekf.state(est).c_n, k)
            for b in torch.nonzero(pred.c_e.min(1).values <= C_MIN * (1 + 1e-9))[:, 0].tolist():
                at_floor[b].append(k)
                if first[b] is None:
                    first[b] = {"sample": k, "before": float(prev[b]),
                                "after_prediction": float(e_pred[b]),
                                "after_update": float(e_post[b])}
            prev = e_post
    return {"samples_at_floor": at_floor, "first": first, "end": prev.tolist()}


def diagnose(core: ReducedCore, log: dict, period: float) -> dict:
    lo, hi = cell_soc_window(core)
    prior = _prior(core, log, lo, hi)
    ce_load = electrolyte_load_state(core, prior.c_e, log["I_start"], log["T"][:, 0], STEADY_S)
    rest = EKFConfig(prior_ce_load=False)
    p = core.params
    nudged = ReducedCore(CoreParams(**{n: getattr(p, n) * (1 + 1e-9) for n in p.names()}),
                         core.config, core.design)
    runs = {
        "open_loop_true_start": lambda: run_open_loop(core, log, lo, hi, period,
                                                      start=log["true_start"]),
        # a state on the true profile needs no load profile added
        "ekf_true_start": lambda: run_ekf(core, log, lo, hi, period, rest, log["true_start"],
                                          torch.zeros_like(log["I_start"])),
        "ekf_rest_ce": lambda: run_ekf(core, log, lo, hi, period, rest),
        "ekf_true_ce": lambda: run_ekf(core, log, lo, hi, period, rest,
                                       prior._replace(c_e=log["true_start"].c_e.clone())),
        "ekf_load_ce": lambda: run_ekf(core, log, lo, hi, period, EKFConfig()),
        "ekf_load_ce_load_std_1A": lambda: run_ekf(
            core, log, lo, hi, period, dataclasses.replace(EKFConfig(), prior_load_std_a=1.0)),
        # every parameter 1e-9 larger (relative): how chaotic the filter is on this log
        "ekf_load_ce_params_1e-9_larger": lambda: run_ekf(
            nudged, log, lo, hi, period, EKFConfig()),
    }
    out = {}
    for name, fn in runs.items():
        t0 = time.perf_counter()
        with torch.no_grad():
            out[name] = _row(core, fn(), log, period, t0)
        print(name, {k: round(out[name][k], 2) for k in KEYS}, flush=True)
    out["ekf_true_start_floor_trace"] = floor_trace(core, log, period)
    print("floor trace", out["ekf_true_start_floor_trace"]["first"], flush=True)
    true_ce = log["true_start"].c_e
    out["prior_ce_rmse_mol_m3"] = {
        "rest": ((prior.c_e - true_ce) ** 2).mean(1).sqrt().tolist(),
        "steady_load": ((ce_load - true_ce) ** 2).mean(1).sqrt().tolist()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "diag_ekf_cold.json"))
    ap.add_argument("--cells", type=int, default=4, help="test cells (the bench's: 4)")
    ap.add_argument("--only", nargs="+", default=["pulses_-10degC"])
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0, help="the bench's seed (test cells, logs)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.only) - {c.name for c in TEST})
    if unknown:
        ap.error(f"--only: unknown conditions {unknown}; expected some of "
                 f"{[c.name for c in TEST]}")
    torch.set_num_threads(1)
    cells, nominal = draw(200 + args.seed, args.cells)  # the bench's test cells of this seed
    core = core_for(cells)
    nom = ReducedCore(nominal_params(cells, nominal))
    g = torch.Generator().manual_seed(4000 + args.seed)  # the bench's log generator
    dfn_cfg = fine_model_config(30, 16)
    result = {"command": "scripts/diag_ekf_cold.py " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "threads": 1,
                          "note": "2-core dev machine shared with other engineers' jobs",
                          "loadavg_at_start": list(os.getloadavg())},
              "conditions": {}}
    t_start = time.perf_counter()
    # the bench's order and its conditions before (3C), so that the generator gives its logs
    for cond in TEST:
        if cond.name not in args.only and cond.name != "3C_25degC":
            continue
        log = dfn_logs(core, cells, nominal, cond, args.period, g, dfn_cfg)
        if cond.name not in args.only:
            continue
        entry = {"soc_start": log["soc_start"].tolist(),
                 "prior_soc_error": log["prior_soc_error"].tolist(),
                 "first_current_a": log["I_start"].tolist(),
                 "temperature_c_range": [float(log["T"].min()) - 273.15,
                                         float(log["T"].max()) - 273.15]}
        for setting, c in (("true_parameters", core), ("nominal_parameters", nom)):
            print(cond.name, setting, flush=True)
            entry[setting] = diagnose(c, log, args.period)
        result["conditions"][cond.name] = entry
    result["total_seconds"] = time.perf_counter() - t_start
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
