"""The learned observer against the EKF and the open-loop core, on logs that start under load.

    .venv/bin/python scripts/bench_observer.py [--out reports/bench_observer.json]
        [--train-cells 24] [--train-samples 60] [--iterations 40] [--test-cells 8]
        [--test-samples 120] [--period 10]

Data: made by the reduced core itself (``packtwin.physics.core``, default resolution), so the
model is exact here and the comparison isolates the estimators; a DFN-made comparison is left to
``scripts/bench_core.py``'s EKF section and to future work. Each cell has its own parameters
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin.physics.core import CoreState, ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.ekf import CoreEKF  # noqa: E402
from packtwin.physics.learned_observer import LearnedObserver, ObserverNet  # noqa: E402
from packtwin.physics.ocv_inversion import invert_ocv  # noqa: E402
from packtwin.physics.observer_stream import cell_lines  # noqa: E402
from bench_report import write_report  # noqa: E402  (scripts/ is on sys.path when run)

CAPACITY_AH = 5.0
NOISE_V = 0.01


def make_pack(n: int, gen: torch.Generator) -> tuple[ReducedCore, torch.Tensor, torch.Tensor]:
    """Core for n cells with drawn parameters; each cell's SOC window (sto_n at 0 and 100 %)."""
    p = CoreParams.nominal(n)
    for k in ("D_n", "D_p", "k_n", "k_p", "R_contact"):
        setattr(p, k, getattr(p, k) * (0.8 + 0.4 * torch.rand(n, generator=gen, dtype=torch.float64)))
    core = ReducedCore(p)
    c = core.design.constants
    line = cell_lines(core)
    lo = invert_ocv(torch.full((n,), c.v_min, dtype=torch.float64), line)
    hi = invert_ocv(torch.full((n,), c.v_max, dtype=torch.float64), line)
    return core, lo, hi


def rest_state(core: ReducedCore, soc: torch.Tensor, lo, hi) -> CoreState:
    c = core.design.constants
    sto = lo + soc * (hi - lo)
    return core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)


def make_logs(core, lo, hi, K: int, period: float, gen: torch.Generator) -> dict:
    """Truth (states at samples 1..K of the log), measured V, I, T and the estimators' prior."""
    n = core.params.n_cells
    pre = int(round(600.0 / period))
    total = pre + K
    soc0 = 0.4 + 0.55 * torch.rand(n, generator=gen, dtype=torch.float64)
    I = torch.zeros(n, total, dtype=torch.float64)
    for b in range(n):
        k, soc = 0, float(soc0[b])
        while k < total:
            seg = int(torch.randint(int(60 / period), int(300 / period) + 1, (1,), generator=gen))
            seg = min(seg, total - k)
            rest = float(torch.rand(1, generator=gen)) < 0.2
            c_rate = 0.0 if rest else -0.5 + 2.0 * float(torch.rand(1, generator=gen))
            # keep the cell inside 10-95 % SOC (coulomb counting): no overcharge, no emptying
            hours = seg * period / 3600.0
            c_rate = min(c_rate, (soc - 0.10) / hours)
            c_rate = max(c_rate, (soc - 0.95) / hours)
            I[b, k:k + seg] = CAPACITY_AH * c_rate
            soc -= c_rate * hours
            k += seg
    T = (283.15 + 30.0 * torch.rand(n, 1, generator=gen, dtype=torch.float64)).expand(n, total)
    with torch.no_grad():
        _, out = core.simulate(rest_state(core, soc0, lo, hi), I, T, period)
    start = CoreState(out["c_n"][:, pre - 1], out["c_p"][:, pre - 1], out["c_e"][:, pre - 1],
                      out["L_sei"][:, pre - 1])
    c_max_n = core.design.constants.neg.c_max
    soc_start = ((start.c_n.mean((1, 2)) / c_max_n) - lo) / (hi - lo)  # shells ~equal weight: a
    # summary only; the prior's error is what matters
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    err = sign * (0.15 + 0.15 * torch.rand(n, generator=gen, dtype=torch.float64))
    prior_soc = (soc_start + err).clamp(0.02, 0.98)
    V_true = out["voltage"][:, pre:]
    return {"I": I[:, pre:], "T": T[:, pre:].contiguous(), "V_true": V_true,
            "V": V_true + NOISE_V * torch.randn(V_true.shape, generator=gen, dtype=torch.float64),
            "c_n": out["c_n"][:, pre:], "c_p": out["c_p"][:, pre:],
            "prior": rest_state(core, prior_soc, lo, hi), "prior_soc_error": prior_soc - soc_start}


def field_errors(core, c_n: torch.Tensor, c_p: torch.Tensor, log: dict) -> tuple[np.ndarray, np.ndarray]:
    """[B, K] c_s RMSE per electrode in % of c_max (all particles and shells)."""
    c = core.design.constants
    en = ((c_n - log["c_n"]) ** 2).mean((2, 3)).sqrt() / c.neg.c_max * 100
    ep = ((c_p - log["c_p"]) ** 2).mean((2, 3)).sqrt() / c.pos.c_max * 100
    return en.detach().numpy(), ep.detach().numpy()


