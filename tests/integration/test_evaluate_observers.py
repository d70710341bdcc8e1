"""`packtwin evaluate` with `observers: [ekf]`: the EKF row next to the baseline, and a store
the oracle-parameter setting cannot use refused before anything is computed."""

import json

import numpy as np
import pytest
import xarray as xr

from packtwin.data import store
from packtwin.eval import evaluate, observer_predict

pytestmark = [pytest.mark.slow, pytest.mark.integration]

COARSE = {"n_x_n": 2, "n_x_s": 1, "n_x_p": 2, "n_r": 4}


def _argv(store_path, out, **extra):
    args = {"store": str(store_path), "output": str(out),
            "train": json.dumps({"ambient_temperature": {"max": 25}, "protocol": ["cccv"],
                                 "cells": [0, 1, 2]}),
            "splits": json.dumps({"pulse": {"protocol": ["pulse"], "cells": [0, 1],
                                            "snapshots": [0]}}),
            "variants": "{}", "seeds": "[0]", "observers": '["ekf"]',
            "observer_core": json.dumps(COARSE), "plots": "false", "progress": "false"}
    args.update(extra)
    return [a for k, v in args.items() for a in (f"--{k}", v)]


def test_ekf_row_in_metrics_and_report(synthetic_store, tmp_path, one_torch_thread):
    out = tmp_path / "eval"
    assert evaluate.main(_argv(synthetic_store, out)) == 0
    ds = xr.open_zarr(out / "metrics.zarr", consolidated=False).load()
    assert list(ds["variant"].values) == ["baseline", "ekf", "pybamm"]
    ekf = ds.sel(split="pulse", variant="ekf", seed=0)
    for name in ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse", "soc_mae"):
        assert np.isfinite(float(ekf[f"pack_{name}"])), name
    assert ds["pack_c_s_n_rmse_pct"].attrs["units"] == "% of c_max"
    assert ds["pack_voltage_rmse"].attrs["units"] == "mV"
    assert not np.isfinite(float(ekf["pack_sei_mae"]))  # no SEI estimate: no score
    assert "ekf" in json.loads(ds.attrs["observers"])
    assert set(json.loads(ds.attrs["observer_restarts"])["ekf"]) == {"pulse"}
    text = (out / "report.md").read_text()
    assert "| pulse | ekf |" in text and "oracle parameters" in text
    assert "restarts per split: {\"pulse\": " in text
    assert "start prior (`observer_prior: loaded_window`)" in text  # the default, named


def test_ekf_identified_row_scores_parameters_without_the_table(synthetic_store, tmp_path,
                                                                one_torch_thread):
    """The identified-parameter EKF runs on a store whose parameter table is dropped (a real
    pack's) and gets its identified values scored when the table is there."""
    out = tmp_path / "eval"
    argv = _argv(synthetic_store, out,
                 observers='["ekf", "ekf_identified", "subspace_identified"]',
                 observer_identify=json.dumps({"iterations": 2}),
                 observer_identify_window_s="1e5")
    assert evaluate.main(argv) == 0
    ds = xr.open_zarr(out / "metrics.zarr", consolidated=False).load()
    assert list(ds["variant"].values) == ["baseline", "ekf", "ekf_identified",
                                          "subspace_identified", "pybamm"]
    row = ds.sel(split="pulse", variant="ekf_identified", seed=0)
    assert np.isfinite(float(row["pack_c_s_n_rmse_pct"]))
    assert np.isfinite(float(row["pack_param_neg_diffusivity_relerr"]))
    # the subspace filter gets the same identified cells (one fit, kept), with its own states
    sub = ds.sel(split="pulse", variant="subspace_identified", seed=0)
    for name in ("param_neg_diffusivity_relerr", "param_neg_c_init_relerr"):
        assert float(sub[f"pack_{name}"]) == float(row[f"pack_{name}"]), name
    assert np.isfinite(float(sub["pack_c_s_n_rmse_pct"]))
    assert float(sub["pack_c_s_n_rmse_pct"]) != float(row["pack_c_s_n_rmse_pct"])
    # re-priors are counted for the subspace filter only (the EKF has none), and reported
    repriors = json.loads(ds.attrs["observer_repriors"])
    assert set(repriors) == {"subspace_identified"} and set(repriors["subspace_identified"]) \
        == {"pulse"}
    assert "re-priors per split (SubspaceConfig.reprior_soc): {\"pulse\": " in \
        (out / "report.md").read_text()
    # the oracle row has no parameter errors (its parameters are the table's)
    assert not np.isfinite(float(ds.sel(split="pulse", variant="ekf",
                                        seed=0)["pack_param_neg_diffusivity_relerr"]))
    text = (out / "report.md").read_text()
    assert "IDENTIFIED parameters" in text
    assert "fitted on the first 100000 s of each cell's identification cycle" in text
    bare = tmp_path / "bare.zarr"
    st = store.open_store(synthetic_store)
    st.drop_vars([v for v in st.data_vars if str(v).startswith("param_")]).to_zarr(
        bare, **store.ZARR_KW)
    assert evaluate.main(_argv(bare, tmp_path / "eval_bare", observers='["ekf_identified"]',
                               observer_identify=json.dumps({"iterations": 0}))) == 0


