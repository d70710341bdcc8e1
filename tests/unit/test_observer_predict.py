"""The EKF on the reduced core as a prediction dataset (oracle parameters), scored by the metrics
core; on the synthetic store (not a battery model: only the plumbing and contracts are tested,
the numbers mean nothing) with a coarse core to stay fast."""

import math
from dataclasses import replace

import numpy as np
import pytest

from packtwin import schema
from packtwin.data import store
from packtwin.eval import metrics, observer_predict

# Each test runs a filter over whole cycles (5-8 s each, 27 s for the module on the 2-core
# machine): in the slow set, which CI runs, to keep the default run near 5 minutes.
pytestmark = pytest.mark.slow
from packtwin.physics.core import CoreConfig

COARSE = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=4)
PULSE, CCCV = 2, 1  # synthetic scenarios: 25 C 2C pulse (22 valid samples), 25 C 1C (44)


@pytest.fixture(scope="module")
def truth(synthetic_store):
    return store.open_store(synthetic_store)


@pytest.fixture(scope="module")
def pred(truth, one_torch_thread):
    return observer_predict.ekf_oracle_dataset(truth, scenarios=[CCCV, PULSE], cells=[0, 1],
                                               snapshots=[0], core_config=COARSE)


def test_prediction_follows_the_schema_and_the_valid_mask(pred, truth):
    assert schema.validate(pred, kind="prediction") == []
    assert {"c_s_n", "c_s_p", "soc", "plating_margin", "voltage"} <= set(pred.data_vars)
    # the core estimates neither SEI growth nor (given, not identified) parameters
    assert "sei_thickness_avg" not in pred and not schema.param_keys_in(pred)
    assert pred.attrs["variant"] == "ekf" and pred.attrs["parameters"] == "oracle"
    assert pred["c_s_n"].attrs["c_max"] == truth["c_s_n"].attrs["c_max"]
    valid = truth["valid"].isel(scenario=[CCCV, PULSE], snapshot=[0]).values > 0
    for name in ("c_s_n", "voltage", "soc"):
        v = pred[name].transpose("scenario", "cell", "snapshot", "time", ...).values
        v = v.reshape(v.shape[:4] + (-1,))
        assert np.isfinite(v[np.broadcast_to(valid[:, None], v.shape[:4])]).all(), name
        assert np.isnan(v[np.broadcast_to(~valid[:, None], v.shape[:4])]).all(), name
    c = pred["c_s_n"].values
    c = c[np.isfinite(c)]
    assert (c > 0).all() and (c < truth["c_s_n"].attrs["c_max"]).all()


def test_filter_stays_near_the_measurement_without_restarts(pred, truth):
    """On the synthetic store's made-up voltages the filter used to run off (a -1.8 kV
    one-step-ahead voltage, then 2 restarts on a > 1 V innovation while that was the rule);
    with the bounded core it needs none: every model voltage stays within 1 V of the
    measurement and nothing is recorded."""
    import json

    meas = truth["voltage"].sel(scenario=pred["scenario"], cell=pred["cell"],
                                snapshot=pred["snapshot"])
    err = np.abs(pred["voltage"] - meas).values
    assert np.nanmax(err) < observer_predict.LARGE_INNOVATION_V
    assert pred.attrs["resets"] == 0 and json.loads(pred.attrs["reset_cycles"]) == []
    assert pred.attrs["large_innovations"] == 0
    assert json.loads(pred.attrs["large_innovation_cycles"]) == []


def test_metrics_core_scores_it_unchanged(pred, truth):
    m = metrics.compute_metrics(truth, pred)
    for name, units in (("c_s_n_rmse_pct", "% of c_max"), ("c_s_p_rmse_pct", "% of c_max"),
                        ("voltage_rmse", "mV"), ("soc_mae", "%"), ("plating_margin_mae", "mV")):
        assert np.isfinite(float(m[f"pack_{name}"])), name
        assert m[f"pack_{name}"].attrs["units"] == units
    assert "pack_sei_mae" not in m


