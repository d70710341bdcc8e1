"""State estimators on the reduced core run over a log, and their errors: the pieces shared by
``scripts/bench_observer.py`` (core-made logs) and ``scripts/bench_observer_dfn.py`` (PyBaMM
DFN logs).

A *log* is a dict of tensors for B cells and K samples after its start (sample 0):
``I``, ``T`` [B, K] (the stores' convention: the value over the step ending at sample k),
``V`` [B, K] (measured, with noise), ``V_true`` [B, K] (noise-free), ``c_n``, ``c_p``
[B, K, X, Nr] (the truth on the core's grid: particles through the thickness x shell centres),
and ``prior_soc`` [B] (where every estimator starts). Every estimator starts at rest at that SOC
on the cell's own lithium-inventory line (:func:`rest_state`) and returns (c_n, c_p, model
voltage) at samples 1..K; the model voltage is the one before each sample's correction.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.constants import F
from packtwin.physics.core import CoreState, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.ekf import CoreEKF, EKFConfig
from packtwin.physics.learned_observer import LearnedObserver, ObserverNet
from packtwin.physics.observer_stream import cell_lines, cell_soc_window
from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver
from packtwin.physics.particle_fv import particle_average

CAPACITY_AH = 5.0
NOISE_V = 0.01
ESTIMATORS = ("open_loop_core", "coulomb_counting", "ekf", "subspace_observer",
              "subspace_observer_dR", "subspace_observer_dR_step", "learned_observer")


# -- the cell's SOC window and rest states ------------------------------------------------------
def rest_state(core: ReducedCore, soc: Tensor, lo: Tensor, hi: Tensor) -> CoreState:
    """Uniform particles at ``soc`` [B] on each cell's inventory line."""
    c = core.design.constants
    sto = lo + soc * (hi - lo)
    return core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)


def soc_of(core: ReducedCore, c_n: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """SOC of negative fields [B, ..., X, Nr] on the core's grid (shell-volume average)."""
    theta = particle_average(c_n, core.sphere).mean(-1) / core.design.constants.neg.c_max
    shape = (-1,) + (1,) * (theta.dim() - 1)
    return (theta - lo.reshape(shape)) / (hi - lo).reshape(shape)


# -- logs made by the core itself (the model is exact) -----------------------------------------
def core_made_pack(n: int, gen: torch.Generator) -> tuple[ReducedCore, Tensor, Tensor]:
    """Core for n cells with drawn parameters (D, k, contact resistance within +-20 % of
    nominal) and each cell's SOC window."""
    p = CoreParams.nominal(n)
    for k in ("D_n", "D_p", "k_n", "k_p", "R_contact"):
        setattr(p, k, getattr(p, k) * (0.8 + 0.4 * torch.rand(n, generator=gen,
                                                                dtype=torch.float64)))
    core = ReducedCore(p)
    lo, hi = cell_soc_window(core)
    return core, lo, hi


def prior_soc_errors(n: int, gen: torch.Generator, low: float = 0.15, high: float = 0.30,
                     soc: Tensor | None = None) -> Tensor:
    """[B] SOC errors of random sign with magnitudes uniform in [low, high]; given the true
    ``soc``, the sign is flipped where the prior would leave [0.02, 0.98] (so the full error
    is kept: a clipped prior would be a smaller error than stated)."""
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    err = sign * (low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64))
    if soc is not None:
        err = torch.where(((soc + err) > 0.98) | ((soc + err) < 0.02), -err, err)
    return err


