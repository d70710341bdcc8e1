"""Plating over life from measured V/I/T: the reduced core driven through every cycle.

Per cell and cycle, from what a pack's cell logger measures (the cycle's voltage, current and
temperature, ``life_*`` of a ``cycle_series`` store) and the cell's life-tracked state (lost
lithium and SEI thickness of :mod:`packtwin.physics.life_pack`, from earlier cycles):

1. the cycle's start is a rested state with uniform particles on the cell's *aged* lithium line
   (the fresh inventory less the lost lithium). ``start="coulomb"`` (default): the positive
   electrode's stoichiometry is the first cycle's rested voltage read as an open-circuit voltage
   (:func:`packtwin.physics.ocv_inversion.invert_ocv`) plus the charge the measured current has
   passed since (side reactions take their lithium from the negative electrode only, so the
   positive counts coulombs exactly), the negative holds the rest of the inventory.
   ``start="ocv"``: every cycle's own first voltage read as an OCV; after a CV charge and a
   5-minute rest that voltage is not yet relaxed, which read as a fuller cell (on plating-short:
   margins 6-12 mV too low from cycle 2 on, plated lithium up to 43 % too high);
2. the core (:class:`packtwin.physics.core.ReducedCore`) is run through the cycle with the
   measured current and temperature, its film resistance from the SEI estimate; its plating
   margin (phi_s - phi_e of the negative electrode at the separator, as PyBaMM's) gives the
   cycle's lowest margin and a plating event where it goes below 0 V;
3. plated lithium: by default (:data:`PLATING_CORE`) the core plates and strips itself
   (PyBaMM's partially reversible OKane2022 law, :mod:`packtwin.physics.plating_current`): the
   plating current is taken from the intercalation current, the plated lithium is carried from
   cycle to cycle (outside the particles: the start's line holds that much less) and decays to
   dead lithium between cycles; x-averaged like the store's ``plated_lithium_end``. The chain
   of cycles is solved by sweeps of whole batched cycles (:func:`_coupled_cycles`). With a core
   that does not plate (``CoreConfig(plating=False)``, the estimate before stop 30) the same
   kinetics (:class:`PlatingKinetics`) are integrated after the run along the core's
   phi_s - phi_e at every negative particle, their source capped by the charging current.

Its margin is sampled at the store's period, as the truth's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from packtwin.physics.constants import F, R_GAS
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.ocv_inversion import StoichiometryLine, invert_ocv

EVENT_THRESHOLD_V = 0.0  # issue 10: plating event = margin below 0 V
# The core of the estimate plates and strips itself (packtwin.physics.plating_current): on the
# plating-edge store with the cells' own parameters, event F1 0.80 -> 1.00 and the lowest
# margin's error 2.6 -> 0.6 mV against integrating the kinetics after a core that does not
# (README "Plating over life"); CoreConfig() (plating=False) gives that older estimate.
PLATING_CORE = CoreConfig(plating=True)
# plated lithium [mol/m3] within which a cycle's start counts as settled (the estimates' errors
# against PyBaMM are 1-10 mol/m3)
PLATED_TOL = 1e-3


@dataclass(frozen=True)
class PlatingKinetics:
    """PyBaMM's lithium plating parameters of OKane2022 (names in brackets; a test compares)."""

    k: float = 1e-9  # ["Lithium plating kinetic rate constant [m.s-1]"]
    alpha: float = 0.65  # ["Lithium plating transfer coefficient"]; stripping: 1 - alpha
    dead_decay: float = 1e-6  # ["Dead lithium decay constant [s-1]"], x L_0 / L_sei (OKane2022)