def test_batched_cycles_equal_one_alone(pred, truth):
    """The 22-sample pulse cycle of cell 1 filtered in a batch (with a 44-sample cycle and
    another cell) gives the estimates it gets alone: each cycle gets its own cell's parameters,
    inputs and place in the output. Only the first samples are compared: on the synthetic
    store's made-up voltages the filter is ill-conditioned later (one sample's model voltage
    runs off), so the batched BLAS's rounding (1e-7) grows there (1e-5 by sample 5 from the OCV
    prior; from the default loaded prior, which starts the filter elsewhere, 3e-4 of c_s by
    sample 2). Samples 0-1 hold the prior, read from each cycle's own V, I, T and parameters."""
    alone = observer_predict.ekf_oracle_dataset(truth, scenarios=[PULSE], cells=[1],
                                                snapshots=[0], core_config=COARSE)
    lab = {"scenario": int(alone["scenario"].values[0]), "cell": 1}
    first = slice(0, 2)
    for name in ("c_s_n", "c_s_p", "voltage", "soc", "plating_margin"):
        a = alone[name].isel(scenario=0, cell=0, snapshot=0, time=first).values
        b = pred[name].sel(lab).isel(snapshot=0, time=first).values
        np.testing.assert_allclose(a, b, rtol=1e-4, err_msg=name)
    other = pred["voltage"].sel(scenario=lab["scenario"], cell=0).isel(snapshot=0, time=first)
    assert not np.allclose(other.values, alone["voltage"].values.ravel()[first], rtol=1e-5)


def test_store_without_parameter_table_is_refused_in_one_line(truth):
    bare = truth.drop_vars([v for v in truth.data_vars if str(v).startswith("param_")])
    with pytest.raises(observer_predict.ObserverError, match="oracle-parameter") as err:
        observer_predict.ekf_oracle_dataset(bare, scenarios=[PULSE], cells=[0], snapshots=[0],
                                            core_config=COARSE, source="bare.zarr")
    msg = str(err.value)
    assert "\n" not in msg and "bare.zarr" in msg and "param_" in msg


def test_nan_inside_valid_samples_is_named(truth):
    cur = truth["current"].load().copy(deep=True)  # dims (scenario, cell, snapshot, time)
    cur[PULSE, 0, 0, 5] = np.nan
    bad = truth.assign(current=cur)
    with pytest.raises(observer_predict.ObserverError, match="'current'.*time index 5"):
        observer_predict.ekf_oracle_dataset(bad, scenarios=[PULSE], cells=[0], snapshots=[0],
                                            core_config=COARSE)


def test_observers_core_plates_unless_told_not_to():
    assert observer_predict.core_config(None).plating
    assert observer_predict.core_config({"n_r": 6}).plating
    assert observer_predict.core_config({"n_r": 6}).n_r == 6
    assert not observer_predict.core_config({"plating": False}).plating
    # 12 particles per electrode (8 before stop 31) unless told otherwise
    assert (observer_predict.core_config(None).n_x_n, observer_predict.core_config(None).n_x_p) \
        == (12, 12)
    assert observer_predict.core_config({"n_x_n": 8}).n_x_n == 8


def test_evaluates_subspace_filter_searches_its_line_unless_told_not_to():
    assert observer_predict.subspace_config(None).line_search
    kept = observer_predict.subspace_config({"reprior_soc": 0.2})
    assert kept.line_search and kept.reprior_soc == 0.2
    assert not observer_predict.subspace_config({"line_search": False}).line_search


def test_unknown_observer_and_core_key_refused():
    with pytest.raises(observer_predict.ObserverError, match="unknown observers"):
        observer_predict.check_observers(["ukf"])
    with pytest.raises(observer_predict.ObserverError, match="n_shells"):
        observer_predict.core_config({"n_shells": 3})


# -- identified parameters (ekf_identified) ----------------------------------------------------
def test_identification_cycles_use_training_data_for_training_cells_only(truth):
    from packtwin.eval.observer_identify import identification_cycles

    cyc = identification_cycles(truth, cells=[0, 1, 2], train_scenarios=[CCCV],
                                train_cells=[0, 1], split_scenarios=[PULSE, CCCV], snapshot=0,
                                min_samples=20)
    # cells 0 and 1 were trained on: their training cycle; cell 2 is new: its first split cycle
    assert cyc == [(CCCV, 0, 0), (CCCV, 1, 0), (PULSE, 2, 0)]


def test_identified_params_need_no_parameter_table(truth):
    """The identification reads V/I/T alone (the store's param_* dropped) and records its data;
    iterations=0: the plumbing, cheap (the fit itself: tests/unit/test_physics_identify.py)."""
    from packtwin.eval.observer_identify import identified_params
    from packtwin.physics.identify import IdentifyConfig

    bare = truth.drop_vars([v for v in truth.data_vars if str(v).startswith("param_")])
    observer_predict.check_store(bare, "bare.zarr", names=["ekf_identified"])
    with pytest.raises(observer_predict.ObserverError, match="oracle-parameter"):
        observer_predict.check_store(bare, "bare.zarr", names=["ekf", "ekf_identified"])
    period = float(truth.attrs["period_s"])
    # one core step per (164 s) sample, 5 samples: the plumbing only
    params, info = identified_params(bare, [0, 1], [CCCV], [0], [PULSE], 0, period,
                                     window_s=5 * period,
                                     config=IdentifyConfig(iterations=0, min_samples=5),
                                     core_config=replace(COARSE, max_substep_s=1e3))
    assert info["cycles"] == [[int(truth["scenario"][CCCV]), 0, int(truth["snapshot"][0])],
                              [int(truth["scenario"][PULSE]), 1, int(truth["snapshot"][0])]]
    assert info["samples"] == 5 and len(info["fit_voltage_rmse_mV"]) == 2
    assert params.n_cells == 2


