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

import json
import math
from pathlib import Path
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


# ---- calibration -------------------------------------------------------------------------------
# The seed spread is much smaller than the error (scripts/bench_estimate.py), so the band is
# rescaled per variable by split-conformal calibration on estimates whose truth is known:
#
#     half width = scale * (k * std + floor)
#
# ``floor`` (the variable's units) keeps the band from vanishing where the members agree exactly
# (e.g. the first sample); ``scale`` is the conformal quantile of |truth - mean| / (k std + floor)
# on the calibration entries, so that at least ``level`` of them are inside the band by
# construction. The guarantee is for new entries exchangeable with the calibration ones; other
# conditions (temperatures, rates) must be measured (scripts/bench_estimate.py).
CALIBRATION_KIND = "packtwin estimate band calibration"
CALIBRATION_VERSION = 1
FLOOR_FRACTION = 0.1  # floor = this share of the RMS of k * std on the calibration entries


class CalibrationError(PacktwinError, ValueError):
    """A band calibration that cannot be computed or applied; the message names the problem."""


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest finite score: the split-conformal quantile."""
    check_level(level)
    s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    n = s.size
    rank = math.ceil((n + 1) * level)
    if rank > n:
        raise CalibrationError(f"{n} calibration entries are too few for level {level}: "
                               f"need at least {math.ceil(level / (1 - level))}")
    return float(s[rank - 1])


def fit_scale(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, k: float, level: float,
              floor: float | None = None) -> dict:
    """``scale`` and ``floor`` of the calibrated band on these entries (finite ones only), with
    the raw and calibrated coverage achieved on them."""
    ok = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std)
    if not ok.any():
        raise CalibrationError("no calibration entry where truth, mean and std are all finite")
    t, m, s = truth[ok], mean[ok], std[ok]
    if floor is None:
        floor = FLOOR_FRACTION * float(np.sqrt(np.mean((k * s) ** 2)))
    if not floor > 0:  # every member equal everywhere: the band is the error alone
        floor = float(np.sqrt(np.mean((t - m) ** 2))) or 1.0
    scale = conformal_quantile(np.abs(t - m) / (k * s + floor), level)
    return {"scale": scale, "floor": float(floor), "n": int(ok.sum()),
            "coverage_raw": coverage(t, m, s, k)["coverage"],
            "coverage_calibrated":
                coverage(t, m, calibrated_std(s, k, scale, floor), k)["coverage"]}


def calibrated_std(std, k: float, scale: float, floor: float):
    """The std whose band mean +- k std is the calibrated band scale * (k std + floor)."""
    return scale * (std + floor / k)


def load_calibration(path, units: dict[str, str], n_members: int) -> dict:
    """A calibration file checked against an estimate: ``units`` maps each estimated variable
    to its units; the file's ensemble size must be ``n_members`` (k depends on it)."""
    src = f"calibration {str(path)!r}"
    try:
        cal = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CalibrationError(f"{src} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{src} is not a readable JSON file ({exc})") from None
    if not isinstance(cal, dict) or cal.get("kind") != CALIBRATION_KIND:
        raise CalibrationError(f"{src} is not a band calibration (kind "
                               f"{cal.get('kind') if isinstance(cal, dict) else None!r}, "
                               f"expected {CALIBRATION_KIND!r})")
    if not isinstance(cal.get("members"), int) or cal.get("members") != n_members:
        raise CalibrationError(f"{src} was made for an ensemble of {cal.get('members')} "
                               f"checkpoints, this estimate has {n_members}")
    variables = cal.get("variables")
    if not isinstance(variables, dict) or not variables:
        raise CalibrationError(f"{src} has no 'variables'")
    for name, entry in variables.items():
        if name not in units:
            raise CalibrationError(f"{src}: variable {name!r} is not estimated here "
                                   f"(estimated: {sorted(units)})")
        if not isinstance(entry, dict) or entry.get("units") != units[name]:
            found = entry.get("units") if isinstance(entry, dict) else None
            raise CalibrationError(f"{src}: variable {name!r} has units {found!r}, the "
                                   f"estimate has {units[name]!r}")
        for key in ("scale", "floor"):
            v = entry.get(key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise CalibrationError(f"{src}: variable {name!r} has {key} {v!r}, expected a "
                                       f"finite number >= 0")
    level = cal.get("level")
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise CalibrationError(f"{src} has level {level!r}, expected a number in (0, 1)")
    cal["k"] = band_factor(n_members, level)  # the band's k, whatever the file says
    return cal