def plated_step(c_pl: np.ndarray, eta: np.ndarray, c_e: np.ndarray, T: np.ndarray, a_n: np.ndarray,
                decay: np.ndarray, dt: float, kin: PlatingKinetics = PlatingKinetics(),
                charge_flux: np.ndarray | float = np.inf) -> np.ndarray:
    """Plated lithium [mol/m3] after ``dt`` [s] of PyBaMM's partially reversible plating at a
    fixed plating overpotential ``eta`` [V] (phi_s - phi_e + SEI film overpotential), electrolyte
    ``c_e`` [mol/m3], temperature ``T`` [K], surface area density ``a_n`` [1/m] and dead-lithium
    decay rate ``decay`` [1/s] (all broadcastable):

        dc/dt = a k c_e exp(-alpha F eta / RT) - (a k exp((1 - alpha) F eta / RT) + decay) c

    (plating source, stripping and decay to dead lithium, linear in c), solved exactly over the
    step so that fast stripping (rest at a high potential) stays stable. The source is capped at
    ``charge_flux`` [mol/m3/s], the lithium the charging current brings there (a j / F): the
    core does not divert the plating current from intercalation, so where its margin runs far
    below 0 V the uncapped law would plate more lithium than the current carries."""
    f = F / (R_GAS * T)
    # exponents capped: beyond +-60 the rates are either negligible or instantaneous anyway
    source = np.minimum(a_n * kin.k * np.maximum(c_e, 0.0)
                        * np.exp(np.minimum(-kin.alpha * f * eta, 60.0)), charge_flux)
    sink = a_n * kin.k * np.exp(np.minimum((1.0 - kin.alpha) * f * eta, 60.0)) + decay
    c_inf = source / sink
    return c_inf + (c_pl - c_inf) * np.exp(-sink * dt)


def aged_line(core: ReducedCore, lli_pct: torch.Tensor,
              plated_mol: torch.Tensor | None = None) -> StoichiometryLine:
    """Each cell's lithium line [B] with ``lli_pct`` [B] % of its fresh inventory lost and
    ``plated_mol`` [B] more held as plated lithium (outside the particles for now)."""
    c, p = core.design.constants, core.params
    vol_n, vol_p = p.eps_s_n * c.neg.L * c.neg.A, p.eps_s_p * c.pos.L * c.pos.A
    n_li = (p.c_n_init * vol_n + core.design.c_p_init * vol_p) * (1.0 - lli_pct / 100.0)
    if plated_mol is not None:
        n_li = n_li - plated_mol
    return StoichiometryLine(n_li, c.neg.c_max * vol_n, c.pos.c_max * vol_p)


@dataclass
class CycleRun:
    """The core through a batch of cycles [B, K] (samples past a cycle's length are junk)."""

    margin: np.ndarray  # [B, K] plating margin [V], sample 0 = the rested start
    eta_n: np.ndarray  # [B, K, Xn] plating overpotential at each negative particle [V]
    c_e_n: np.ndarray  # [B, K, Xn] electrolyte concentration there [mol/m3]
    j_n: np.ndarray  # [B, K, Xn] reaction current density there [A/m2] (charge < 0)
    c_pl_end: np.ndarray | None = None  # [B, Xn] plated lithium at the last sample (plating core)