def test_ekf_identified_dataset_on_a_store_without_parameter_table(truth):
    """Plumbing on the synthetic store (its voltages are made up, so the identified values mean
    nothing here): the EKF runs with the identified parameters, records the identification,
    follows the schema, and differs from the oracle run."""
    import json

    bare = truth.drop_vars([v for v in truth.data_vars if str(v).startswith("param_")])
    pred_id = observer_predict.observer_dataset("ekf_identified", bare, scenarios=[PULSE],
                                                cells=[0, 1], snapshots=[0], source="bare.zarr",
                                                core={"n_x_n": 2, "n_x_s": 1, "n_x_p": 2,
                                                      "n_r": 4},
                                                train_scenarios=[CCCV], train_cells=[0],
                                                identify={"iterations": 2})
    assert pred_id.attrs["parameters"] == "identified"
    assert pred_id.attrs["variant"] == "ekf_identified"
    info = json.loads(pred_id.attrs["identification"])
    assert info["cycles"][0][0] == int(truth["scenario"][CCCV])  # cell 0: its training cycle
    assert info["cycles"][1][0] == int(truth["scenario"][PULSE])  # cell 1: new, the split's
    assert schema.validate(pred_id, kind="prediction") == []
    # the identified values are scored against the store's table
    m = metrics.compute_metrics(truth, pred_id)
    assert np.isfinite(float(m["pack_param_neg_diffusivity_relerr"]))
    assert np.isfinite(float(m["pack_param_neg_c_init_relerr"]))
    oracle = observer_predict.ekf_oracle_dataset(truth, scenarios=[PULSE], cells=[0, 1],
                                                 snapshots=[0], core_config=COARSE)
    assert not np.allclose(pred_id["voltage"].values, oracle["voltage"].values,
                           equal_nan=True)
    with pytest.raises(observer_predict.ObserverError, match="2 cells' parameters given for 1"):
        observer_predict.ekf_oracle_dataset(bare, scenarios=[PULSE], cells=[0], snapshots=[0],
                                            core_config=COARSE,
                                            params=observer_predict.oracle_params(truth, [0, 1]))


def test_observer_dataset_passes_the_identification_window(truth, monkeypatch):
    """evaluate's observer_identify_window_s reaches the fit: its samples follow the window,
    None is WINDOW_S (the fit itself is replaced: only what it is given is checked)."""
    from packtwin.eval import observer_identify

    seen = []

    def fake(*args, window_s, **kw):
        seen.append(window_s)
        raise observer_identify.IdentifyError("stop here")

    monkeypatch.setattr(observer_identify, "identified_params", fake)
    for window in (5 * 164.0, None):
        with pytest.raises(observer_predict.ObserverError, match="stop here"):
            observer_predict.observer_dataset("subspace_identified", truth, scenarios=[PULSE],
                                              cells=[0], snapshots=[0], train_scenarios=[CCCV],
                                              train_cells=[0], identify_window_s=window)
    assert seen == [5 * 164.0, observer_identify.WINDOW_S]


def test_identification_window_sets_the_samples(truth):
    from packtwin.eval.observer_identify import identified_params
    from packtwin.physics.identify import IdentifyConfig

    period = float(truth.attrs["period_s"])
    got = [identified_params(truth, [0], [CCCV], [0], [PULSE], 0, period, window_s=w * period,
                             config=IdentifyConfig(iterations=0, min_samples=5),
                             core_config=replace(COARSE, max_substep_s=1e3))[1]["samples"]
           for w in (6, 9, math.inf)]
    # inf: the whole cycle (the CCCV cycle's valid samples after its rested sample 0)
    whole = int((truth["valid"].isel(scenario=CCCV, snapshot=0).values > 0).sum()) - 1
    assert got == [6, 9, whole] and whole > 9


