"""scripts/diag_observer_trace.py: the per-minute trace reads the right differences."""

import numpy as np
import xarray as xr

from packtwin import schema


def _ds(soc: float, v: float, cs: float, nan_first: int = 0) -> xr.Dataset:
    dims = (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME)
    n = 13  # 2 minutes at 10 s
    soc_a = np.full((1, 1, 1, n), soc)
    soc_a[..., :nan_first] = np.nan
    field = np.full((1, 1, 1, n, 3), cs)
    ds = xr.Dataset({"soc": (dims, soc_a), "voltage": (dims, np.full((1, 1, 1, n), v)),
                     "current": (dims, np.full((1, 1, 1, n), 5.0)),
                     "c_s_n": (dims + ("r",), field), "c_s_p": (dims + ("r",), field)},
                    coords={schema.SCENARIO: [4], schema.CELL: [1], schema.SNAPSHOT: [0]},
                    attrs={"period_s": 10.0})
    for f in ("c_s_n", "c_s_p"):
        ds[f].attrs["c_max"] = 1000.0
    return ds


def test_trace_reports_soc_field_and_voltage_errors(load_script):
    mod = load_script("diag_observer_trace")
    truth = _ds(0.8, 3.60, 500.0)
    pred = _ds(0.7, 3.65, 510.0, nan_first=3)  # first estimate at sample 3 (30 s)
    lines = mod.trace(pred, truth, minutes=1.0)
    assert lines[0] == "scenario 4 cell 1: first estimate at 30 s"
    assert len(lines) == 3  # t+0 and t+60 s
    assert "SOC error  -10.00" in lines[1] and "c_s n   1.00 %" in lines[1]
    assert "dV    50.0 mV" in lines[1]
    assert mod.trace(_ds(np.nan, 3.6, 0.0), truth) == ["scenario 4 cell 1: no estimate"]


def test_core_from_truth_refuses_a_backward_window(load_script):
    """scripts/diag_core_from_truth.py names a bad sample window before touching the store."""
    import pytest

    mod = load_script("diag_core_from_truth")
    with pytest.raises(ValueError, match="from-sample < to-sample"):
        mod.offsets(xr.Dataset(), 0, 10, 5)


def test_core_from_truth_summary_agrees_with_the_samples(load_script, synthetic_store,
                                                         one_torch_thread):
    """--summary's voltage RMSE is the RMS of the per-sample offsets of the same run, and its
    c_s error and lowest c_e are finite (synthetic store: the plumbing, not the numbers)."""
    from packtwin.data import store
    from packtwin.physics.core import CoreConfig

    mod = load_script("diag_core_from_truth")
    ds = store.open_store(synthetic_store)
    cfg = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=4)
    dv, _, d_pl = mod.offsets(ds, 1, 0, 6, config=cfg)
    out = mod.summary(ds, 1, 0, 6, config=cfg)
    assert d_pl is None
    assert abs(out["voltage_rmse_mV"] - 1e3 * float(np.sqrt(np.mean(dv ** 2)))) < 1e-9
    assert np.isfinite(out["c_s_n_rmse_pct"]) and out["c_e_min"] > 0