def core_made_logs(core: ReducedCore, lo: Tensor, hi: Tensor, K: int, period: float,
                   gen: torch.Generator) -> dict:
    """A random drive made by the core: 10 min of load before the log's start, K samples after,
    10 mV voltage noise, prior at the true SOC +-15-30 % (see ``scripts/bench_observer.py``)."""
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
    # plain mean over particles and shells (not volume-weighted), as when
    # reports/bench_observer.json was made: the prior's error is what matters
    theta = out["c_n"][:, pre - 1].mean((1, 2)) / core.design.constants.neg.c_max
    soc_start = (theta - lo) / (hi - lo)
    prior_soc = (soc_start + prior_soc_errors(n, gen)).clamp(0.02, 0.98)
    V_true = out["voltage"][:, pre:]
    return {"I": I[:, pre:], "T": T[:, pre:].contiguous(), "V_true": V_true,
            "V": V_true + NOISE_V * torch.randn(V_true.shape, generator=gen, dtype=torch.float64),
            "c_n": out["c_n"][:, pre:], "c_p": out["c_p"][:, pre:],
            "prior_soc": prior_soc, "prior_soc_error": prior_soc - soc_start}


# -- estimators --------------------------------------------------------------------------------
def _prior(core, log, lo, hi) -> CoreState:
    return rest_state(core, log["prior_soc"], lo, hi)


def run_open_loop(core, log, lo, hi, period, start: CoreState | None = None):
    """The core from the prior (or ``start``), never corrected."""
    with torch.no_grad():
        _, out = core.simulate(_prior(core, log, lo, hi) if start is None else start,
                               log["I"], log["T"], period)
    return out["c_n"], out["c_p"], out["voltage"]


def run_coulomb(core, log, lo, hi, period):
    """Coulomb counting from the prior: uniform particles moved by the measured charge along the
    cell's inventory line (no side reactions); voltage from the core's measurement model at
    those particles (so its error is the state's, not a missing overpotential)."""
    c, p = core.design.constants, core.params
    vol_n = p.eps_s_n * c.neg.L * c.neg.A
    sto0 = lo + log["prior_soc"] * (hi - lo)
    sto = sto0[:, None] - torch.cumsum(log["I"], 1) * period / (F * vol_n * c.neg.c_max)[:, None]
    line = cell_lines(core)
    c_n, c_p, volts = [], [], []
    with torch.no_grad():
        for k in range(sto.shape[1]):
            st = core.initial_state(sto[:, k] * c.neg.c_max,
                                    line.sto_p(sto[:, k]) * c.pos.c_max)
            volts.append(core.measure(st, log["I"][:, k], log["T"][:, k]).voltage)
            c_n.append(st.c_n)
            c_p.append(st.c_p)
    return torch.stack(c_n, 1), torch.stack(c_p, 1), torch.stack(volts, 1)


def run_ekf(core, log, lo, hi, period, config: EKFConfig | None = None,
            prior: CoreState | None = None, I0: Tensor | None = None):
    """The EKF from ``prior`` (default: the log's prior SOC at rest) with the load profile of
    ``I0`` (default below) added."""
    # the prior's load profile is that of the current flowing at the start (``I_start``: the
    # step ending at sample 0; 0 for a rested start); logs without it use the first sample's
    if I0 is None:
        I0 = log.get("I_start", log["I"][:, 0])
    ekf = CoreEKF(core) if config is None else CoreEKF(core, config)
    est = ekf.init(_prior(core, log, lo, hi) if prior is None else prior, hi - lo, I0,
                   log["T"][:, 0])
    c_n, c_p, volts = [], [], []
    for k in range(log["I"].shape[1]):
        est, innov = ekf.step(est, log["I"][:, k], log["T"][:, k], log["V"][:, k], period)
        st = ekf.state(est)
        c_n.append(st.c_n)
        c_p.append(st.c_p)
        volts.append(log["V"][:, k] - innov)  # model voltage before the update
    return torch.stack(c_n, 1), torch.stack(c_p, 1), torch.stack(volts, 1)


def run_subspace(core, log, lo, hi, period, config: SubspaceConfig | None = None):
    """The subspace filter (:mod:`packtwin.physics.subspace_observer`) from the log's prior with
    the load profile of the current flowing at the start, like :func:`run_ekf`."""
    config = SubspaceConfig() if config is None else config
    obs = SubspaceObserver(core, hi - lo, config)
    I0 = log.get("I_start", log["I"][:, 0])
    if config.history_s > 0:
        sto = lo + log["prior_soc"] * (hi - lo)
        est = obs.init_loaded(sto, I0, log["T"][:, 0], lo, hi)
    else:
        est = obs.init(_prior(core, log, lo, hi), I0, log["T"][:, 0])
    states, volts, _ = obs.run(est, log["I"], log["T"], log["V"], period)
    return (torch.stack([s.c_n for s in states], 1), torch.stack([s.c_p for s in states], 1),
            volts)


