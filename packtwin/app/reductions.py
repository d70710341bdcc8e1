"""Per-view reductions: pure functions from arrays to what a view plots (no state, no I/O).

Colour scales have a floor: a colour range never spans less than ``max(rel * |mid|, abs)`` of its
quantity (``COLOUR_FLOORS``; ``mid`` the midpoint of the data's range), so cells that differ by
0.2 % do not stretch from one end of the colour map to the other. A narrower range is widened
symmetrically around that midpoint; a wider one is the data's own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

X_AVG = -1  # x_index value meaning "average over the electrode's thickness"
PERCENTILES = (10.0, 90.0)


@dataclass(frozen=True)
class Floor:
    """Smallest colour span of a quantity: ``max(rel * |mid|, abs)`` in its display units."""

    rel: float = 0.0
    abs: float = 0.0

    def span(self, mean: float) -> float:
        return max(self.rel * abs(mean), self.abs)


# Display units: SEI nm, SOC 1, plating margin V, temperature degC, c_s error % of c_max, c_s mol/m3.
COLOUR_FLOORS: dict[str, Floor] = {
    "SEI thickness": Floor(rel=0.02, abs=0.05),   # 2 % of the mean thickness
    "SOC": Floor(abs=0.02),                        # 2 percentage points
    "Max plating risk": Floor(abs=0.01),           # 10 mV
    "Temperature": Floor(abs=1.0),                 # 1 degC
    "c_s error": Floor(abs=0.1),                   # 0.1 % of c_max
    "c_s": Floor(rel=0.002, abs=1.0),              # 0.2 % of the mean concentration
    "c_s error map": Floor(abs=1.0),               # 1 mol/m3
}


def finite_extent(*arrays: np.ndarray | None) -> tuple[float, float] | None:
    """(min, max) over the finite values of all arrays, None if there are none."""
    vals = [np.asarray(a, float) for a in arrays if a is not None]
    vals = [a[np.isfinite(a)] for a in vals]
    vals = [a for a in vals if a.size]
    if not vals:
        return None
    return float(min(a.min() for a in vals)), float(max(a.max() for a in vals))


def colour_range(*arrays: np.ndarray | None, floor: Floor = Floor(abs=1e-9)
                 ) -> tuple[float, float]:
    """A colour range holding every finite value, at least ``floor.span(mean)`` wide."""
    ext = finite_extent(*arrays)
    if ext is None:
        return 0.0, 1.0
    lo, hi = ext
    mid = 0.5 * (lo + hi)
    span = max(hi - lo, floor.span(mid), 1e-12 * max(abs(mid), 1.0))
    return mid - span / 2, mid + span / 2


def symmetric_range(err: np.ndarray | None, floor: Floor = Floor(abs=1e-9)) -> tuple[float, float]:
    """(-m, m) with m the largest |error| (at least half the floor's span)."""
    ext = finite_extent(None if err is None else np.abs(err))
    m = max(ext[1] if ext else 0.0, floor.span(0.0) / 2)
    return (-m, m) if m > 0 else (-1.0, 1.0)


def padded(lo: float, hi: float, pad: float = 0.05) -> tuple[float, float]:
    span = hi - lo
    extra = pad * span if span > 0 else max(abs(lo) * pad, 1e-9)
    return lo - extra, hi + extra


# ------------------------------------------------------------------ particle concentration
def cs_at_time(block: np.ndarray | None, time_index: int) -> np.ndarray | None:
    """c_s (time, x, r) at one time, as (r, x): rows r, columns x, as images are drawn."""
    if block is None or block.shape[0] == 0:
        return None
    return block[min(time_index, block.shape[0] - 1)].T


def cs_over_time(block: np.ndarray | None, x_index: int) -> np.ndarray | None:
    """c_s (time, x, r) at one x (or averaged over x when ``x_index == X_AVG``), as (r, time)."""
    if block is None:
        return None
    prof = block.mean(axis=1) if x_index == X_AVG else block[:, x_index, :]
    return prof.T


def difference(pred: np.ndarray | None, true: np.ndarray | None) -> np.ndarray | None:
    return None if pred is None or true is None else pred - true


def cs_rmse_per_cell(true: np.ndarray, pred: np.ndarray | None, c_max: float | None) -> np.ndarray:
    """RMSE over a cycle per cell of (cell, time, ...) blocks; % of ``c_max`` when known."""
    if pred is None or true.shape[1] == 0:
        return np.full(true.shape[0], np.nan)
    axes = tuple(range(1, true.ndim))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells without a prediction: NaN
        rmse = np.sqrt(np.nanmean((pred - true) ** 2, axis=axes))
    return 100.0 * rmse / c_max if c_max else rmse


# ------------------------------------------------------------------ pack-level views
def overview_values(signal: np.ndarray, how: str, time_index: int) -> np.ndarray:
    """Per-cell value of a (cell, time) signal: at a time ("at time") or its minimum ("cycle min")."""
    if signal.shape[1] == 0:
        return np.full(signal.shape[0], np.nan)
    if how == "at time":
        return signal[:, min(time_index, signal.shape[1] - 1)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(signal, axis=1) if np.isfinite(signal).any() else signal[:, 0]


def sei_band(sei: np.ndarray) -> dict[str, np.ndarray]:
    """Pack min/max, percentile band and median over cells of a (cell, cycle) array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cycles not yet run
        return {"min": np.nanmin(sei, 0), "max": np.nanmax(sei, 0),
                "lo": np.nanpercentile(sei, PERCENTILES[0], 0),
                "hi": np.nanpercentile(sei, PERCENTILES[1], 0),
                "median": np.nanmedian(sei, 0)}


def last_valid(values: np.ndarray, masks: list[np.ndarray], cycles: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(cycle, value at the last valid sample) of each snapshot with a finite value there.

    ``values`` is (snapshot, time); ``masks[k]`` the valid samples of snapshot ``k``.
    """
    cyc, out = [], []
    for k, (mask, c) in enumerate(zip(masks, cycles)):
        idx = np.flatnonzero(mask)
        if idx.size and np.isfinite(values[k, idx[-1]]):
            cyc.append(int(c))
            out.append(float(values[k, idx[-1]]))
    return np.asarray(cyc, int), np.asarray(out, float)


def params_table(rows: list[tuple[str, str, float]], twins: dict[str, list[float]],
                 bands: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Truth vs each twin's value and relative error; ``rows`` = (name, units, truth).

    ``bands`` adds a twin's band half-width (``<twin> ±``). Without any truth (a measured store:
    every truth NaN) the truth and error columns are left out rather than shown empty.
    """
    bands = bands or {}
    with_truth = any(np.isfinite(t) for _, _, t in rows)
    out = []
    for i, (name, units, truth) in enumerate(rows):
        row = {"parameter": name, "units": units}
        if with_truth:
            row["truth"] = truth
        for variant, vals in twins.items():
            val = vals[i]
            row[variant] = val
            if variant in bands:
                row[f"{variant} ±"] = bands[variant][i]
            if with_truth:
                row[f"{variant} error [%]"] = (100.0 * (val - truth) / truth
                                               if np.isfinite(val) and truth else np.nan)
        out.append(row)
    return pd.DataFrame(out)


# ------------------------------------------------------------------ drawing helpers
def broken_lines(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Many curves over the same x as one line with NaN breaks between them.

    One glyph for all cells instead of one path each: a multi-path element costs ~0.2 s per update
    for 16 cells in HoloViews, a broken line a few milliseconds.
    """
    n = rows.shape[0]
    xs = np.concatenate([np.append(x.astype(float), np.nan)] * n) if n else np.array([])
    ys = np.concatenate([np.append(r.astype(float), np.nan) for r in rows]) if n else np.array([])
    return xs, ys


def spread_format(values: np.ndarray) -> list[str]:
    """Values with just enough decimals that cells which differ read differently."""
    finite = values[np.isfinite(values)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    scale = max(abs(float(finite.max())), abs(float(finite.min()))) if finite.size else 0.0
    if scale and (scale >= 1e5 or scale < 1e-3):
        return [f"{v:.3e}" if np.isfinite(v) else "n/a" for v in values]
    ref = spread if spread > 0 else (scale or 1.0)
    decimals = int(min(max(0, 1 - np.floor(np.log10(ref))), 6))
    return [f"{v:.{decimals}f}" if np.isfinite(v) else "n/a" for v in values]