@torch.no_grad()
def run_cycles(params: CoreParams, V: np.ndarray, I: np.ndarray, T: np.ndarray, lengths: np.ndarray,
               lli_pct: np.ndarray, sei_nm: np.ndarray, period_s: float,
               config: CoreConfig = CoreConfig(), sto_p: np.ndarray | None = None,
               c_pl: np.ndarray | None = None) -> CycleRun:
    """Drive the core (one cell per row of ``params``) through B cycles of measured V, I, T
    [B, K] (store convention: I[k] is the mean over the period ending at sample k), each started
    rested on the line aged by ``lli_pct`` [B] at positive stoichiometry ``sto_p`` [B] (None:
    V[:, 0] read as an OCV on that line), with the SEI film of ``sei_nm`` [B].

    With ``config.plating`` the core plates and strips itself, starting from the plated lithium
    ``c_pl`` [B, Xn] (None: none); that lithium is outside the particles, so the start's line
    holds that much less; :attr:`CycleRun.c_pl_end` is each row's at its cycle's last sample."""
    core = ReducedCore(params, config)
    c = core.design.constants
    dtype = core.dtype
    V, I, T = (torch.as_tensor(np.asarray(a, float), dtype=dtype) for a in (V, I, T))
    K = V.shape[1]
    pad = torch.arange(K)[None, :] >= torch.as_tensor(lengths)[:, None]
    I = torch.where(pad, torch.zeros_like(I), I)  # padding: rest at the last temperature
    last_T = T.gather(1, torch.as_tensor(np.maximum(lengths - 1, 0))[:, None])
    T = torch.where(pad, last_T.expand_as(T), T)
    plated = None
    if config.plating and c_pl is not None:
        c_pl = torch.as_tensor(np.asarray(c_pl, float), dtype=dtype)
        plated = core.plated_lithium(core.initial_state()._replace(c_pl=c_pl))
    line = aged_line(core, torch.as_tensor(lli_pct, dtype=dtype), plated)
    if sto_p is None:
        sto = invert_ocv(V[:, 0], line)
    else:  # the negative holds what the positive does not, inside the line's ends
        lo = torch.clamp((line.n_li - line.cap_p) / line.cap_n, min=0.0) + 1e-4
        hi = torch.clamp(line.n_li / line.cap_n, max=1.0) - 1e-4
        sto = torch.minimum(torch.maximum(
            (line.n_li - torch.as_tensor(sto_p, dtype=dtype) * line.cap_p) / line.cap_n, lo), hi)
    state = core.initial_state(sto * c.neg.c_max, line.sto_p(sto) * c.pos.c_max)
    state = state._replace(L_sei=torch.as_tensor(sei_nm, dtype=dtype) * 1e-9)
    if plated is not None:
        state = state._replace(c_pl=c_pl)
    first = core.measure(state, I[:, 0], T[:, 0])
    _, out = core.simulate(state, I[:, 1:], T[:, 1:], period_s)
    c_pl_end = None
    if config.plating:  # at each row's last sample (the padding after it rests and strips)
        traj = torch.cat([state.c_pl[:, None], out["c_pl"]], 1)
        last = torch.as_tensor(np.maximum(lengths - 1, 0))
        c_pl_end = traj[torch.arange(len(last)), last].numpy()
    R_film = core.film_resistance(state.L_sei)[:, None, None]
    j_n = torch.cat([first.j_n[:, None], out["j_n"]], 1)
    dphi = torch.cat([first.dphi_n[:, None], out["dphi_n"]], 1)
    c_e = torch.cat([state.c_e[:, None], out["c_e"]], 1)[..., :core.grid_x.n_n]
    # PyBaMM: plating overpotential = phi_s - phi_e + SEI film overpotential (-j_tot R_film)
    return CycleRun(torch.cat([first.plating_margin[:, None], out["plating_margin"]], 1).numpy(),
                    (dphi - j_n * R_film).numpy(), c_e.numpy(), j_n.numpy(), c_pl_end)