def test_store_without_parameter_table_refused_before_work(synthetic_store, tmp_path):
    bare = tmp_path / "bare.zarr"
    ds = store.open_store(synthetic_store)
    ds.drop_vars([v for v in ds.data_vars if str(v).startswith("param_")]).to_zarr(
        bare, **store.ZARR_KW)
    out = tmp_path / "eval"
    with pytest.raises(observer_predict.ObserverError, match="oracle-parameter"):
        evaluate.run(evaluate.parse(_argv(bare, out))[0], progress=False)
    assert not (out / "metrics.zarr").exists()


def test_loaded_start_scores_every_row_from_that_time(synthetic_store, tmp_path,
                                                      one_torch_thread):
    """``observer_start_s``: the EKF and the subspace filter start 5 samples into every cycle
    (under load on this store), and every row is scored on the same samples from there on."""
    period = float(store.open_store(synthetic_store).attrs["period_s"])
    rested, loaded = tmp_path / "rested", tmp_path / "loaded"
    common = {"observers": '["ekf", "subspace"]', "save_predictions": "true"}
    assert evaluate.main(_argv(synthetic_store, rested, **common)) == 0
    assert evaluate.main(_argv(synthetic_store, loaded, observer_start_s=str(5 * period),
                               **common)) == 0
    r = xr.open_zarr(rested / "metrics.zarr", consolidated=False).load()
    m = xr.open_zarr(loaded / "metrics.zarr", consolidated=False).load()
    assert list(m["variant"].values) == ["baseline", "ekf", "subspace", "pybamm"]
    n_rested = r.sel(split="pulse", seed=0)["pack_n_samples"]
    n_loaded = m.sel(split="pulse", seed=0)["pack_n_samples"]
    # 2 cells x 1 cycle lose their first 5 samples, for every scored row alike
    for v in ("baseline", "ekf", "subspace"):
        assert int(n_rested.sel(variant=v)) - int(n_loaded.sel(variant=v)) == 2 * 5, v
        for name in ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse"):
            assert np.isfinite(float(m.sel(split="pulse", variant=v, seed=0)[f"pack_{name}"]))
    for obs in ("ekf", "subspace"):
        pred = xr.open_zarr(loaded / "predictions" / f"{obs}_pulse.zarr", consolidated=False)
        assert float(pred.attrs["start_s"]) == 5 * period
        assert pred.attrs["prior"] == "loaded_window"
        v = pred["voltage"].values
        assert np.isnan(v[..., :5]).all() and np.isfinite(v[..., 5:22]).all()
        # a different start: different estimates, not the rested run rescored
        assert float(m.sel(split="pulse", variant=obs, seed=0)["pack_c_s_n_rmse_pct"]) != \
            float(r.sel(split="pulse", variant=obs, seed=0)["pack_c_s_n_rmse_pct"])
    text = (loaded / "report.md").read_text()
    assert "**loaded start**: the observers start 825 s" in text
    assert "inverted through the reduced core carrying the measured current" in text
