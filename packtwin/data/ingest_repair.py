"""Units, timestamps and resampling of a measured log: each problem is repaired the documented
way or stopped with a message naming the file, column, expected and found.

Units (stored: V, A, K, s). Declared units win; undeclared ones are inferred only where the ranges
cannot be confused (a Li-ion cell is 0-5 V, i.e. >= 500 mV when not empty; 200-450 K never
overlaps -60..150 degC). Current in A vs mA cannot be told from values alone, so it must be
declared unless the cell capacity is: no cell carries more than ``MAX_C_RATE`` C.

Timeline: rows without a timestamp are dropped, rows are sorted by time (stable), exact duplicate
rows are dropped, and two rows with one timestamp but different values are an error.

Resampling to a uniform period: voltage and temperature are interpolated linearly; current keeps
the stores' convention (current[k] is the mean current of the period ending at sample k), so the
resampled current is the mean current over each new step and the charge passed is preserved.
A grid point inside a gap longer than ``max_gap_s`` (between finite samples) or outside a cell's
samples is not interpolated: it is NaN and the ``valid`` mask is 0 there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from packtwin import schema
from packtwin.data.ingest_read import IngestError, Log, numeric_range

TO_STORED = {  # quantity -> unit -> (scale, offset): stored = value * scale + offset
    "voltage": {"V": (1.0, 0.0), "mV": (1e-3, 0.0)},
    "current": {"A": (1.0, 0.0), "mA": (1e-3, 0.0)},
    "temperature": {"K": (1.0, 0.0), "degC": (1.0, 273.15)},
    "time": {"s": (1.0, 0.0), "ms": (1e-3, 0.0), "min": (60.0, 0.0), "h": (3600.0, 0.0)},
}
MAX_C_RATE = 50.0


def _where(log: Log, column: str) -> str:
    files = sorted(set(log.table["file"])) if "file" in log.table else []
    return f"log {files if len(files) > 1 else (files[0] if files else '?')!r}, column {column!r}"


def infer_unit(quantity: str, rng: tuple[float, float], capacity_ah: float | None) -> str | None:
    """The unit a value range can only be in, or None where it is ambiguous."""
    lo, hi = rng
    if quantity == "voltage":
        if 0.0 <= lo and hi <= 5.0:
            return "V"
        if 500.0 <= lo and hi <= 5000.0:
            return "mV"
    elif quantity == "temperature":
        if 200.0 <= lo and hi <= 450.0:
            return "K"
        if -60.0 <= lo and hi <= 150.0:
            return "degC"
    elif quantity == "current" and capacity_ah:
        peak, limit = max(abs(lo), abs(hi)), MAX_C_RATE * capacity_ah
        if peak <= limit:
            return "A"
        if peak / 1000.0 <= limit:
            return "mA"
    return None


def _plausible(quantity: str, stored: tuple[float, float], capacity_ah: float | None) -> bool:
    lo, hi = stored
    if quantity == "current":
        return not capacity_ah or max(abs(lo), abs(hi)) <= MAX_C_RATE * capacity_ah
    blo, bhi = schema.VARIABLES[quantity].bounds
    return (blo is None or lo >= blo) and (bhi is None or hi <= bhi)


def convert_units(log: Log, declared: dict[str, str], capacity_ah: float | None,
                  current_sign: str) -> dict[str, str]:
    """Convert voltage/current/temperature (and pack columns) in place; return the units record."""
    record = {}
    for q in ("voltage", "current", "temperature"):
        col = pd.to_numeric(log.table[q], errors="coerce")
        bad = col.isna() & log.table[q].notna()
        if bad.any():
            raise IngestError(f"{_where(log, q)}: {int(bad.sum())} non-numeric value(s), first "
                              f"{log.table[q][bad].iloc[0]!r}; expected numbers")
        rng = numeric_range(col.to_numpy())
        unit = declared.get(q)
        how = "declared" if unit else "inferred"
        if unit is None:
            unit = infer_unit(q, rng, capacity_ah) if rng else schema.VARIABLES[q].units
            if unit is None:
                hint = ("declare --units current=A|mA, or --capacity-ah to infer it"
                        if q == "current" else f"declare --units {q}=" + "|".join(TO_STORED[q]))
                raise IngestError(f"{_where(log, q)}: the unit of {q} cannot be inferred from its "
                                  f"range [{rng[0]:.6g}, {rng[1]:.6g}]; {hint}")
        if unit not in TO_STORED[q]:
            raise IngestError(f"{_where(log, q)}: unit {unit!r} unknown for {q}; expected one of "
                              f"{list(TO_STORED[q])}")
        scale, offset = TO_STORED[q][unit]
        values = col.to_numpy(dtype=float) * scale + offset
        if rng and not _plausible(q, (rng[0] * scale + offset, rng[1] * scale + offset), capacity_ah):
            guess = infer_unit(q, rng, capacity_ah)
            raise IngestError(
                f"{_where(log, q)}: {how} unit {unit!r} gives {q} in "
                f"[{rng[0] * scale + offset:.6g}, {rng[1] * scale + offset:.6g}] "
                f"{schema.VARIABLES[q].units}, outside the expected "
                f"{schema.VARIABLES[q].bounds if q != 'current' else f'+-{MAX_C_RATE} C'}; "
                f"the values [{rng[0]:.6g}, {rng[1]:.6g}] look like "
                f"{repr(guess) if guess else 'another unit'}: declare --units {q}=UNIT")
        if q == "current" and current_sign == "charge-positive":
            values = -values
        log.table[q] = values
        record[q] = f"{unit} ({how})"
        if log.pack is not None and q in ("voltage", "current"):
            pcol = "pack_" + q
            if pcol in log.pack:
                pv = log.pack[pcol].to_numpy(float) * scale
                log.pack[pcol] = -pv if (q == "current" and current_sign == "charge-positive") else pv
    if current_sign not in ("discharge-positive", "charge-positive"):
        raise IngestError(f"--current-sign must be discharge-positive or charge-positive, got "
                          f"{current_sign!r}")
    record["current_sign"] = f"{current_sign} in the file; stored discharge > 0"
    return record


def to_seconds(time: pd.Series, unit: str | None, where: str) -> tuple[np.ndarray, str | None]:
    """Timestamps as float seconds, and the ISO start time when they were dates."""
    num = pd.to_numeric(time, errors="coerce")
    if num.notna().sum() >= time.notna().sum() and time.notna().any():
        unit = unit or "s"
        if unit not in TO_STORED["time"]:
            raise IngestError(f"{where}: time unit {unit!r} unknown; expected one of "
                              f"{list(TO_STORED['time'])} or date-times")
        return num.to_numpy(dtype=float) * TO_STORED["time"][unit][0], None
    try:
        dt = pd.to_datetime(time, utc=True, errors="raise", format="mixed")
    except (ValueError, TypeError) as exc:
        raise IngestError(f"{where}: timestamps are neither numbers nor date-times "
                          f"(first {time.dropna().iloc[0]!r}): {exc}") from exc
    t0 = dt.min()
    secs = (dt - t0).dt.total_seconds().to_numpy(dtype=float)
    return secs, t0.isoformat()


def clean_timeline(df: pd.DataFrame, keys: list[str], values: list[str], where: str,
                   repairs: list[str], label: str) -> pd.DataFrame:
    """Drop rows without time, sort by time, drop exact duplicates; conflicting duplicates raise."""
    n_nat = int(df["time"].isna().sum())
    if n_nat:
        df = df[df["time"].notna()]
        repairs.append(f"{label}: dropped {n_nat} row(s) without a timestamp")
    groups = df.groupby(keys, sort=False)["time"] if keys else [(None, df["time"])]
    back = sum(int((np.diff(g.to_numpy()) < 0).sum()) for _, g in groups)
    if back:
        repairs.append(f"{label}: {back} out-of-order timestamp(s); rows sorted by time")
    df = df.sort_values(keys + ["time"], kind="stable")
    dup = df.duplicated(subset=keys + ["time"] + values, keep="first")
    if dup.any():
        repairs.append(f"{label}: dropped {int(dup.sum())} exact duplicate row(s)")
        df = df[~dup]
    clash = df.duplicated(subset=keys + ["time"], keep=False)
    if clash.any():
        row = df[clash].iloc[0]
        raise IngestError(f"{where}: {int(clash.sum())} rows share a timestamp with different "
                          f"values (first at time {row['time']:.6g} s"
                          f"{', cell ' + str(row['cell']) if 'cell' in keys else ''}); "
                          f"expected one value per {'cell and ' if keys else ''}time")
    return df


def check_current_sign(table: pd.DataFrame, where: str, min_steps: int = 5) -> str:
    """Stop a log whose current sign is evidently the opposite of the one declared.

    At a large current step a cell's voltage jumps against the discharge current (ohmic drop):
    with discharge > 0, dI * dV < 0. When at least ``min_steps`` large steps (|dI| > 10 % of the
    peak current) exist and at most 10 % of them agree, the sign is wrong; the evidence is
    returned for the store attrs either way.
    """
    agree = total = 0
    peak = float(np.nanmax(np.abs(table["current"].to_numpy(float)), initial=0.0))
    for _, g in table.groupby("cell", sort=False):
        di, dv = np.diff(g["current"].to_numpy(float)), np.diff(g["voltage"].to_numpy(float))
        big = np.isfinite(di) & np.isfinite(dv) & (np.abs(di) > 0.1 * peak) & (dv != 0)
        total += int(big.sum())
        agree += int((di[big] * dv[big] < 0).sum())
    evidence = (f"{agree} of {total} large current steps move the voltage against the "
                f"discharge current, as a discharge > 0 current does")
    if total >= min_steps and agree <= 0.1 * total:
        raise IngestError(f"{where}: the current sign looks reversed: only {evidence}; declare "
                          f"--current-sign charge-positive if the file counts charge as positive "
                          f"(or the other way round)")
    return evidence


def uniform_grid(t_start: float, t_end: float, period_s: float) -> np.ndarray:
    n = int(np.floor((t_end - t_start) / period_s + 1e-9)) + 1
    return t_start + np.arange(n) * period_s


def _gap_mask(t: np.ndarray, grid: np.ndarray, max_gap_s: float) -> np.ndarray:
    """True where a grid point has no finite sample within a gap of at most ``max_gap_s``."""
    if t.size == 0:
        return np.ones(grid.shape, bool)
    i = np.searchsorted(t, grid, side="left")
    outside = (grid < t[0]) | (grid > t[-1])
    ic = np.clip(i, 1, t.size - 1) if t.size > 1 else np.zeros_like(i)
    on = t[np.clip(i, 0, t.size - 1)] == grid
    span = t[ic] - t[ic - 1] if t.size > 1 else np.zeros(grid.shape)
    return outside | (~on & (span > max_gap_s))


def resample_point(t: np.ndarray, y: np.ndarray, grid: np.ndarray, max_gap_s: float) -> np.ndarray:
    """Linear interpolation of an instantaneous signal; NaN in long gaps and outside the samples."""
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    out = np.interp(grid, t, y) if t.size else np.full(grid.shape, np.nan)
    out[_gap_mask(t, grid, max_gap_s)] = np.nan
    return out


def resample_step(t: np.ndarray, i: np.ndarray, grid: np.ndarray, period_s: float,
                  max_gap_s: float) -> np.ndarray:
    """Mean current over each grid step (t_j - period, t_j] of the step-wise logged current.

    Logged current i[k] holds over (t[k-1], t[k]] (the stores' convention) and i[0] over the step
    before the first sample, so the charge passed between grid points is the logged one and a log
    already on the grid comes back unchanged.
    """
    ok = np.isfinite(i)
    t, i = t[ok], i[ok]
    if t.size == 0:
        return np.full(grid.shape, np.nan)
    tq = np.concatenate([[t[0] - period_s], t])
    q = np.concatenate([[0.0], np.cumsum(np.concatenate([[i[0] * period_s], i[1:] * np.diff(t)]))])
    out = (np.interp(grid, tq, q) - np.interp(grid - period_s, tq, q)) / period_s
    out[_gap_mask(t, grid, max_gap_s)] = np.nan
    return out