def plating_over_life(params: CoreParams, V: np.ndarray, I: np.ndarray, T: np.ndarray,
                      lli_pct: np.ndarray, sei_nm: np.ndarray, period_s: float,
                      config: CoreConfig = PLATING_CORE, batch: int = 256,
                      kinetics: PlatingKinetics = PlatingKinetics(),
                      threshold_v: float = EVENT_THRESHOLD_V, start: str = "coulomb",
                      every: int = 1) -> dict:
    """Plating estimates of N cells over C cycles from their logs V, I, T [N, C, K] (NaN after a
    cycle's end; a cycle without a finite first sample is skipped) and their life-tracked state
    at each cycle's start, ``lli_pct`` and ``sei_nm`` [N, C]; ``start``: how each cycle's
    starting state is found ("coulomb" or "ocv", see the module's docstring).

    With ``config.plating`` the core plates and strips itself, each cycle from the plated
    lithium its cell's last cycle ended with (batched sweeps, :func:`_coupled_cycles`).
    Without, the core runs whole cycles of all cells together, about
    ``batch`` cell-cycles at a time (memory: the per-sample plating drivers of one batch only),
    the plating kinetics then carry each cell's plated lithium through those cycles in order.

    ``every`` N > 1 runs the core on every N-th cycle only (cycles 1, 1+N, ... and each cell's
    last), for long life runs: a cycle's plated lithium at its end hardly depends on its start
    and changes slowly over life, so the others' ``plated_end_est`` is interpolated in cycle
    between the cycles run, each run cycle starts from the last run one's end, and the cycles in
    between get no margin and no event (NaN: left out of the event scores). Every cycle's
    charge still enters the positive electrode's starting state.

    Returns ``margin_min_est`` [V], ``event_est`` (1/0), ``plated_end_est`` [mol/m3] (all
    [N, C], NaN for skipped cycles), ``seconds`` (wall time), ``cell_cycles`` (run by the
    core), ``sweeps`` (the batched runs of all cycles; 1 without plating in the core) and
    ``every``."""
    t0 = time.perf_counter()
    V, I, T = (np.asarray(a, float) for a in (V, I, T))
    N, C, K = V.shape
    if start not in ("coulomb", "ocv"):
        raise ValueError(f"plating_over_life: start must be 'coulomb' or 'ocv', got {start!r}")
    finite = np.isfinite(V) & np.isfinite(I) & np.isfinite(T)
    lengths = np.where(finite[..., 0], np.cumprod(finite, axis=-1).sum(-1), 0)
    sto_p = positive_start(params, V, I, lengths, lli_pct, period_s) if start == "coulomb" \
        else None
    every = int(every)
    if every < 1:
        raise ValueError(f"plating_over_life: every must be >= 1, got {every}")
    logged = lengths > 0
    if every > 1:  # after the starting states, which count every cycle's charge
        lengths = np.where(_every_nth(logged, every), lengths, 0)
    margin_min, plated = np.full((N, C), np.nan), np.full((N, C), np.nan)
    sweeps = 1
    if config.plating:
        sweeps = _coupled_cycles(params, V, I, T, lengths, lli_pct, sei_nm, period_s, config,
                                 sto_p, kinetics, margin_min, plated, batch)
    else:
        _kinetics_after(params, V, I, T, lengths, lli_pct, sei_nm, period_s, config, sto_p,
                        kinetics, margin_min, plated, batch)
    if every > 1:
        plated = _fill_cycles(plated, logged)
    event = np.where(np.isfinite(margin_min), (margin_min < threshold_v).astype(float), np.nan)
    return {"margin_min_est": margin_min, "event_est": event, "plated_end_est": plated,
            "seconds": time.perf_counter() - t0, "cell_cycles": int((lengths > 0).sum()),
            "sweeps": sweeps, "every": every}


def _every_nth(logged: np.ndarray, every: int) -> np.ndarray:
    """[N, C] mask of the logged cycles 1, 1+every, ... (1-based) and each row's last logged."""
    C = logged.shape[1]
    keep = logged & (np.arange(C) % every == 0)[None, :]
    has = logged.any(1)
    last = C - 1 - np.argmax(logged[:, ::-1], axis=1)
    keep[np.flatnonzero(has), last[has]] = True
    return keep


