"""Pack summary reductions (packtwin.app.summary) on tiny hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from packtwin.app import summary as sm


def test_robust_z_flags_the_odd_cell_a_mean_and_std_would_hide():
    # 8 cells, one at +20 %: with the mean/std of the cells the outlier inflates the std, and
    # no z of 8 values can pass sqrt(7) = 2.65 (below 3); the median/MAD score keeps it far out.
    cap = np.array([5.0, 5.01, 4.99, 5.02, 4.98, 5.0, 5.01, 6.0])
    plain = (cap - cap.mean()) / cap.std()
    assert abs(plain[-1]) < 3.0
    z = sm.robust_z(cap)
    # median 5.005, MAD 0.01: 0.6745 * 0.995 / 0.01
    assert z[-1] == pytest.approx(0.6745 * (6.0 - 5.005) / 0.01)
    np.testing.assert_array_equal(sm.outliers(cap), [False] * 7 + [True])


def test_robust_z_zero_mad_nan_and_constant():
    # More than half equal: MAD 0, the mean absolute deviation stands in.
    x = np.array([1.0, 1.0, 1.0, 4.0, np.nan])
    z = sm.robust_z(x)
    assert np.isnan(z[-1])
    assert z[3] == pytest.approx(0.7979 * 3.0 / 0.75)
    assert z[0] == 0.0
    np.testing.assert_array_equal(sm.robust_z(np.full(3, 2.0)), 0.0)
    assert np.isnan(sm.robust_z(np.full(2, np.nan))).all()


def test_pack_spread_over_time():
    soc = np.array([[1.0, 0.8, 0.5], [0.9, 0.8, 0.3], [np.nan, 0.7, 0.4]])
    b = sm.pack_spread(soc)
    np.testing.assert_allclose(b["spread"], [0.1, 0.1, 0.2])
    np.testing.assert_allclose(b["median"], [0.95, 0.8, 0.4])
    assert b["widest"] == 2


def test_plating_alarms_use_the_band():
    t = np.arange(4) * 60.0
    margin = np.array([[0.1, 0.05, -0.02, -0.01],   # goes below 0: alarm, 2 min below
                       [0.1, 0.03, 0.01, 0.05],     # band 0.02 reaches below 0: possible
                       [0.2, 0.2, 0.2, 0.2],        # safe
                       [np.nan] * 4])               # no estimate: ok, nothing known
    hw = np.full_like(margin, 0.02)
    df = sm.plating_alarms(margin, hw, t, cells=np.array([10, 11, 12, 13]))
    assert df.cell.tolist()[:2] == [10, 11]
    assert df.status.tolist()[:2] == [sm.ALARM, sm.POSSIBLE]
    first = df.iloc[0]
    assert first.min_margin == pytest.approx(-0.02) and first.t_min == 120.0
    assert first.minutes_below == pytest.approx(2.0) and first.band == pytest.approx(0.02)
    assert set(df.status.iloc[2:]) == {sm.OK}
    # Without a band the second cell is not flagged.
    no_band = sm.plating_alarms(margin, None, t, cells=np.array([10, 11, 12, 13]))
    assert no_band.set_index("cell").status[11] == sm.OK


def test_weakest_cells_by_each_criterion():
    cells = np.array([0, 1, 2, 3])
    soc = sm.Criterion("SOC", "1", higher_is_worse=False)
    res = sm.Criterion("Resistance", "Ohm", higher_is_worse=True)
    df = sm.weakest_cells(cells, {soc: (np.array([0.5, 0.4, np.nan, 0.6]), np.full(4, 0.01)),
                                  res: (np.array([1e-3, 3e-3, 2e-3, 1e-3]), None)}, n=2)
    by = {c: g for c, g in df.groupby("criterion")}
    assert by["SOC"].cell.tolist() == [1, 0] and by["SOC"]["rank"].tolist() == [1, 2]
    assert by["SOC"].band.tolist() == [0.01, 0.01]
    assert by["Resistance"].cell.tolist() == [1, 2] and by["Resistance"].band.isna().all()


def test_outlier_table_and_row_helpers():
    cells = np.arange(8)
    sei = np.array([10.0, 10.1, 9.9, 10.0, 10.05, 9.95, 10.0, 13.0])
    df = sm.outlier_table(cells, {"SEI": sei, "capacity": np.full(8, 5.0)})
    assert df.quantity.tolist() == ["SEI"] and df.cell.tolist() == [7] and df.robust_z[0] > 3.5
    assert sm.outlier_table(cells, {"capacity": np.full(8, 5.0)}).empty
    sig = np.array([[1.0, 2.0, np.nan], [np.nan, np.nan, np.nan], [3.0, 0.5, 4.0]])
    np.testing.assert_array_equal(sm.last_finite(sig), [2.0, np.nan, 4.0])
    np.testing.assert_array_equal(sm.nanmin_rows(sig), [1.0, np.nan, 0.5])


def test_growth_fastest_and_retention_over_cycles():
    cycles = np.array([1, 2, 3, 5])
    sei = np.array([[1.0, 2.0, 3.0, 5.0],        # 1 nm per cycle
                    [np.nan, 1.0, 4.0, 7.0],     # (7 - 1) / (5 - 2) = 2 nm per cycle
                    [1.0, np.nan, np.nan, np.nan]])
    rate = sm.growth_per_cycle(cycles, sei)
    np.testing.assert_allclose(rate, [1.0, 2.0, np.nan])
    assert sm.fastest(rate) == 1 and sm.fastest(rate, higher=False) == 0
    assert sm.fastest(np.full(2, np.nan)) == -1
    cap = np.array([[5.0, 4.5, np.nan], [np.nan, 4.0, 3.0]])
    np.testing.assert_allclose(sm.percent_of_first(cap), [[100, 90, np.nan], [np.nan, 100, 75]])
    np.testing.assert_array_equal(sm.first_finite(cap), [5.0, 4.0])
