"""Lithium inventory read from a check-up's slow discharge (the OCV fit labs use for ageing modes).

A slow (C/5) discharge follows the open-circuit voltage closely. With the electrodes' capacities
cap_n, cap_p [mol of sites] fixed, the cell at charge q drawn [mol of electrons] sits at
sto_n = x0 - q / cap_n and sto_p = y0 + q / cap_p, so

    V(q) ~ U_p(y0 + q / cap_p) - U_n(x0 - q / cap_n) - I R

and the lithium in both electrodes' particles is n = x0 cap_n + y0 cap_p (PyBaMM's
``Total lithium in particles [mol]``, the inventory its LLI counts). n does not depend on where
the charge count starts (a shift of q moves lithium from one electrode to the other), so the 60 s
sampling's unknown phase does not enter. The absolute n carries the fit's model-form bias (the
nominal electrodes' capacities, the particles' diffusion polarisation, lumped in R) and the cell's
unknown initial inventory; the change between two check-ups of one cell cancels most of both. On
the life-long pack (three scenarios, four cells, check-ups every 100 cycles, three cell draws;
``scripts/diag_checkup_lithium.py``) the change since the first check-up matched PyBaMM's lost
lithium within 0.045 LLI points (mean 0.007-0.008 per draw) with the nominal capacities, where
the regular cycles' capacity fade gives lithium only through a capacity per lithium that varies
1.2-2.6 with temperature, C-rate and cell (``scripts/diag_life_rate.py``).

Why the first ``skip`` samples are left out: the particles' diffusion polarisation builds up over
the first minutes of the discharge (graphite R^2 / D ~ 17 min), which a constant R cannot follow
(fitted too, the change's error reached 0.09 points on one of the 36 runs, 0.045 at most
without); a sqrt(t) term for it instead made the fit ill-conditioned (a first try, not kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from packtwin.physics import ocp
from packtwin.physics.constants import F, CellConstants, okane2022

SKIP_SAMPLES = 10  # leading samples of the discharge left out (diffusion polarisation builds up)
V_FLOOR = 3.0  # [V] samples below are left out: the steep end of the OCPs, fitted worst
MIN_SAMPLES = 20  # fewer usable samples than this: no fit
# A fit further than this from its samples (RMS) is not read: the discharge is not a slow one
# along these OCPs (the life-long pack's check-ups, three draws, fit within 4.5 mV).
MAX_RMS_V = 0.02


@dataclass(frozen=True)
class CheckupFit:
    """One check-up discharge's fit."""

    n_li_mol: float  # lithium in both electrodes' particles [mol]
    sto_n0: float  # negative stoichiometry at the discharge's first sample
    sto_p0: float
    resistance_ohm: float  # lumped overpotential / current
    rms_v: float  # fit residual [V]
    samples: int  # samples fitted


def electrode_capacities(cell: CellConstants | None = None) -> tuple[float, float]:
    """cap_n, cap_p: moles of lithium sites in each electrode's particles (c_max x active
    volume)."""
    c = cell or okane2022()
    return c.neg.c_max * c.neg.active_volume, c.pos.c_max * c.pos.active_volume


def discharge_block(current_a: np.ndarray, threshold_a: float) -> slice | None:
    """The first contiguous run of samples with current above ``threshold_a`` (a discharge)."""
    i = np.nan_to_num(np.asarray(current_a, dtype=float), nan=0.0)
    on = np.flatnonzero(i > threshold_a)
    if on.size == 0:
        return None
    start = int(on[0])
    stop = start
    while stop + 1 < i.size and i[stop + 1] > threshold_a:
        stop += 1
    return slice(start, stop + 1)


