"""The loaded start where one voltage sample cannot decide: the SOC that the samples after it
fit best (issue #9 item 4, the -10 degC loaded start).

:func:`packtwin.physics.loaded_inversion.invert_loaded` reads the start sample through the
core's loaded voltage (the state after ``history_s`` at the measured current) and takes the
crossing nearest to the OCV reading. Where that curve rises with SOC the crossing is the
answer. In the cold under load it does not rise: 600 s at 1C and -1.5 degC drive the core's
electrolyte to its floor in the positive electrode (the DFN truth is at 8 mol/m3 at that sample
too, after 2C pulses), and whether a history ending at a given SOC reaches the floor flips from
one SOC to the next, so the curve jumps by up to 330 mV between SOC points 0.5 % apart
(`scripts/diag_loaded_voltage.py`: 10-15 of 40 grid steps go down on every pack). The crossing
is then one of several, 10 SOC points off on one cell of seed 14, and the filters did not
recover from it (field error 10 min later 9.8-31 % of c_max). More Newton iterations do not
smooth the curve (6, 24 and 60 give the same one): it is the assumed history's physics at
electrolyte depletion, not the solver.

The samples after the start can decide: a wrong SOC predicts the next pulse's and the next
rest's voltage wrongly by tens of mV. So where the curve is ill-conditioned (it falls by more
than :data:`DROP_TOL_V` between neighbouring grid points, against the current's direction)
each candidate SOC's loaded state, the state the filters start from, runs open loop through the
next ``window_s`` of measured current and temperature, and the candidate with the smallest RMS
voltage error wins: first on the coarse grid the curve was checked on, then on a finer grid
around the best point. Well-conditioned cells keep ``invert_loaded``'s root, bit for bit.

The choice uses data AFTER the start sample: a fixed-lag decision of ``window_s``. An offline
estimate (``packtwin evaluate``) has those samples; a live stream has them only after the lag,
so :class:`packtwin.physics.observer_stream.SubspaceStream` keeps the nearest root.
"""

from __future__ import annotations

import torch
from torch import Tensor

from packtwin.physics.core import ReducedCore
from packtwin.physics.loaded_inversion import (_line_ends, _repeat_core, invert_loaded,
                                               loaded_voltage)
from packtwin.physics.ocv_inversion import StoichiometryLine, invert_ocv

# Points of the coarse grid from the OCV reading to the line's end on the current's side (one
# batched core run of POINTS B cells), and of the fine grid over the best coarse point's two
# neighbouring intervals.
POINTS = 33
FINE_POINTS = 9
# [V] A fall of the loaded voltage between neighbouring coarse points larger than this marks the
# curve ill-conditioned: the filters' voltage noise (10 mV, SubspaceConfig / EKFConfig), below
# which a wiggle is not information. The curve's falls at 25-45 degC: <= 6 mV.
DROP_TOL_V = 0.010
WINDOW_S = 300.0  # [s] of samples after the start that choose the SOC (two pulses and a rest)


@torch.no_grad()
def loaded_curve(core: ReducedCore, V: Tensor, I: Tensor, T: Tensor, line: StoichiometryLine,
                 lo: Tensor, hi: Tensor, history_s: float | None = None, points: int = POINTS
                 ) -> tuple[Tensor, Tensor]:
    """sto_n [B, points] from the OCV reading to the line's end on the current's side, and the
    loaded voltage there [B, points]."""
    B = core.params.n_cells
    s0 = invert_ocv(V, line)
    end_lo, end_hi = _line_ends(line, V)
    far = torch.where(I > 0, end_hi, torch.where(I < 0, end_lo, s0))
    sto = s0[:, None] + (far - s0)[:, None] * torch.linspace(0.0, 1.0, points,
                                                              dtype=torch.float64)
    rep = lambda t: t.repeat_interleave(points)  # noqa: E731
    v = loaded_voltage(_repeat_core(core, points), sto.reshape(-1), rep(I), rep(T), rep(lo),
                       rep(hi), history_s).reshape(B, points)
    return sto, v


def ill_conditioned(sto: Tensor, v: Tensor, I: Tensor, lo: Tensor, hi: Tensor,
                    tol: float = DROP_TOL_V) -> Tensor:
    """[B] bool: the loaded voltage ``v`` [B, P] at ``sto`` [B, P] falls against the current's
    direction by more than ``tol`` between neighbours inside the SOC window [lo, hi] [B].

    Outside the window the curve turns by design (a cell near full under discharge carries the
    current only for what fits in the window, :func:`loaded_prior`; its voltage falls again
    past 100 % SOC, by 36-68 mV at 25-45 degC): ``invert_loaded``'s nearest crossing already
    keeps off that branch."""
    inside = (sto >= lo[:, None]) & (sto <= hi[:, None])
    steps = torch.sign(I)[:, None] * torch.diff(v, dim=1)
    return (I != 0.0) & ((steps < -tol) & inside[:, 1:] & inside[:, :-1]).any(1)


