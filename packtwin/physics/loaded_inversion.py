"""The first voltage of a log read as a LOADED voltage: the start prior of a log that begins
under load (issue #9 item 4).

A log that starts mid-drive shows V = OCV(surfaces) - overpotentials: the ohmic drop, the
kinetic and the electrolyte's concentration overpotential and the particles' surface depletion.
Read as an OCV (:func:`packtwin.physics.ocv_inversion.invert_ocv`), all of that is taken for
lost charge: on the observer pack 600 s into a discharge the OCV prior was 26-72 SOC points off
(`scripts/diag_start_prior.py`).

Here the first sample is inverted through the reduced core itself: :func:`loaded_voltage` is the
core's terminal voltage of a cell that ends at negative stoichiometry ``sto_n`` (electrode mean)
on its lithium-inventory line after a while at the measured current, the same state
(:func:`packtwin.physics.subspace_observer.loaded_prior`) that
:meth:`SubspaceObserver.init_loaded` starts the filter from, so the prior and the filter agree on
the voltage at the first sample. :func:`invert_loaded` solves ``loaded_voltage(sto_n) = V`` for
``sto_n``; :func:`start_stoichiometry` picks the prior by name (:data:`PRIORS`).

At zero current the loaded state is the rest state at ``sto_n`` (no history current, no
overpotential), so the loaded inversion IS the OCV inversion there (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from packtwin.physics.core import ReducedCore
from packtwin.physics.ocv_inversion import StoichiometryLine, invert_ocv

PRIORS = ("loaded_window", "loaded", "ocv")
# The priors that need nothing but the start sample (a live stream's first sample):
# "loaded_window" also reads the samples after it (packtwin/physics/start_window.py).
SAMPLE_PRIORS = ("loaded", "ocv")
# [A] A cell whose current at the read sample is this small is read as at rest (the OCV
# inversion), the same threshold as the evaluate rows' count of starts under load
# (``observer_predict.REST_CURRENT_A``): C/100 of the 5 Ah OKane2022 cell. Why a threshold and
# not the loaded reading all the way down: such a current is a parallel group's balancing
# current at rest (the pack draws nothing; the cells exchange charge because their particles
# relax differently after the last step), not a load carried for ``history_s`` from a relaxed
# state, which is what the loaded state models. Its loaded correction (the core's loaded
# voltage minus the OCV at the observer pack's cycle-2 starts: 3.2 mV at 0.014 A, -10 degC;
# 5.0 mV at 0.033 A, 0 degC; 3.0 mV at 0.047 A, 25 degC) is below the filters' 10 mV voltage
# noise, i.e. not information, yet it moves the SOC reading by up to half a point, in a
# direction set by the sign of the balancing current, not by the cell's charge (at -10 degC both
# cells hold the same true SOC, 72.8 %, and carry +-0.014 A).
REST_CURRENT_A = 0.05
# Points evaluated per bisection iteration: the bracket shrinks by (WAYS) per iteration, so 14
# iterations narrow the line's width (~0.9) to ~2e-13, at 14 batched core runs instead of ~45.
WAYS = 8
ITERATIONS = 14


def _window_of(core: ReducedCore, lo: Tensor | None, hi: Tensor | None
               ) -> tuple[Tensor, Tensor]:
    if lo is None or hi is None:
        from packtwin.physics.observer_stream import cell_soc_window

        lo, hi = cell_soc_window(core)
    return lo, hi


def _line_ends(line: StoichiometryLine, like: Tensor) -> tuple[Tensor, Tensor]:
    """The line's ends (just inside, as :func:`invert_ocv`), broadcast to ``like`` [B]."""
    lo = torch.clamp(torch.as_tensor((line.n_li - line.cap_p) / line.cap_n, dtype=like.dtype),
                     min=0.0).expand_as(like) + 1e-4
    hi = torch.clamp(torch.as_tensor(line.n_li / line.cap_n, dtype=like.dtype),
                     max=1.0).expand_as(like) - 1e-4
    return lo, hi


def _repeat_core(core: ReducedCore, k: int) -> ReducedCore:
    """The core with every cell repeated k times (cell i's copies at i k ... i k + k - 1)."""
    from packtwin.physics.core_params import CoreParams

    if k == 1:
        return core
    p = core.params
    big = CoreParams(**{n: getattr(p, n).repeat_interleave(k) for n in p.names()})
    return ReducedCore(big, core.config, core.design)