def run_learned(core, net: ObserverNet, log, lo, hi, period):
    obs = LearnedObserver(core, net, hi - lo)
    states, volts = obs.run(_prior(core, log, lo, hi), log["I"], log["T"], log["V"], period)
    return (torch.stack([s.c_n for s in states], 1), torch.stack([s.c_p for s in states], 1),
            volts)


def run_estimator(name: str, core, log, lo, hi, period, net: ObserverNet | None = None,
                  ekf_config: EKFConfig | None = None):
    """One of :data:`ESTIMATORS` (the learned observer needs ``net``; ``ekf_config``: the EKF's,
    default :class:`EKFConfig`) -> (c_n, c_p, voltage)."""
    if name == "open_loop_core":
        return run_open_loop(core, log, lo, hi, period)
    if name == "coulomb_counting":
        return run_coulomb(core, log, lo, hi, period)
    if name == "ekf":
        return run_ekf(core, log, lo, hi, period, ekf_config)
    if name == "subspace_observer":
        return run_subspace(core, log, lo, hi, period)
    if name == "subspace_observer_dR":  # plus an ohmic-resistance bias, updated every sample
        return run_subspace(core, log, lo, hi, period,
                            SubspaceConfig(biases=("dR",), dR_min_step_a=0.0))
    if name == "subspace_observer_dR_step":  # dR updated only where the current steps
        return run_subspace(core, log, lo, hi, period, SubspaceConfig(biases=("dR",)))
    if name == "learned_observer":
        if net is None:
            raise ValueError("run_estimator: the learned observer needs a trained net")
        with torch.no_grad():
            return run_learned(core, net, log, lo, hi, period)
    raise ValueError(f"run_estimator: unknown estimator {name!r}; expected one of {ESTIMATORS}")


def field_loss(core, c_n, c_p, log) -> Tensor:
    """Mean squared c_s error over particles, shells and samples, (% of c_max)^2, both
    electrodes summed: the learned observer's training loss."""
    c = core.design.constants
    return ((((c_n - log["c_n"]) / c.neg.c_max) ** 2).mean()
            + (((c_p - log["c_p"]) / c.pos.c_max) ** 2).mean()) * 1e4


