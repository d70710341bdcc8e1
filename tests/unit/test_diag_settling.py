"""scripts/diag_observer_cycles.py ``settling``: time until the field error stays below 1 % of
c_max, and the error 10 min after the start (issue #9 item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from packtwin import schema

PERIOD = 10.0
N_T = 120  # 20 min at 10 s


def _pair(err_pct_n: np.ndarray, err_pct_p: np.ndarray, t0: int = 0):
    """Truth and prediction with one scenario, one cell, one snapshot: a uniform field offset by
    ``err_pct`` % of c_max at each sample (so the RMS error is exactly that); NaN before t0."""
    dims = (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME)
    coords = {schema.SCENARIO: [0], schema.CELL: [0], schema.SNAPSHOT: [0],
              schema.TIME: np.arange(N_T) * PERIOD}
    truth, pred = xr.Dataset(coords=coords), xr.Dataset(coords=coords)
    for f, xd, rd, c_max, err in (("c_s_n", schema.X_N, schema.R_N, 30000.0, err_pct_n),
                                  ("c_s_p", schema.X_P, schema.R_P, 50000.0, err_pct_p)):
        base = np.full((1, 1, 1, N_T, 3, 4), 0.5 * c_max)
        off = (err / 100.0 * c_max)[None, None, None, :, None, None]
        truth[f] = (dims + (xd, rd), base, {"c_max": c_max, "units": "mol/m3"})
        p = base + off
        p[:, :, :, :t0] = np.nan
        pred[f] = (dims + (xd, rd), p)
    soc = np.full((1, 1, 1, N_T), 0.5)
    soc[..., :t0] = np.nan
    pred["soc"] = (dims, soc)
    return pred, truth


def test_settling_is_the_last_crossing_of_the_worse_electrode(load_script):
    mod = load_script("diag_observer_cycles")
    t = np.arange(N_T)
    err_n = np.where(t < 30, 5.0, 0.4)            # below 1 % from sample 30 (300 s) on
    err_p = np.where((t >= 50) & (t < 55), 2.0, 0.2)  # a late excursion: stays below from 550 s
    pred, truth = _pair(err_n, err_p)
    when, at10 = mod.settling(pred, truth, 0, 0, 0, 0, PERIOD)
    assert when == pytest.approx(550.0)
    assert at10 == pytest.approx(0.4)            # sample 60: the negative electrode's 0.4 %


def test_settling_counts_from_the_first_estimate_and_says_never(load_script):
    mod = load_script("diag_observer_cycles")
    t = np.arange(N_T)
    pred, truth = _pair(np.where(t < 110, 3.0, 0.5), np.full(N_T, 0.1), t0=40)
    when, at10 = mod.settling(pred, truth, 0, 0, 0, 40, PERIOD)
    assert when == pytest.approx((110 - 40) * PERIOD)   # time since the start, not the log's
    assert at10 == pytest.approx(3.0)                    # sample 40 + 60
    pred, truth = _pair(np.full(N_T, 3.0), np.full(N_T, 0.1))
    assert mod.settling(pred, truth, 0, 0, 0, 0, PERIOD)[0] is None
    # a cycle shorter than 10 min after its start has no 10-min figure
    pred, truth = _pair(np.full(N_T, 0.5), np.full(N_T, 0.1), t0=N_T - 30)
    assert mod.settling(pred, truth, 0, 0, 0, N_T - 30, PERIOD) == (0.0, None)
