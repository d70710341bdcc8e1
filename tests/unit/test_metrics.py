"""Metrics on constructed cases with known answers (no store, no network)."""

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.eval import metrics

C_MAX_N, C_MAX_P = 30000.0, 50000.0
N_T, N_VALID = 6, 4  # the last two samples are padding


def make_truth(n_cells: int = 2) -> xr.Dataset:
    """1 scenario, n cells, 1 snapshot, 6 samples (4 valid), 2x3 particle grids."""
    rng = np.random.default_rng(0)
    shape4 = (1, n_cells, 1, N_T)
    valid = (np.arange(N_T) < N_VALID).astype("uint8")[None, None, :]
    pad4 = np.where(valid[:, None] > 0, 1.0, np.nan)  # broadcast over cell
    data = {
        "valid": ((schema.SCENARIO, schema.SNAPSHOT, schema.TIME), valid),
        "c_s_n": (schema.T4 + (schema.X_N, schema.R_N),
                  (10000 + 1000 * rng.random(shape4 + (2, 3))) * pad4[..., None, None]),
        "c_s_p": (schema.T4 + (schema.X_P, schema.R_P),
                  (20000 + 1000 * rng.random(shape4 + (2, 3))) * pad4[..., None, None]),
        "voltage": (schema.T4, (3.7 + 0.1 * rng.random(shape4)) * pad4),
        "sei_thickness_avg": (schema.T4, np.full(shape4, 7.0) * pad4),  # growth 2 nm over L_0 5
        "plating_margin": (schema.T4, (0.05 * rng.random(shape4) + 0.01) * pad4),
        "soc": (schema.T4, rng.random(shape4) * pad4),
        "param_neg_diffusivity": ((schema.CELL,), np.linspace(1e-14, 3e-14, n_cells)),
    }
    coords = {schema.SCENARIO: [0], schema.CELL: np.arange(n_cells), schema.SNAPSHOT: [0],
              schema.TIME: np.arange(N_T) * 10.0, schema.X_N: [0.0, 1.0], schema.X_P: [2.0, 3.0],
              schema.R_N: [0.0, 0.5, 1.0], schema.R_P: [0.0, 0.5, 1.0]}
    ds = xr.Dataset(data, coords=coords)
    ds["c_s_n"].attrs["c_max"] = C_MAX_N
    ds["c_s_p"].attrs["c_max"] = C_MAX_P
    return ds


def prediction(truth: xr.Dataset, **offsets) -> xr.Dataset:
    """Truth + offsets, with garbage in the padding (it must never count)."""
    names = ["c_s_n", "c_s_p", "voltage", "sei_thickness_avg", "plating_margin", "soc"]
    pred = truth[names + ["param_neg_diffusivity"]].copy(deep=True)
    for n in names:
        pred[n] = (pred[n] + offsets.get(n, 0.0)).fillna(1e9)
    pred.attrs["variant"] = "test"
    return pred


def test_perfect_estimate_scores_zero():
    truth = make_truth()
    m = metrics.compute_metrics(truth, prediction(truth))
    for name in ("c_s_n_rmse", "c_s_p_rmse", "c_s_n_surf_rmse", "c_s_p_surf_rmse_pct",
                 "voltage_rmse", "sei_mae", "sei_mae_pct", "plating_margin_mae", "soc_mae",
                 "param_neg_diffusivity_relerr"):
        assert float(m[f"pack_{name}"]) == 0.0, name
        np.testing.assert_array_equal(m[name].values, 0.0)