def train_observer(net: ObserverNet, core, log, lo, hi, period, iterations: int, lr: float,
                   label: str = "", voltage_weight: float = 0.0) -> list[float]:
    """Adam on :func:`field_loss` (plus ``voltage_weight`` x the mean squared model-voltage
    error against the measured voltage in units of the noise, which is what trains a closure
    head), back-propagating through the core over the whole log."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for it in range(iterations):
        opt.zero_grad()
        c_n, c_p, v = run_learned(core, net, log, lo, hi, period)
        loss = field_loss(core, c_n, c_p, log)
        if voltage_weight > 0:
            loss = loss + voltage_weight * (((v - log["V"]) / NOISE_V) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        print(f"train{label} iteration {it}: loss {losses[-1]:.4f} (mean squared c_s error, "
              f"(% c_max)^2{', plus the voltage term' if voltage_weight > 0 else ''})",
              flush=True)
    return losses


# -- errors ------------------------------------------------------------------------------------
def field_errors(core, c_n: Tensor, c_p: Tensor, log: dict) -> tuple[np.ndarray, np.ndarray]:
    """[B, K] c_s RMSE per electrode in % of c_max (all particles and shells of the core's
    grid, equal weights)."""
    c = core.design.constants
    en = ((c_n - log["c_n"]) ** 2).mean((2, 3)).sqrt() / c.neg.c_max * 100
    ep = ((c_p - log["c_p"]) ** 2).mean((2, 3)).sqrt() / c.pos.c_max * 100
    return en.detach().numpy(), ep.detach().numpy()


def time_below(t: np.ndarray, err: np.ndarray, level: float = 1.0) -> float | None:
    """First time after which ``err`` stays below ``level`` to the end (None: not within)."""
    above = np.nonzero(err >= level)[0]
    if above.size == 0:
        return float(t[0])
    return None if above[-1] == len(err) - 1 else float(t[above[-1] + 1])


def summarise(core, c_n, c_p, v_model, log, period: float, last_s: float = 300.0) -> dict:
    """Errors of one estimator's run on one log: c_s RMSE per electrode (mean over cells) at
    fixed times and over the last ``last_s``, time after which both stay below 1 % of c_max
    (per cell), voltage RMSE of the model voltage against the noise-free truth: over the whole
    log, after the first 10 min (None for a shorter log) and over the last ``last_s``."""
    en, ep = field_errors(core, c_n, c_p, log)
    K = en.shape[1]
    t = period * np.arange(1, K + 1)
    worst = np.maximum(en, ep)
    times = [time_below(t, w) for w in worst]
    known = [x for x in times if x is not None]
    marks = [m for m in (30, 60, 120, 300, 600, 1200) if m <= t[-1]]
    last = max(1, int(round(last_s / period)))
    # Per cell and sample: the whole-log RMSE is dominated by the first minutes of a 30 % SOC
    # prior error, so the error once the estimator had time to converge is reported as well.
    sq = ((v_model.detach() - log["V_true"]) ** 2).numpy().reshape(en.shape[0], -1)
    late = t > 600.0
    return {
        "c_s_n_rmse_pct_at_s": {str(m): float(en[:, int(m / period) - 1].mean()) for m in marks},
        "c_s_p_rmse_pct_at_s": {str(m): float(ep[:, int(m / period) - 1].mean()) for m in marks},
        "c_s_n_rmse_pct_last_5min": float(en[:, -last:].mean()),
        "c_s_p_rmse_pct_last_5min": float(ep[:, -last:].mean()),
        "c_s_n_rmse_pct_series_mean_over_cells": en.mean(0).round(4).tolist(),
        "c_s_p_rmse_pct_series_mean_over_cells": ep.mean(0).round(4).tolist(),
        "time_to_below_1pct_s_per_cell": times,
        "time_to_below_1pct_s_median": float(np.median(known)) if len(known) == len(times) else None,
        "cells_below_1pct_by_end": len(known), "cells": len(times),
        "voltage_rmse_mV": float(1e3 * np.sqrt(sq.mean())),
        "voltage_rmse_mV_after_10min": float(1e3 * np.sqrt(sq[:, late].mean())) if late.any()
        else None,
        "voltage_rmse_mV_last_5min": float(1e3 * np.sqrt(sq[:, -last:].mean())),
    }


HEADLINE_KEYS = (("c_s_n_rmse_pct_at_s", "120"), ("c_s_p_rmse_pct_at_s", "120"),
                 ("c_s_n_rmse_pct_at_s", "600"), ("c_s_p_rmse_pct_at_s", "600"),
                 ("c_s_n_rmse_pct_last_5min", None), ("c_s_p_rmse_pct_last_5min", None),
                 ("voltage_rmse_mV", None), ("voltage_rmse_mV_after_10min", None),
                 ("voltage_rmse_mV_last_5min", None), ("cells_below_1pct_by_end", None),
                 ("time_to_below_1pct_s_median", None), ("seconds", None))


def mean_std(results: list[dict]) -> dict:
    """Mean and std over runs (seeds) of :data:`HEADLINE_KEYS` of :func:`summarise` results
    (a key is left out where any run lacks it, e.g. a 10 min mark of a shorter log)."""
    out: dict = {}
    for key, sub in HEADLINE_KEYS:
        vals = [r.get(key) if sub is None else r.get(key, {}).get(sub) for r in results]
        if not vals or any(v is None for v in vals):
            continue
        label = key if sub is None else f"{key}_{sub}"
        out[label] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "values": vals}
    return out
