"""evaluate's ``observer_start_s``: the observers start mid-log (a BMS stream that begins
mid-drive), and a start the store cannot give is refused naming the key, before any work. On the
synthetic store (not a battery model: the contracts only) with a coarse core to stay fast."""

import json

import numpy as np
import pytest

from packtwin.data import store
from packtwin.eval import evaluate, observer_predict
from packtwin.physics.core import CoreConfig

COARSE = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=4)
PULSE, CCCV = 2, 1  # synthetic scenarios: 25 C 2C pulse (22 valid samples), 25 C 1C (44)
PERIOD = 165.0  # the synthetic store's sample period [s]


@pytest.fixture(scope="module")
def truth(synthetic_store):
    return store.open_store(synthetic_store)


@pytest.mark.parametrize("start_s, message", [
    (-165.0, r"observer_start_s must be a time >= 0 s.*found -165"),
    (float("nan"), r"observer_start_s must be a time >= 0 s.*found nan"),
    (100.0, r"observer_start_s must be a multiple of the store's sample period 165 s.*"
            r"found 100 s"),
    (22 * PERIOD, r"observer_start_s = 3630 s is outside the log: it must be below 3630 s, the "
                  r"shortest selected cycle \(22 samples of 165 s\)"),
])
def test_start_sample_refusals_name_the_key_expected_and_found(start_s, message):
    with pytest.raises(observer_predict.ObserverError, match=message) as err:
        observer_predict.start_sample(PERIOD, start_s, np.array([44, 22]), source="x.zarr")
    assert "x.zarr" in str(err.value) and "\n" not in str(err.value)


def test_start_sample_on_the_grid():
    assert observer_predict.start_sample(PERIOD, 0.0, np.array([44, 22])) == 0
    assert observer_predict.start_sample(PERIOD, 21 * PERIOD, np.array([44, 22])) == 21


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_a_late_start_equals_the_log_cut_there(truth, one_torch_thread):
    """Started 5 samples in, the filter gives exactly what it gives on a store whose cycles
    begin there (the prior of an unknown start read at that sample), and nothing before it."""
    k = 5
    late = observer_predict.ekf_oracle_dataset(truth, scenarios=[CCCV, PULSE], cells=[0],
                                               snapshots=[0], core_config=COARSE,
                                               start_s=k * PERIOD)
    cut = truth.isel(time=slice(k, None))
    alone = observer_predict.ekf_oracle_dataset(cut, scenarios=[CCCV, PULSE], cells=[0],
                                                snapshots=[0], core_config=COARSE)
    for name in ("c_s_n", "c_s_p", "voltage", "soc", "plating_margin"):
        a = late[name].isel(time=slice(k, None)).values
        np.testing.assert_allclose(a, alone[name].values, rtol=1e-12, equal_nan=True,
                                   err_msg=name)
        assert np.isnan(late[name].isel(time=slice(0, k)).values).all(), name
    assert late.attrs["start_s"] == k * PERIOD
    assert late.attrs["started_under_load"] == 2  # both cycles draw current at sample 5


def _argv(store_path, out, **extra):
    args = {"store": str(store_path), "output": str(out),
            "train": json.dumps({"ambient_temperature": {"max": 25}, "protocol": ["cccv"],
                                 "cells": [0, 1]}),
            "splits": json.dumps({"pulse": {"protocol": ["pulse"], "cells": [0, 1]},
                                  "cccv": {"scenario": [CCCV], "cells": [0]}}),
            "variants": "{}", "seeds": "[0]", "observers": '["ekf"]', "plots": "false",
            "progress": "false"}
    args.update(extra)
    return [a for k, v in args.items() for a in (f"--{k}", v)]


@pytest.mark.parametrize("extra, error, message", [
    ({"observer_start_s": str(22 * PERIOD)}, observer_predict.ObserverError,
     r"observer_start_s = 3630 s is outside the log.*22 samples"),
    ({"observer_start_s": "200"}, observer_predict.ObserverError,
     r"observer_start_s must be a multiple of the store's sample period 165 s"),
    ({"observer_start_s": "165", "observers": "[]",
      "variants": json.dumps({"physics": ["configs/model/physics.yaml"]})}, ValueError,
     r"observer_start_s = 165.0 needs 'observers'"),
    ({"observers": "[]"}, ValueError, r"'variants' is empty and no 'observers'"),
    ({"observer_prior": "rest"}, observer_predict.ObserverError,
     r"observer_prior must be one of \['loaded_window', 'loaded', 'ocv'\] .*found 'rest'"),
])
def test_evaluate_refuses_before_any_work(synthetic_store, tmp_path, extra, error, message):
    out = tmp_path / "eval"
    cfg, _ = evaluate.parse(_argv(synthetic_store, out, **extra))
    with pytest.raises(error, match=message):
        evaluate.run(cfg, progress=False)
    assert not (out / "metrics.zarr").exists()


def test_from_sample_masks_only_the_samples_before_the_start(truth):
    cut = evaluate.from_sample(truth, 3)
    before, after = truth["valid"].values, cut["valid"].values
    assert (after[..., :3] == 0).all()
    np.testing.assert_array_equal(after[..., 3:], before[..., 3:])
    assert cut["valid"].dtype == truth["valid"].dtype
    assert evaluate.from_sample(truth, 0) is truth