def fit_checkup(voltage_v: np.ndarray, current_a: np.ndarray, period_s: float,
                cell: CellConstants | None = None, skip: int = SKIP_SAMPLES,
                v_floor: float = V_FLOOR) -> CheckupFit | None:
    """Fit one check-up cycle's slow discharge (samples on a uniform ``period_s`` grid, current
    > 0 discharging; store convention: sample k's current flowed over the period ending at k).
    None when the cycle has no discharge with at least :data:`MIN_SAMPLES` usable samples, or
    when the fitted stoichiometries leave (0, 1) over them."""
    from scipy.optimize import least_squares

    v = np.asarray(voltage_v, dtype=float)
    i = np.asarray(current_a, dtype=float)
    if v.shape != i.shape or v.ndim != 1:
        raise ValueError(f"fit_checkup: voltage and current must be 1-D of one length, found "
                         f"{v.shape} and {i.shape}")
    peak = np.nanmax(np.where(np.isfinite(i), i, -np.inf), initial=-np.inf)
    if not peak > 0:
        return None
    block = discharge_block(i, 0.5 * peak)
    if block is None:
        return None
    vd, idc = v[block], i[block]
    q = np.cumsum(idc) * float(period_s) / F  # mol of electrons drawn by each sample
    use = (np.arange(vd.size) >= skip) & np.isfinite(vd) & (vd > v_floor)
    if use.sum() < MIN_SAMPLES:
        return None
    cap_n, cap_p = electrode_capacities(cell)
    qu, vu, iu = q[use], vd[use], idc[use]

    def residual(p: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.clip(p[0] - qu / cap_n, 1e-4, 1.0 - 1e-4))
        y = torch.as_tensor(np.clip(p[1] + qu / cap_p, 1e-4, 1.0 - 1e-4))
        model = (ocp.ocp_positive(y) - ocp.ocp_negative(x)).numpy() - iu * p[2]
        return model - vu

    # bounded to the physical: stoichiometries in (0, 1), a resistance >= 0 (unbounded, a flat
    # voltage is fitted exactly beyond the OCPs' ends, where the clip holds them constant)
    sol = least_squares(residual, np.array([0.85, 0.28, 0.03]), x_scale=np.full(3, 0.01),
                        bounds=([1e-4, 1e-4, 0.0], [1.0 - 1e-4, 1.0 - 1e-4, 1.0]))
    x0, y0, r = (float(s) for s in sol.x)
    if x0 - qu[-1] / cap_n <= 0.0 or y0 + qu[-1] / cap_p >= 1.0:
        return None  # the fitted samples run off an electrode's end: no reading
    return CheckupFit(n_li_mol=x0 * cap_n + y0 * cap_p, sto_n0=x0, sto_p0=y0, resistance_ohm=r,
                      rms_v=float(np.sqrt(np.mean(sol.fun ** 2))), samples=int(use.sum()))


def checkup_lithium(voltage_v: np.ndarray, current_a: np.ndarray, checkup: np.ndarray,
                    period_s: float, cell: CellConstants | None = None) -> np.ndarray:
    """Per-cycle lithium in the particles [mol] from each check-up cycle's fit, NaN for regular
    cycles and for check-ups that could not be fitted or whose fit misses its samples by more
    than :data:`MAX_RMS_V`. ``voltage_v``, ``current_a``: (cycles, samples); ``checkup``:
    (cycles,), 1 on check-up cycles."""
    v = np.asarray(voltage_v, dtype=float)
    i = np.asarray(current_a, dtype=float)
    flags = np.asarray(checkup)
    if v.ndim != 2 or v.shape != i.shape or flags.shape != v.shape[:1]:
        raise ValueError(f"checkup_lithium: voltage {v.shape} and current {i.shape} must be "
                         f"(cycles, samples) and checkup {flags.shape} (cycles,)")
    out = np.full(v.shape[0], np.nan)
    for c in np.flatnonzero(flags == 1):
        fit = fit_checkup(v[c], i[c], period_s, cell)
        if fit is not None and fit.rms_v <= MAX_RMS_V:
            out[c] = fit.n_li_mol
    return out
