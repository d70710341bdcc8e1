"""scripts/diag_ekf_blowup.py: the recorded steps are the filter's own, and the first step off
is found."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.physics import ekf as ekf_module

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "diag_ekf_blowup.py"
COARSE = {"n_x_n": 2, "n_x_s": 1, "n_x_p": 2, "n_r": 4}


def _module():
    spec = importlib.util.spec_from_file_location("diag_ekf_blowup", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_first_blowup_finds_the_first_step_and_row():
    mod = _module()
    rec = [{"v_model": np.array([4.0, 3.9]), "V": np.array([4.0, 3.95])},
           {"v_model": np.array([4.0, 5.2]), "V": np.array([4.0, 3.95])},
           {"v_model": np.array([626.0, 4.0]), "V": np.array([4.0, 3.95])}]
    assert mod.first_blowup(rec, 1.0) == (1, 1)
    assert mod.first_blowup(rec, 100.0) == (2, 0)
    assert mod.first_blowup(rec[:1], 1.0) is None


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_trace_records_the_filters_own_voltages(synthetic_store, one_torch_thread):
    mod = _module()
    truth = xr.open_zarr(synthetic_store, consolidated=False)
    step = ekf_module.CoreEKF.step
    pred, rec = mod.trace_ekf(truth, [0], [0, 1], [0], core=COARSE)
    assert ekf_module.CoreEKF.step is step  # the filter is left as it was
    v = pred["voltage"].isel(scenario=0, snapshot=0).values  # [cell, time]
    n = int(np.isfinite(v[0]).sum())
    assert len(rec) >= n - 1 and rec[0]["v_model"].shape == (2,)
    # the prediction's voltage at sample k is the model voltage of filter step k - 1
    model = np.stack([r["v_model"] for r in rec[:n - 1]], 1)
    np.testing.assert_allclose(model, v[:, 1:n], rtol=1e-5)
    assert all(0.0 <= r["shell_min"].min() <= r["shell_max"].max() <= 1.0 for r in rec)