def summarise(core, c_n, c_p, v_model, log, period: float) -> dict:
    en, ep = field_errors(core, c_n, c_p, log)
    K = en.shape[1]
    t = period * np.arange(1, K + 1)
    worst = np.maximum(en, ep)

    def time_below(e):
        above = np.nonzero(e >= 1.0)[0]
        if above.size == 0:
            return float(t[0])
        return None if above[-1] == K - 1 else float(t[above[-1] + 1])

    times = [time_below(w) for w in worst]
    known = [x for x in times if x is not None]
    marks = [m for m in (30, 60, 120, 300, 600, 1200) if m <= t[-1]]
    return {
        "c_s_n_rmse_pct_at_s": {str(m): float(en[:, int(m / period) - 1].mean()) for m in marks},
        "c_s_p_rmse_pct_at_s": {str(m): float(ep[:, int(m / period) - 1].mean()) for m in marks},
        "c_s_n_rmse_pct_last_5min": float(en[:, -int(300 / period):].mean()),
        "c_s_p_rmse_pct_last_5min": float(ep[:, -int(300 / period):].mean()),
        "time_to_below_1pct_s_per_cell": times,
        "time_to_below_1pct_s_median": float(np.median(known)) if len(known) == len(times) else None,
        "cells_below_1pct_by_end": len(known), "cells": len(times),
        "voltage_rmse_mV": float(1e3 * ((v_model - log["V_true"]) ** 2).mean().sqrt()),
    }


def run_open_loop(core, log, period):
    with torch.no_grad():
        _, out = core.simulate(log["prior"], log["I"], log["T"], period)
    return out["c_n"], out["c_p"], out["voltage"]


def run_ekf(core, log, lo, hi, period):
    ekf = CoreEKF(core)
    est = ekf.init(log["prior"], hi - lo, log["I"][:, 0], log["T"][:, 0])
    c_n, c_p, volts = [], [], []
    for k in range(log["I"].shape[1]):
        est, innov = ekf.step(est, log["I"][:, k], log["T"][:, k], log["V"][:, k], period)
        st = ekf.state(est)
        c_n.append(st.c_n)
        c_p.append(st.c_p)
        volts.append(log["V"][:, k] - innov)  # model voltage before the update
    return torch.stack(c_n, 1), torch.stack(c_p, 1), torch.stack(volts, 1)


def run_learned(core, net, log, lo, hi, period):
    obs = LearnedObserver(core, net, hi - lo)
    states, volts = obs.run(log["prior"], log["I"], log["T"], log["V"], period)
    return (torch.stack([s.c_n for s in states], 1), torch.stack([s.c_p for s in states], 1),
            volts)


def train(net, core, log, lo, hi, period, iterations: int, lr: float) -> list[float]:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    c = core.design.constants
    losses = []
    for it in range(iterations):
        opt.zero_grad()
        c_n, c_p, _ = run_learned(core, net, log, lo, hi, period)
        loss = ((((c_n - log["c_n"]) / c.neg.c_max) ** 2).mean()
                + (((c_p - log["c_p"]) / c.pos.c_max) ** 2).mean()) * 1e4  # (% of c_max)^2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        print(f"train iteration {it}: mean squared c_s error {float(loss):.4f} (% c_max)^2",
              flush=True)
    return losses


def one_seed(args, seed: int) -> dict:
    """Train on one draw, evaluate every estimator on another (both from ``seed``)."""
    torch.manual_seed(seed)
    g_train = torch.Generator().manual_seed(1000 + seed)
    g_test = torch.Generator().manual_seed(2000 + seed)
    core_tr, lo_tr, hi_tr = make_pack(args.train_cells, g_train)
    log_tr = make_logs(core_tr, lo_tr, hi_tr, args.train_samples, args.period, g_train)
    net = ObserverNet(args.hidden, args.max_soc_step, args.max_tilt_step).double()
    t0 = time.perf_counter()
    losses = train(net, core_tr, log_tr, lo_tr, hi_tr, args.period, args.iterations, args.lr)
    res: dict = {"training": {"seconds": time.perf_counter() - t0, "loss_first": losses[0],
                              "loss_last": losses[-1], "losses": losses,
                              "n_parameters": sum(p.numel() for p in net.parameters())}}
    core, lo, hi = make_pack(args.test_cells, g_test)
    log = make_logs(core, lo, hi, args.test_samples, args.period, g_test)
    res["test_prior_soc_error"] = log["prior_soc_error"].tolist()
    res["test_first_current_a"] = log["I"][:, 0].tolist()
    out = {}
    for name, fn in (("open_loop_core", lambda: run_open_loop(core, log, args.period)),
                     ("ekf", lambda: run_ekf(core, log, lo, hi, args.period)),
                     ("learned_observer", lambda: run_learned(core, net, log, lo, hi,
                                                              args.period))):
        t0 = time.perf_counter()
        with torch.no_grad():
            c_n, c_p, v = fn()
        out[name] = summarise(core, c_n, c_p, v, log, args.period)
        out[name]["seconds"] = time.perf_counter() - t0
        print(seed, name, json.dumps(out[name]), flush=True)
    res["held_out"] = out
    return res


def summary_over_seeds(per_seed: dict) -> dict:
    """Mean and std over seeds of each estimator's headline numbers."""
    keys = [("c_s_n_rmse_pct_at_s", "120"), ("c_s_p_rmse_pct_at_s", "120"),
            ("c_s_n_rmse_pct_at_s", "600"), ("c_s_p_rmse_pct_at_s", "600"),
            ("c_s_n_rmse_pct_last_5min", None), ("c_s_p_rmse_pct_last_5min", None),
            ("voltage_rmse_mV", None), ("cells_below_1pct_by_end", None), ("seconds", None)]
    out: dict = {}
    names = next(iter(per_seed.values()))["held_out"].keys()
    for name in names:
        out[name] = {}
        for key, sub in keys:
            vals = [r["held_out"][name][key] if sub is None else r["held_out"][name][key].get(sub)
                    for r in per_seed.values()]
            if any(v is None for v in vals):
                continue
            label = key if sub is None else f"{key}_{sub}"
            out[name][label] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                                "values": vals}
    return out


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