def test_constant_offset_gives_that_offset():
    truth = make_truth()
    pred = prediction(truth, c_s_n=120.0, c_s_p=-250.0, voltage=0.012, sei_thickness_avg=0.5,
                      plating_margin=-0.003, soc=0.02)
    m = metrics.compute_metrics(truth, pred)
    assert float(m["pack_c_s_n_rmse"]) == pytest.approx(120.0, rel=1e-9)
    assert float(m["pack_c_s_n_surf_rmse"]) == pytest.approx(120.0, rel=1e-9)
    assert float(m["pack_c_s_n_rmse_pct"]) == pytest.approx(100 * 120.0 / C_MAX_N, rel=1e-9)
    assert float(m["pack_c_s_p_rmse"]) == pytest.approx(250.0, rel=1e-9)
    assert float(m["pack_c_s_p_rmse_pct"]) == pytest.approx(100 * 250.0 / C_MAX_P, rel=1e-9)
    assert float(m["pack_voltage_rmse"]) == pytest.approx(12.0, rel=1e-6)  # mV
    assert float(m["pack_sei_mae"]) == pytest.approx(0.5, rel=1e-9)
    assert float(m["pack_sei_mae_pct"]) == pytest.approx(25.0, rel=1e-9)  # 0.5 of 2 nm growth
    assert float(m["pack_plating_margin_mae"]) == pytest.approx(3.0, rel=1e-6)  # mV
    assert float(m["pack_soc_mae"]) == pytest.approx(2.0, rel=1e-6)  # percentage points
    assert float(m["pack_n_samples"]) == 2 * N_VALID
    np.testing.assert_allclose(m["c_s_n_rmse"].values, 120.0, rtol=1e-9)
    assert m["pack_voltage_rmse"].attrs["units"] == "mV"
    assert m["c_s_n_rmse_pct"].attrs["units"] == "% of c_max"
    assert m.attrs["sei_label"] == "simulated-vs-simulated"


def test_padding_is_ignored():
    truth = make_truth()
    pred = prediction(truth, voltage=0.01)
    pred["voltage"][..., N_VALID:] = -123.0  # absurd values in the padding only
    truth2 = truth.copy(deep=True)
    truth2["voltage"][..., N_VALID:] = 55.0  # and a non-NaN truth there
    m = metrics.compute_metrics(truth2, pred)
    assert float(m["pack_voltage_rmse"]) == pytest.approx(10.0, rel=1e-6)


def test_pack_level_is_pooled_over_cells():
    truth = make_truth()
    pred = prediction(truth)
    off = xr.DataArray([30.0, 40.0], dims=schema.CELL, coords={schema.CELL: [0, 1]})
    pred["c_s_n"] = pred["c_s_n"] + off
    m = metrics.compute_metrics(truth, pred)
    np.testing.assert_allclose(m["c_s_n_rmse"].values, [30.0, 40.0], rtol=1e-9)
    assert float(m["pack_c_s_n_rmse"]) == pytest.approx(np.sqrt((30**2 + 40**2) / 2), rel=1e-9)


def test_plating_f1_on_hand_made_series():
    truth = make_truth(n_cells=1)
    pred = prediction(truth)
    #              t0     t1     t2     t3    | padding (events there must not count)
    t_margin = [-0.01, -0.02, -0.03, 0.04, -0.5, -0.5]
    p_margin = [-0.02, 0.01, 0.02, -0.01, -0.5, -0.5]
    truth["plating_margin"].values[0, 0, 0] = t_margin
    pred["plating_margin"].values[0, 0, 0] = p_margin
    m = metrics.compute_metrics(truth, pred, plating_threshold=0.0)
    # events in truth: t0, t1, t2; predicted: t0, t3 -> TP 1, FP 1, FN 2
    assert float(m["pack_plating_tp"]) == 1 and float(m["pack_plating_fp"]) == 1
    assert float(m["pack_plating_fn"]) == 2 and float(m["pack_plating_events"]) == 3
    assert float(m["pack_plating_precision"]) == pytest.approx(0.5)
    assert float(m["pack_plating_recall"]) == pytest.approx(1 / 3)
    assert float(m["pack_plating_f1"]) == pytest.approx(0.4)
    # a threshold moves the event definition: at +0.015 V truth t0-t2, pred t0, t1(0.01), t3
    m2 = metrics.compute_metrics(truth, pred, plating_threshold=0.015)
    assert float(m2["pack_plating_tp"]) == 2 and float(m2["pack_plating_fp"]) == 1


def test_no_events_gives_undefined_scores_not_perfect():
    truth = make_truth(n_cells=1)  # margins are all >= 0.01 V
    m = metrics.compute_metrics(truth, prediction(truth))
    assert float(m["pack_plating_events"]) == 0
    assert np.isnan(float(m["pack_plating_precision"])) and np.isnan(float(m["pack_plating_f1"]))


