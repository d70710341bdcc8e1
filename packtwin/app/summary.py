"""Pack summary: pure functions from per-cell arrays to what a pack engineer asks for first.

Weakest cells, the SOC spread across the pack, plating-risk alarms and capacity/SEI outliers. Every
function takes plain arrays (an estimate and, where known, its band half-width ``k * std``) and
returns arrays or small tables; nothing here reads a store or draws.

Outliers use the modified z-score of Iglewicz and Hoaglin (1993): ``0.6745 (x - median) / MAD``,
flagged beyond 3.5. The median and MAD are not pulled by the outlier itself, as a mean and standard
deviation over 4-16 cells would be.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from packtwin.app.reductions import sei_band

MAD_TO_SIGMA = 0.6745  # MAD of a normal distribution in standard deviations
MEANAD_TO_SIGMA = 0.7979  # mean absolute deviation of a normal distribution, in sigmas
OUTLIER_Z = 3.5
PLATING_THRESHOLD_V = 0.0  # below 0 V vs Li, lithium plating is thermodynamically possible

# Plating status of a cell over a cycle, worst first.
ALARM, POSSIBLE, OK = "alarm", "possible", "ok"


def robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-score of each value (NaN stays NaN).

    With a zero MAD (more than half the cells equal) the mean absolute deviation stands in, as
    in IBM SPSS's robust z; when every finite value is equal, all scores are 0.
    """
    x = np.asarray(values, dtype=float)
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    if not ok.any():
        return out
    med = np.median(x[ok])
    dev = np.abs(x[ok] - med)
    mad = np.median(dev)
    if mad > 0:
        out[ok] = MAD_TO_SIGMA * (x[ok] - med) / mad
    elif dev.mean() > 0:
        out[ok] = MEANAD_TO_SIGMA * (x[ok] - med) / dev.mean()
    else:
        out[ok] = 0.0
    return out


def outliers(values: np.ndarray, threshold: float = OUTLIER_Z) -> np.ndarray:
    """Cells whose modified z-score exceeds ``threshold`` in either direction."""
    with np.errstate(invalid="ignore"):
        return np.abs(robust_z(values)) > threshold


def pack_spread(signal: np.ndarray) -> dict[str, np.ndarray]:
    """Band of a (cell, time) signal over the cells (``reductions.sei_band``) plus the spread
    ``max - min`` at each time, and where the spread is largest."""
    band = dict(sei_band(signal))
    band["spread"] = band["max"] - band["min"]
    finite = np.isfinite(band["spread"])
    band["widest"] = int(np.nanargmax(band["spread"])) if finite.any() else -1
    return band


def plating_alarms(margin: np.ndarray, half_width: np.ndarray | None, times: np.ndarray,
                   cells: np.ndarray, threshold: float = PLATING_THRESHOLD_V) -> pd.DataFrame:
    """Plating status of each cell over a cycle, worst first.

    ``margin`` is the (estimated) plating margin, (cell, time) [V]; ``half_width`` the band's
    half-width ``k * std`` (None: no band, the estimate is taken as exact); ``times`` [s].
    A cell is an ``alarm`` where its margin goes below ``threshold``, ``possible`` where only the
    lower edge of its band does, else ``ok``. ``minutes_below`` counts the time (sample period
    from ``times``) the margin itself is below the threshold.
    """
    m = np.asarray(margin, float)
    hw = np.zeros_like(m) if half_width is None else np.asarray(half_width, float)
    lower = m - np.where(np.isfinite(hw), hw, 0.0)
    dt = float(np.median(np.diff(times))) if np.size(times) > 1 else 0.0
    rows = []
    for i, cell in enumerate(cells):
        row = m[i]
        if not np.isfinite(row).any():
            rows.append(dict(cell=int(cell), status=OK, min_margin=np.nan, band=np.nan,
                             t_min=np.nan, minutes_below=0.0))
            continue
        k = int(np.nanargmin(row))
        status = (ALARM if row[k] < threshold else
                  POSSIBLE if np.nanmin(lower[i]) < threshold else OK)
        with np.errstate(invalid="ignore"):
            below = int(np.sum(row < threshold))
        rows.append(dict(cell=int(cell), status=status, min_margin=float(row[k]),
                         band=float(hw[i, k]) if half_width is not None else np.nan,
                         t_min=float(times[k]), minutes_below=below * dt / 60.0))
    df = pd.DataFrame(rows)
    order = df.status.map({ALARM: 0, POSSIBLE: 1, OK: 2})
    return df.assign(_o=order).sort_values(["_o", "min_margin"]).drop(columns="_o") \
        .reset_index(drop=True)