def test_identification_window_ends_at_a_gap(truth):
    """A NaN inside the identification cycle ends the fit's window there (recorded); a gap
    that leaves too few samples is refused, naming the variable and the sample."""
    from packtwin.eval.observer_identify import identified_params
    from packtwin.physics.identify import IdentifyConfig, IdentifyError

    period = float(truth.attrs["period_s"])
    gapped = truth.copy(deep=True)
    v = gapped["voltage"].transpose("scenario", "cell", "snapshot", "time")
    arr = v.values.copy()
    arr[CCCV, 0, 0, 12] = np.nan  # sample 12 of cell 0's identification cycle
    gapped["voltage"] = (v.dims, arr, v.attrs)
    core = replace(COARSE, max_substep_s=1e3)
    _, info = identified_params(gapped, [0], [CCCV], [0], [PULSE], 0, period,
                                config=IdentifyConfig(iterations=0, min_samples=5),
                                core_config=core)
    assert info["samples"] == 11 and info["cut_at_gap"] == {"sample": 12,
                                                             "variables": ["voltage"]}
    _, whole = identified_params(truth, [0], [CCCV], [0], [PULSE], 0, period,
                                 config=IdentifyConfig(iterations=0, min_samples=5),
                                 core_config=core)
    assert whole["cut_at_gap"] is None and whole["samples"] > 11
    with pytest.raises(IdentifyError, match=r"NaN/inf \['voltage'\] at sample 12, leaving 11 "
                                            r"gap-free samples after the start, at least 15"):
        identified_params(gapped, [0], [CCCV], [0], [PULSE], 0, period,
                          config=IdentifyConfig(iterations=0, min_samples=15), core_config=core)


def test_identification_window_too_short_is_named(truth):
    from packtwin.eval.observer_identify import identified_params
    from packtwin.physics.identify import IdentifyConfig, IdentifyError

    period = float(truth.attrs["period_s"])
    # cell 1 is unseen: its first split cycle (the 22-sample pulse) is all it has
    with pytest.raises(IdentifyError, match=r"bare.zarr: identification cycles \[\[.*give 21 "
                                            r"samples after the start, at least 25"):
        identified_params(truth, [1], [CCCV], [0], [PULSE], 0, period,
                          config=IdentifyConfig(min_samples=25), core_config=COARSE,
                          source="bare.zarr")


def test_subspace_observer_dataset_follows_the_schema_and_the_valid_mask(truth,
                                                                        one_torch_thread):
    """The subspace Kalman filter as an ``observers`` row: the same dataset contract as the
    EKF's (plumbing only: the synthetic store is not a battery model)."""
    sub = observer_predict.observer_dataset("subspace", truth, scenarios=[PULSE],
                                            cells=[0, 1], snapshots=[0],
                                            core={"n_x_n": 2, "n_x_s": 1, "n_x_p": 2, "n_r": 4})
    assert schema.validate(sub, kind="prediction") == []
    assert sub.attrs["variant"] == "subspace" and sub.attrs["parameters"] == "oracle"
    assert "Kalman" in sub.attrs["description"]
    valid = truth["valid"].isel(scenario=[PULSE], snapshot=[0]).values > 0
    for name in ("c_s_n", "c_s_p", "voltage", "soc"):
        v = sub[name].transpose("scenario", "cell", "snapshot", "time", ...).values
        v = v.reshape(v.shape[:4] + (-1,))
        assert np.isfinite(v[np.broadcast_to(valid[:, None], v.shape[:4])]).all(), name
        assert np.isnan(v[np.broadcast_to(~valid[:, None], v.shape[:4])]).all(), name
    m = metrics.compute_metrics(truth, sub)
    assert np.isfinite(float(m["pack_c_s_n_rmse_pct"]))


def test_ekf_overrides_reach_the_filter_and_are_recorded(truth, pred, one_torch_thread):
    """evaluate's observer_ekf: the EKFConfig overrides make the row (the stop 26 filter gives
    other numbers than the default) and the prediction records the filter's settings."""
    import dataclasses
    import json

    from packtwin.physics.ekf import EKFConfig

    old = {"salt_neutral": False, "ce_guard": 0.0, "gate_sigma": float("inf"),
           "bounded_step": False}
    other = observer_predict.observer_dataset("ekf", truth, scenarios=[CCCV, PULSE],
                                              cells=[0, 1], snapshots=[0],
                                              core=dataclasses.asdict(COARSE),
                                              ekf=old)
    recorded = json.loads(other.attrs["filter_config"])
    assert {k: recorded[k] for k in old} == old
    assert json.loads(pred.attrs["filter_config"])["gate_sigma"] == EKFConfig().gate_sigma
    assert not np.allclose(other["c_s_n"].values, pred["c_s_n"].values, equal_nan=True)
    with pytest.raises(observer_predict.ObserverError, match="unknown EKFConfig"):
        observer_predict.ekf_config({"gate": 4.0})