def test_parameter_relative_error():
    truth = make_truth()
    pred = prediction(truth)
    pred["param_neg_diffusivity"] = pred["param_neg_diffusivity"] * 1.1
    m = metrics.compute_metrics(truth, pred)
    np.testing.assert_allclose(m["param_neg_diffusivity_relerr"].values, 10.0, rtol=1e-9)
    assert float(m["pack_param_neg_diffusivity_relerr"]) == pytest.approx(10.0)


def test_subset_of_cells_is_aligned_by_label():
    truth = make_truth(n_cells=2)
    pred = prediction(truth, c_s_n=50.0).isel({schema.CELL: [1]})
    m = metrics.compute_metrics(truth, pred)
    assert m[schema.CELL].values.tolist() == [1]
    assert float(m["pack_c_s_n_rmse"]) == pytest.approx(50.0)


def test_nan_inside_valid_samples_is_an_error():
    truth = make_truth()
    pred = prediction(truth)
    pred["soc"].values[0, 0, 0, 1] = np.nan
    with pytest.raises(metrics.MetricsError, match="'soc'.*1 NaN"):
        metrics.compute_metrics(truth, pred)


def test_missing_c_max_and_mismatched_grid_are_errors():
    truth = make_truth()
    pred = prediction(truth)
    bad = truth.copy()
    bad["c_s_n"].attrs = {}
    with pytest.raises(metrics.MetricsError, match="c_s_n.*c_max"):
        metrics.compute_metrics(bad, pred)
    shifted = pred.assign_coords({schema.R_N: [0.0, 0.4, 1.0]})
    with pytest.raises(metrics.MetricsError, match="r_n"):
        metrics.compute_metrics(truth, shifted)
    foreign = pred.assign_coords({schema.CELL: [0, 7]})
    with pytest.raises(metrics.MetricsError, match=r"cell values \[7\]"):
        metrics.compute_metrics(truth, foreign)


def test_training_and_evaluation_share_one_masked_core(synthetic_store):
    """The sums a training batch pools (torch, [N, T, ...]) give the same metrics as the
    evaluation's per-cell sums over the same samples (xarray)."""
    import torch

    from packtwin import quantities
    from packtwin.data import splits, store, windows

    ds = store.open_store(synthetic_store).load()
    sel = splits.select(ds, {})
    truth = ds.isel(scenario=sel.scenarios)
    rng = np.random.default_rng(0)
    names = list(quantities.ESTIMATED)
    pred = truth[names].copy(deep=True)
    for name in names:
        scale = float(np.nanstd(truth[name].values)) * 0.1 + 1e-3
        pred[name] = pred[name] + rng.normal(0.0, scale, pred[name].shape)
    evaluated = metrics.compute_metrics(truth, pred, sei_initial_nm=5.0)

    stack = {n: torch.as_tensor(windows._stack(truth[n], splits.select(truth, {}))) for n in names}
    stack_p = {n: torch.as_tensor(windows._stack(pred[n], splits.select(truth, {}))) for n in names}
    stack["valid"] = torch.as_tensor(windows._broadcast(truth["valid"], splits.select(truth, {})))
    sums = metrics.error_sums(stack, stack_p, ops=metrics.TorchOps)
    c_max = {n: metrics.c_max_of(truth, n) for n in quantities.FIELD_TARGETS}
    _, pack = metrics.pooled({k: v.numpy() for k, v in sums.items()}, c_max, 5.0)
    for name in ("c_s_n_rmse_pct", "c_s_p_surf_rmse", "voltage_rmse", "sei_mae_pct",
                 "plating_margin_mae", "plating_f1", "soc_mae"):
        assert pack[name] == pytest.approx(float(evaluated[f"pack_{name}"]), rel=1e-9), name


def test_sum_keys_name_every_sum():
    truth = make_truth()
    sums = metrics.error_sums(metrics.align(truth, prediction(truth)), prediction(truth))
    assert set(sums) == set(metrics.sum_keys())