@torch.no_grad()
def loaded_voltage(core: ReducedCore, sto_n: Tensor, current: Tensor, temperature: Tensor,
                   lo: Tensor | None = None, hi: Tensor | None = None,
                   history_s: float | None = None) -> Tensor:
    """Terminal voltage [B] of each cell at negative stoichiometry ``sto_n`` [B] (electrode mean,
    on its inventory line) carrying ``current`` [B] [A] at ``temperature`` [B] [K], in the state
    :func:`loaded_prior` builds (``history_s`` at that current, by default the subspace
    filter's ``SubspaceConfig.history_s``; ``lo``, ``hi``: each cell's SOC window [B], by default
    :func:`cell_soc_window`)."""
    from packtwin.physics.subspace_observer import SubspaceConfig, loaded_prior

    B = core.params.n_cells
    sto_n = torch.as_tensor(sto_n, dtype=core.dtype).expand(B)
    I = torch.as_tensor(current, dtype=core.dtype).expand(B)
    T = torch.as_tensor(temperature, dtype=core.dtype).expand(B)
    lo, hi = _window_of(core, lo, hi)
    h = SubspaceConfig().history_s if history_s is None else history_s
    state = loaded_prior(core, sto_n, I, T, h, lo, hi)
    return core.measure(state, I, T).voltage


@torch.no_grad()
def invert_loaded(core: ReducedCore, voltage: Tensor, current: Tensor, temperature: Tensor,
                  line: StoichiometryLine | None = None, lo: Tensor | None = None,
                  hi: Tensor | None = None, history_s: float | None = None,
                  iterations: int = ITERATIONS, ways: int = WAYS) -> Tensor:
    """sto_n [B] with ``loaded_voltage(sto_n, current, temperature) = voltage`` for each cell.

    Bracketing bisection, ``ways`` sub-intervals per iteration (``ways + 1`` points of every
    cell evaluated in one batched core run), from the OCV reading s0 = ``invert_ocv(voltage)``
    towards the line's end on the current's side (discharge: higher sto_n; ``line``: each
    cell's inventory line, by default :func:`cell_lines`). A voltage beyond what that end gives
    is clamped to it (just inside, like :func:`invert_ocv`).

    Why the root lies on that side, and why the bracket holds it: an overpotential is a loss, so
    under discharge the terminal voltage lies below the OCV of the mean state
    (loaded_voltage(s0) <= ocv(s0) = V) and the cell holds more charge than the OCV reading says;
    under charge the reverse. Along the line the loaded state at sto_n is the same history
    (current, duration, temperature) ending at sto_n, so raising sto_n raises every negative
    shell and lowers every positive one by nearly the same amounts: the surfaces' OCV rises
    with sto_n (U_p falls with sto_p, U_n falls with sto_n) while the overpotentials change only
    through j0(c_s) and the OCV's slope, smooth and small against that rise: the voltage rises
    monotonically from s0 on the main branch. Near the window's ends it does not: a cell
    close to empty under discharge (or full under charge) carries the current only for the time
    that fits in the window (:func:`loaded_prior`), so its polarisation, and its voltage drop,
    shrink towards the end (measured: the default core at -10 degC, 1C: the voltage rises again
    below sto_n 0.07). Searching from s0 on the current's side and taking the crossing nearest
    to s0 keeps the physical root and never lands on that branch. At I = 0 the search collapses
    onto s0: the OCV inversion exactly. Where the loaded voltage at s0 already lies on the
    wrong side of V (the window logic beyond the SOC window), s0 is kept. Not differentiable:
    a measured voltage is data.
    """
    B = core.params.n_cells
    V = torch.as_tensor(voltage, dtype=torch.float64).expand(B)
    I = torch.as_tensor(current, dtype=core.dtype).expand(B)
    T = torch.as_tensor(temperature, dtype=core.dtype).expand(B)
    if line is None:
        from packtwin.physics.observer_stream import cell_lines

        line = cell_lines(core)
    lo, hi = _window_of(core, lo, hi)
    end_lo, end_hi = _line_ends(line, V)
    s0 = invert_ocv(V, line)
    d = torch.sign(I).to(torch.float64)  # +1 discharge: search upwards in sto_n
    # t in [0, 1] along s0 -> the end on the current's side
    far = torch.where(d > 0, end_hi, torch.where(d < 0, end_lo, s0))
    a, b = torch.zeros_like(V), torch.ones_like(V)
    k = ways + 1
    big = _repeat_core(core, k)
    rep = lambda t: t.repeat_interleave(k)  # noqa: E731
    frac = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
    for _ in range(iterations):
        ts = a[:, None] + (b - a)[:, None] * frac  # [B, k]
        pts = s0[:, None] + (far - s0)[:, None] * ts
        v = loaded_voltage(big, pts.reshape(-1), rep(I), rep(T), rep(lo), rep(hi),
                           history_s).reshape(B, k)
        # past the root: the voltage has crossed V in the current's direction
        past = d[:, None] * (v - V[:, None]) > 0
        first = torch.where(past.any(1), past.float().argmax(1), torch.full((B,), k))
        j = (first - 1).clamp(0, k - 2)  # the sub-interval [j, j + 1] that brackets V
        a_new = torch.gather(ts, 1, j[:, None])[:, 0]
        b_new = torch.gather(ts, 1, (j + 1)[:, None])[:, 0]
        # none past: V beyond the far end's voltage (clamp there); the first point past: s0
        a = torch.where(first == k, ts[:, -1], torch.where(first == 0, ts[:, 0], a_new))
        b = torch.where(first == k, ts[:, -1], torch.where(first == 0, ts[:, 0], b_new))
    return s0 + (far - s0) * 0.5 * (a + b)


