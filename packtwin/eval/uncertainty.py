"""An ensemble over seeds as an uncertainty: its mean, its spread, the band, the band's coverage.

The members are the same twin trained with different seeds (``packtwin evaluate`` trains 3). The
band is the Student-t *prediction* interval of a new draw from the members' distribution::

    mean +- k * std,   k = t_{K-1}((1 + level) / 2) * sqrt(1 + 1/K)

with ``std`` the members' sample standard deviation (ddof=1) and K members. If the truth were
one more exchangeable, normally distributed member, the band would cover it at ``level``. A seed
ensemble shares its training data and architecture, so the error the members have in common
(bias) is not in the spread: coverage must be measured, not assumed
(``scripts/bench_estimate.py``). The members' range [min, max] is the distribution-free
counterpart: a new exchangeable draw falls inside it with probability (K - 1) / (K + 1).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import xarray as xr

from packtwin import schema
from packtwin.errors import PacktwinError

MEMBER = "member"  # the ensemble dimension while members are combined (not stored)


class EnsembleError(PacktwinError, ValueError):
    """Ensemble members that cannot be combined; the message names what differs."""


def band_factor(n_members: int, level: float) -> float:
    """k of the band mean +- k std with nominal coverage ``level`` for ``n_members`` members."""
    if n_members < 2:
        raise EnsembleError(f"a spread needs at least 2 ensemble members, got {n_members}")
    check_level(level)
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2.0, n_members - 1) * math.sqrt(1.0 + 1.0 / n_members))


def check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise EnsembleError(f"coverage level must be in (0, 1), got {level}")


def range_level(n_members: int) -> float:
    """Nominal coverage of the members' [min, max]: (K - 1) / (K + 1)."""
    return (n_members - 1) / (n_members + 1)


def combine(members: Sequence[xr.Dataset], names: Sequence[str]) -> xr.Dataset:
    """Mean of ``names`` over the members, and (2 members or more) ``<name>_std`` (ddof=1).

    Coordinates and attrs are the first member's; every member must have the same coordinates.
    """
    if not members:
        raise EnsembleError("no ensemble member to combine")
    first = members[0]
    for i, m in enumerate(members[1:], 1):
        for c in first.coords:
            if c not in m.coords or not np.array_equal(np.asarray(m[c].values),
                                                       np.asarray(first[c].values)):
                raise EnsembleError(f"ensemble member {i} has another coordinate {c!r} than "
                                    f"member 0: members must estimate the same grid")
    # float64: the spread of float32 fields near c_max (1e4) can be 1e-3 of a unit
    stacked = xr.concat([m[list(names)].astype("float64") for m in members], dim=MEMBER,
                        coords="minimal", compat="override", join="override")
    out = xr.Dataset(coords=first.coords, attrs=dict(first.attrs))
    for name in names:
        out[name] = stacked[name].mean(MEMBER, skipna=False).astype(first[name].dtype)
        out[name].attrs = schema.var_attrs(name)
        if len(members) > 1:
            s = schema.std_var(name)
            out[s] = stacked[name].std(MEMBER, ddof=1, skipna=False).astype(first[name].dtype)
            out[s].attrs = schema.var_attrs(s)
    return out


def inside_band(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float) -> np.ndarray:
    """Where |truth - mean| <= k std (bool; False where any is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.abs(truth - mean) <= k * std


def coverage(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float) -> dict:
    """Achieved coverage of mean +- k std over the entries where all three are finite."""
    ok = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std)
    n = int(ok.sum())
    hit = int(inside_band(truth, mean, std, k)[ok].sum())
    return {"n": n, "covered": hit, "coverage": hit / n if n else float("nan")}


def range_coverage(truth: np.ndarray, member_values: np.ndarray) -> dict:
    """Achieved coverage of the members' [min, max] (members on axis 0)."""
    ok = np.isfinite(truth) & np.all(np.isfinite(member_values), axis=0)
    lo, hi = member_values.min(axis=0), member_values.max(axis=0)
    with np.errstate(invalid="ignore"):
        hit = (truth >= lo) & (truth <= hi)
    n = int(ok.sum())
    return {"n": n, "covered": int(hit[ok].sum()),
            "coverage": int(hit[ok].sum()) / n if n else float("nan")}