@torch.no_grad()
def window_rms(core: ReducedCore, sto: Tensor, V: Tensor, I: Tensor, T: Tensor, valid: Tensor,
               period: float, lo: Tensor, hi: Tensor, history_s: float | None = None,
               I_end: Tensor | None = None) -> Tensor:
    """[B, M] RMS voltage error [V] over samples 1..W of each candidate sto_n [B, M]'s loaded
    state (:func:`packtwin.physics.subspace_observer.loaded_prior` at sample 0's current and
    temperature) run open loop; V, I, T, ``valid`` [B, W + 1] (I, T over the step ending at each
    sample); ``I_end`` [B, W + 1]: the current at each sample's instant, where its voltage is
    read (None: I, a store without ``current_end``); +inf where a cell has no valid sample
    after the start."""
    from packtwin.physics.subspace_observer import SubspaceConfig, loaded_prior

    B, M = sto.shape
    h = SubspaceConfig().history_s if history_s is None else history_s
    big = _repeat_core(core, M)
    rep = lambda t: t.repeat_interleave(M, dim=0)  # noqa: E731
    start = loaded_prior(big, sto.reshape(-1), rep(I[:, 0]), rep(T[:, 0]), h, rep(lo), rep(hi))
    _, outs = big.simulate(start, rep(I[:, 1:]), rep(T[:, 1:]), period,
                           I_end=None if I_end is None else rep(I_end[:, 1:]))
    w = rep(valid[:, 1:]).to(V.dtype)
    err = torch.nan_to_num((outs["voltage"] - rep(V[:, 1:])) ** 2, nan=1e6, posinf=1e6) * w
    rms = torch.sqrt(err.sum(1) / w.sum(1).clamp_min(1.0))
    return torch.where(w.sum(1) > 0, rms, torch.full_like(rms, float("inf"))).reshape(B, M)


@torch.no_grad()
def window_start(core: ReducedCore, V: Tensor, I: Tensor, T: Tensor, valid: Tensor,
                 period: float, line: StoichiometryLine, lo: Tensor, hi: Tensor,
                 history_s: float | None = None, I_end: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
    """Each cell's start sto_n [B] and whether the window chose it [B] (else
    :func:`invert_loaded`'s root). V, I, T, ``valid`` [B, W + 1]: the start sample and the
    ``W`` after it (``valid`` False past a cycle's end); ``I_end`` [B, W + 1]: each sample's
    instant current, where its voltage is read (None: I)."""
    nearest = invert_loaded(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi, history_s)
    B = core.params.n_cells
    if V.shape[1] < 2:
        return nearest, torch.zeros(B, dtype=torch.bool)
    grid, v = loaded_curve(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi, history_s)
    bad = ill_conditioned(grid, v, I[:, 0], lo, hi) & valid[:, 1:].any(1)
    if not bool(bad.any()):
        return nearest, bad
    idx = torch.nonzero(bad)[:, 0]
    sub = _cells_of(core, idx)
    args = (V[idx], I[idx], T[idx], valid[idx], period, lo[idx], hi[idx], history_s,
            None if I_end is None else I_end[idx])
    coarse = torch.cat([grid[idx], nearest[idx, None]], dim=1)  # the root is a candidate too
    best = window_rms(sub, coarse, *args).argmin(1)
    step = grid[idx, 1] - grid[idx, 0]
    centre = coarse.gather(1, best[:, None])
    fine = centre + step[:, None] * torch.linspace(-1.0, 1.0, FINE_POINTS, dtype=torch.float64)
    a, b = torch.minimum(grid[idx, 0], grid[idx, -1]), torch.maximum(grid[idx, 0], grid[idx, -1])
    fine = torch.minimum(torch.maximum(fine, a[:, None]), b[:, None])
    chosen = fine.gather(1, window_rms(sub, fine, *args).argmin(1)[:, None])[:, 0]
    return nearest.index_put((idx,), chosen), bad


def _cells_of(core: ReducedCore, cells: Tensor) -> ReducedCore:
    """The core of the cells ``cells`` [N] (indices)."""
    from packtwin.physics.core_params import CoreParams

    p = core.params
    return ReducedCore(CoreParams(**{n: getattr(p, n)[cells] for n in p.names()}), core.config,
                       core.design)