def at_rest(current: Tensor, rest_current_a: float = REST_CURRENT_A) -> Tensor:
    """[B] bool: cells whose current counts as rest for the loaded prior (|I| <= threshold)."""
    return torch.as_tensor(current).abs() <= rest_current_a


def offset_stoichiometry(sto_n: Tensor, offset: float, lo: Tensor, hi: Tensor) -> Tensor:
    """``sto_n`` [B] moved by ``offset`` of each cell's window (``hi - lo``), e.g. 0.3: a
    30-point SOC error put into a start prior on purpose (issue 9, item 4); where that leaves the
    window the move goes the other way, so every cell gets the full error (|offset| <= 0.5)."""
    if not abs(offset) <= 0.5:
        raise ValueError(f"SOC offset must be within [-0.5, 0.5] of the window, got {offset!r}")
    up = sto_n + offset * (hi - lo)
    inside = (up >= lo) & (up <= hi)
    return torch.where(inside, up, sto_n - offset * (hi - lo)).clamp(lo, hi)


def start_stoichiometry(core: ReducedCore, voltage: Tensor, current: Tensor,
                        temperature: Tensor, line: StoichiometryLine | None = None,
                        prior: str = "loaded", lo: Tensor | None = None,
                        hi: Tensor | None = None, history_s: float | None = None,
                        rest_current_a: float = REST_CURRENT_A,
                        after: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
                        period: float | None = None) -> Tensor:
    """Each cell's negative stoichiometry [B] at a start sample (V, I, T [B]): ``prior`` of
    :data:`PRIORS`: "loaded" (:func:`invert_loaded`; a cell with |I| <= ``rest_current_a``
    is read as at rest, :data:`REST_CURRENT_A` says why), "loaded_window" (the same, except
    where the loaded voltage is ill-conditioned: there the SOC whose loaded state fits the
    samples ``after`` the start best, :func:`packtwin.physics.start_window.window_start`) or
    "ocv" (the voltage read as an OCV, :func:`invert_ocv`, the older behaviour).

    ``after``: (V, I, T, valid) [B, W] of the W samples after the start (``valid`` False past
    a cycle's end), optionally a fifth, I_end [B, W]: each sample's instant current, where its
    voltage is read (a store's ``current_end``; without it the mean current I); ``period``
    [s] their spacing; needed by "loaded_window" only.

    Raises:
        ValueError: an unknown ``prior``, or "loaded_window" without ``after`` / ``period``.
    """
    if prior not in PRIORS:
        raise ValueError(f"start prior must be one of {PRIORS}, got {prior!r}")
    if prior == "loaded_window" and (after is None or period is None):
        raise ValueError("start prior 'loaded_window' reads the samples after the start: give "
                         "after=(V, I, T, valid) and period (a live stream has only the first "
                         "sample: use 'loaded' there)")
    if line is None:
        from packtwin.physics.observer_stream import cell_lines

        line = cell_lines(core)
    if prior == "ocv":
        return invert_ocv(voltage, line)
    I = torch.as_tensor(current, dtype=core.dtype)
    # zero current: invert_loaded's search collapses onto the OCV reading exactly
    I = torch.where(at_rest(I, rest_current_a), torch.zeros_like(I), I)
    if prior == "loaded":
        return invert_loaded(core, voltage, I, temperature, line, lo, hi, history_s)
    from packtwin.physics.start_window import window_start

    lo, hi = _window_of(core, lo, hi)
    Va, Ia, Ta, valid = after[:4]
    Ie = after[4] if len(after) > 4 else None
    B = core.params.n_cells
    col = lambda x, dt: torch.as_tensor(x, dtype=dt).expand(B)[:, None]  # noqa: E731
    V = torch.cat([col(voltage, torch.float64), torch.as_tensor(Va, dtype=torch.float64)], 1)
    Iw = torch.cat([I[:, None].expand(B, 1), torch.as_tensor(Ia, dtype=core.dtype)], 1)
    Tw = torch.cat([col(temperature, core.dtype), torch.as_tensor(Ta, dtype=core.dtype)], 1)
    ok = torch.cat([torch.ones(B, 1, dtype=torch.bool), torch.as_tensor(valid, dtype=torch.bool)],
                   1)
    Iew = None if Ie is None else torch.cat([I[:, None].expand(B, 1),
                                             torch.as_tensor(Ie, dtype=core.dtype)], 1)
    return window_start(core, V, Iw, Tw, ok, period, line, lo, hi, history_s, Iew)[0]
