"""The observer bench's summary separates the start-up error from the converged voltage error."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from packtwin.eval.observer_bench import mean_std, summarise


def _core(c_max: float = 30000.0) -> SimpleNamespace:
    electrode = SimpleNamespace(c_max=c_max)
    return SimpleNamespace(design=SimpleNamespace(
        constants=SimpleNamespace(neg=electrode, pos=electrode)))


def _run(K: int, period: float, early_mv: float, late_mv: float, late_from_s: float) -> dict:
    B, P, R = 2, 3, 4
    c = torch.full((B, K, P, R), 15000.0, dtype=torch.float64)
    t = period * torch.arange(1, K + 1, dtype=torch.float64)
    err = torch.where(t <= late_from_s, early_mv, late_mv).double() * 1e-3
    v_true = 3.7 + 0.01 * torch.randn(B, K, dtype=torch.float64)
    log = {"c_n": c, "c_p": c, "V_true": v_true}
    return summarise(_core(), c, c, v_true + err, log, period)


def test_voltage_after_10min_and_last_5min_ignore_the_start() -> None:
    out = _run(K=180, period=10.0, early_mv=100.0, late_mv=2.0, late_from_s=600.0)
    assert out["voltage_rmse_mV_after_10min"] == pytest.approx(2.0, rel=1e-9)
    assert out["voltage_rmse_mV_last_5min"] == pytest.approx(2.0, rel=1e-9)
    whole = np.sqrt((60 * 100.0**2 + 120 * 2.0**2) / 180)
    assert out["voltage_rmse_mV"] == pytest.approx(whole, rel=1e-9)


def test_last_5min_sees_a_late_error() -> None:
    out = _run(K=180, period=10.0, early_mv=1.0, late_mv=1.0, late_from_s=1e9)
    assert out["voltage_rmse_mV_last_5min"] == pytest.approx(1.0, rel=1e-9)
    drift = _run(K=180, period=10.0, early_mv=1.0, late_mv=9.0, late_from_s=1500.0)
    assert drift["voltage_rmse_mV_last_5min"] == pytest.approx(9.0, rel=1e-9)
    assert drift["voltage_rmse_mV_after_10min"] < 9.0


def test_a_log_shorter_than_10min_has_no_after_10min_figure() -> None:
    short = _run(K=30, period=10.0, early_mv=5.0, late_mv=5.0, late_from_s=1e9)
    assert short["voltage_rmse_mV_after_10min"] is None
    table = mean_std([short, short])
    assert "voltage_rmse_mV_after_10min" not in table
    assert table["voltage_rmse_mV_last_5min"]["mean"] == pytest.approx(5.0, rel=1e-9)