def _fill_cycles(values: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """``values`` [N, C] with each row's logged cycles that have none interpolated linearly in
    cycle between those that have one (held at the ends)."""
    out = values.copy()
    cyc = np.arange(values.shape[1])
    for n in range(values.shape[0]):
        have = np.isfinite(values[n]) & logged[n]
        if have.any():
            gap = logged[n] & ~have
            out[n, gap] = np.interp(cyc[gap], cyc[have], values[n, have])
    return out


def _rows(params: CoreParams, n: np.ndarray) -> CoreParams:
    return CoreParams(**{f: getattr(params, f)[torch.as_tensor(n)] for f in params.names()})


def _dead_decay(sei_nm: np.ndarray, kin: PlatingKinetics) -> np.ndarray:
    """PyBaMM's decay rate of plated to dead lithium [1/s] at SEI thickness ``sei_nm`` (OKane2022:
    the constant x L_0 / L_sei; NaN thickness: L_0)."""
    from packtwin.physics.constants import okane2022

    L_0 = okane2022().sei.L_0
    return kin.dead_decay * L_0 / (np.nan_to_num(sei_nm, nan=L_0 * 1e9) * 1e-9)


def _run_rows(params: CoreParams, V: np.ndarray, I: np.ndarray, T: np.ndarray,
              lengths: np.ndarray, lli_pct: np.ndarray, sei_nm: np.ndarray, period_s: float,
              config: CoreConfig, sto_p: np.ndarray | None, n: np.ndarray, cyc: np.ndarray,
              margin_min: np.ndarray, c_pl: np.ndarray | None = None
              ) -> tuple[CycleRun, np.ndarray, int]:
    """The cell-cycles (``n``, ``cyc``) through :func:`run_cycles` as one batch, their lowest
    margins written into ``margin_min``; (the run, their lengths, the batch's samples)."""
    L = lengths[n, cyc]
    k = int(L.max())
    run = run_cycles(_rows(params, n), V[n, cyc, :k], I[n, cyc, :k], T[n, cyc, :k], L,
                     lli_pct[n, cyc], sei_nm[n, cyc], period_s, config,
                     None if sto_p is None else sto_p[n, cyc], c_pl)
    inside = np.arange(k)[None, :] < L[:, None]
    margin_min[n, cyc] = np.where(inside, run.margin, np.inf).min(1)
    return run, L, k


def _kinetics_after(params: CoreParams, V: np.ndarray, I: np.ndarray, T: np.ndarray,
                    lengths: np.ndarray, lli_pct: np.ndarray, sei_nm: np.ndarray,
                    period_s: float, config: CoreConfig, sto_p: np.ndarray | None,
                    kin: PlatingKinetics, margin_min: np.ndarray, plated: np.ndarray,
                    batch: int) -> None:
    """:func:`plating_over_life` with a core that does not plate: whole cycles of all cells run
    as one batch (``batch`` cell-cycles at a time), then the plating kinetics are integrated
    along each cell's cycles in order. Fills ``margin_min`` and ``plated`` [N, C] in place."""
    N, C = lengths.shape
    c_pl = np.zeros((N, config.n_x_n))  # plated lithium [mol/m3] at each negative particle
    per_batch = max(1, batch // max(N, 1))
    for c0 in range(0, C, per_batch):
        cycles = slice(c0, min(C, c0 + per_batch))
        idx = np.argwhere(lengths[:, cycles] > 0)  # (cell, cycle - c0)
        if len(idx) == 0:
            continue
        n, cyc = idx[:, 0], idx[:, 1] + c0
        run, _, k = _run_rows(params, V, I, T, lengths, lli_pct, sei_nm, period_s, config,
                              sto_p, n, cyc, margin_min)
        shape = (N, cycles.stop - c0, k, config.n_x_n)
        drivers = [np.full(shape, np.nan) for _ in range(3)]
        for d, val in zip(drivers, (run.eta_n, run.c_e_n, run.j_n)):
            d[n, cyc - c0] = val
        plated[:, cycles], c_pl = _integrate_plating(
            params, *drivers, T[:, cycles, :k], lengths[:, cycles], sei_nm[:, cycles], period_s,
            kin, c_pl)


def _coupled_cycles(params: CoreParams, V: np.ndarray, I: np.ndarray, T: np.ndarray,
                    lengths: np.ndarray, lli_pct: np.ndarray, sei_nm: np.ndarray,
                    period_s: float, config: CoreConfig, sto_p: np.ndarray | None,
                    kin: PlatingKinetics, margin_min: np.ndarray, plated: np.ndarray,
                    batch: int, tol: float = PLATED_TOL) -> int:
    """:func:`plating_over_life` with a core that plates itself (``config.plating``). Each cycle
    starts from the plated lithium its cell's previous cycle ended with, a chain through the
    cycles; but a discharge strips most of it, so a cycle's end hardly depends on its start.
    So whole cycles of all cells run as one batch (``batch`` cell-cycles at a time) from guessed
    starts (none plated), each cycle's end becomes the next one's start, and the cycles whose
    start moved by more than ``tol`` [mol/m3] run again, until none does: exact up to ``tol``,
    and after at most C sweeps whatever the coupling (sweep s fixes cycle s). Typically 2-3
    sweeps. The decay of plated to dead lithium (under 1 % per cycle) is applied at each
    cycle's end. Fills ``margin_min`` and ``plated`` [N, C]; returns the number of sweeps."""
    N, C = lengths.shape
    ran = lengths > 0
    start = np.zeros((N, C, config.n_x_n))
    end = np.zeros_like(start)
    todo = ran.copy()
    sweeps = 0
    while todo.any():
        sweeps += 1
        idx = np.argwhere(todo)
        for b in range(0, len(idx), batch):
            n, cyc = idx[b:b + batch].T
            run, L, _ = _run_rows(params, V, I, T, lengths, lli_pct, sei_nm, period_s, config,
                                  sto_p, n, cyc, margin_min, start[n, cyc])
            lasted = (L - 1) * period_s
            end[n, cyc] = run.c_pl_end * np.exp(-_dead_decay(sei_nm[n, cyc], kin)
                                                * lasted)[:, None]
        # each cycle starts from the end of its cell's last cycle that ran before it
        new = start.copy()
        for cyc in range(1, C):
            new[:, cyc] = np.where(ran[:, cyc - 1, None], end[:, cyc - 1], new[:, cyc - 1])
        todo = ran & (np.abs(new - start).max(-1) > tol)
        start = new
        if sweeps > C:  # cannot happen (sweep s fixes cycle s): a guard against a bug looping
            raise RuntimeError("plating_over_life: the cycles' plated lithium did not settle")
    plated[ran] = end[ran].mean(-1)
    return sweeps


@torch.no_grad()
def positive_start(params: CoreParams, V: np.ndarray, I: np.ndarray, lengths: np.ndarray,
                   lli_pct: np.ndarray, period_s: float) -> np.ndarray:
    """Positive stoichiometry at each cycle's start [N, C]: each cell's first logged cycle's
    rested voltage read as an OCV (on the line aged by that cycle's ``lli_pct``), then moved by
    the charge its measured current passed (discharge fills the positive electrode). Samples 1..
    of a cycle carry its charge (sample 0 repeats the previous period's current)."""
    core = ReducedCore(params)
    N, C = lengths.shape
    first = np.where((lengths > 0).any(1), np.argmax(lengths > 0, axis=1), 0)
    rows = np.arange(N)
    line = aged_line(core, torch.as_tensor(lli_pct[rows, first], dtype=core.dtype))
    sto_n = invert_ocv(torch.as_tensor(np.nan_to_num(V[rows, first, 0], nan=3.7)), line)
    sto0 = line.sto_p(sto_n).numpy()
    inside = np.arange(I.shape[-1])[None, None, :] < lengths[..., None]
    charge = np.where(inside, np.nan_to_num(I), 0.0)[..., 1:].sum(-1) * period_s  # [N, C] A s
    before = np.cumsum(charge, axis=1) - charge  # passed before each cycle's start
    before -= np.take_along_axis(before, first[:, None], axis=1)
    return sto0[:, None] + before / (F * line.cap_p.numpy()[:, None])


def _integrate_plating(params: CoreParams, eta: np.ndarray, c_e: np.ndarray, j_n: np.ndarray,
                       T: np.ndarray, lengths: np.ndarray, sei_nm: np.ndarray, period_s: float,
                       kin: PlatingKinetics, c_pl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plated lithium at each cycle's end [N, C], x-averaged, carried over the cycles of each
    cell from ``c_pl`` [N, Xn] (sample 0 of a cycle is the previous cycle's end, so it is not
    stepped again); and the per-particle plated lithium after the last cycle."""
    N, C = lengths.shape
    a_n = (3.0 * params.eps_s_n / params.R_n).numpy()[:, None]  # [N, 1]
    out = np.full((N, C), np.nan)
    for cyc in range(C):
        decay = _dead_decay(sei_nm[:, cyc], kin)
        for k in range(1, int(lengths[:, cyc].max(initial=0))):
            on = k < lengths[:, cyc]
            new = plated_step(c_pl, np.nan_to_num(eta[:, cyc, k]), np.nan_to_num(c_e[:, cyc, k]),
                              np.nan_to_num(T[:, cyc, k], nan=298.15)[:, None], a_n,
                              decay[:, None], period_s, kin,
                              a_n * np.maximum(-np.nan_to_num(j_n[:, cyc, k]), 0.0) / F)
            c_pl = np.where(on[:, None], new, c_pl)
        out[:, cyc] = np.where(lengths[:, cyc] > 0, c_pl.mean(1), np.nan)
    return out, c_pl