@dataclass(frozen=True)
class Criterion:
    """A per-cell figure by which a cell is weak: its label, unit and which end is worse."""

    label: str
    unit: str
    higher_is_worse: bool


# Identified per-cell parameters that mark a weak cell, and which end is worse. Capacity follows
# the lithium inventory and the active material; resistance the contact resistance; SEI growth the
# solvent diffusivity and rate constant.
PARAM_WORSE: dict[str, bool] = {
    "neg_c_init": False, "neg_am_fraction": False, "pos_am_fraction": False,
    "contact_resistance": True, "sei_solvent_diffusivity": True, "sei_rate_constant": True,
}


def weakest_cells(cells: np.ndarray, figures: dict[Criterion, tuple[np.ndarray, np.ndarray | None]],
                  n: int = 3) -> pd.DataFrame:
    """The ``n`` worst cells by each criterion, with the band half-width where known.

    ``figures`` maps a criterion to (value per cell, band half-width per cell or None). Cells with
    no finite value are left out; ``robust_z`` says how far each is from the pack.
    """
    rows = []
    for crit, (values, half_width) in figures.items():
        v = np.asarray(values, float)
        ok = np.flatnonzero(np.isfinite(v))
        if not ok.size:
            continue
        z = robust_z(v)
        order = ok[np.argsort(-v[ok] if crit.higher_is_worse else v[ok], kind="stable")]
        for rank, i in enumerate(order[:n], 1):
            hw = np.nan if half_width is None else float(np.asarray(half_width, float)[i])
            rows.append(dict(criterion=crit.label, unit=crit.unit, rank=rank, cell=int(cells[i]),
                             value=float(v[i]), band=hw, robust_z=float(z[i])))
    return pd.DataFrame(rows, columns=["criterion", "unit", "rank", "cell", "value", "band",
                                       "robust_z"])


def outlier_table(cells: np.ndarray, figures: dict[str, np.ndarray],
                  threshold: float = OUTLIER_Z) -> pd.DataFrame:
    """Every (quantity, cell) whose modified z-score exceeds ``threshold``, largest first."""
    rows = []
    for name, values in figures.items():
        z = robust_z(values)
        with np.errstate(invalid="ignore"):
            hits = np.flatnonzero(np.abs(z) > threshold)
        rows += [dict(quantity=name, cell=int(cells[i]), value=float(np.asarray(values)[i]),
                      robust_z=float(z[i])) for i in hits]
    df = pd.DataFrame(rows, columns=["quantity", "cell", "value", "robust_z"])
    return df.iloc[np.argsort(-np.abs(df.robust_z.values), kind="stable")].reset_index(drop=True)


def last_finite(signal: np.ndarray) -> np.ndarray:
    """Each row's last finite value (end of the cycle for a (cell, time) signal); NaN if none."""
    s = np.asarray(signal, float)
    out = np.full(s.shape[0], np.nan)
    for i, row in enumerate(s):
        idx = np.flatnonzero(np.isfinite(row))
        if idx.size:
            out[i] = row[idx[-1]]
    return out


def nanmin_rows(signal: np.ndarray) -> np.ndarray:
    """Each row's minimum over its finite values (NaN if none), without the all-NaN warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(np.asarray(signal, float), axis=1)


# ------------------------------------------------------------------ over life
def first_finite(signal: np.ndarray) -> np.ndarray:
    """Each row's first finite value; NaN if none."""
    return last_finite(np.asarray(signal, float)[:, ::-1])


def growth_per_cycle(cycles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each cell's mean growth per cycle over its finite cycles, (last - first) / (cycles between),
    of a (cell, cycle) array; NaN for a cell with fewer than two finite cycles."""
    v = np.asarray(values, float)
    c = np.asarray(cycles, float)
    out = np.full(v.shape[0], np.nan)
    for i, row in enumerate(v):
        idx = np.flatnonzero(np.isfinite(row))
        if idx.size >= 2 and c[idx[-1]] > c[idx[0]]:
            out[i] = (row[idx[-1]] - row[idx[0]]) / (c[idx[-1]] - c[idx[0]])
    return out


def fastest(rates: np.ndarray, higher: bool = True) -> int:
    """Index of the fastest cell (highest rate, or lowest with ``higher=False``); -1 if none."""
    r = np.asarray(rates, float)
    if not np.isfinite(r).any():
        return -1
    return int(np.nanargmax(r) if higher else np.nanargmin(r))


def percent_of_first(values: np.ndarray) -> np.ndarray:
    """A (cell, cycle) array as % of each cell's first finite value (capacity retention)."""
    v = np.asarray(values, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * v / first_finite(v)[:, None]
