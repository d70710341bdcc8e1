import numpy as np
import pytest

from packtwin import quantities, schema
from packtwin.data import splits, store, windows
from packtwin.data.datamodule import TwinDataModule


@pytest.fixture(scope="module")
def ds(synthetic_store):
    return store.open_store(synthetic_store)


def test_select_by_ranges_lists_protocol_names_and_cells(ds):
    sel = splits.select(ds, {"ambient_temperature": {"min": 0, "max": 30},
                             "protocol": ["cccv"], "cells": [0, 2]})
    temps = ds["ambient_temperature"].values[sel.scenarios]
    protos = ds["protocol"].values[sel.scenarios]
    assert sel.scenarios.size > 0 and np.all((temps >= 0) & (temps <= 30))
    assert np.all(protos == schema.PROTOCOLS.index("cccv"))
    assert sel.cells.tolist() == [0, 2]
    assert len(sel) == sel.scenarios.size * 2 * ds.sizes[schema.SNAPSHOT]
    everything = splits.select(ds, None)
    assert everything.scenarios.size == ds.sizes[schema.SCENARIO]


@pytest.mark.parametrize("bad, match", [
    ({"temperature": 25}, "unknown keys"),
    ({"ambient_temperature": {"above": 3}}, "unknown range keys"),
    ({"ambient_temperature": {"min": 100}}, "selects no usable scenario"),
    ({"protocol": ["drive"]}, "unknown protocol"),
    ({"cells": [99]}, "out of range"),
])
def test_select_errors_are_clear(ds, bad, match):
    with pytest.raises(splits.SelectionError, match=match):
        splits.select(ds, bad)


def test_failed_scenarios_are_never_selected(ds):
    mem = ds.load().copy(deep=True)
    mem["status"].values[0] = schema.STATUS_FAILED
    mem["status"].values[1] = np.nan
    sel = splits.select(mem, {})
    assert 0 not in sel.scenarios and 1 not in sel.scenarios


def test_sequences_hold_measured_inputs_only_and_causal_charge(ds):
    sel = splits.select(ds, {"cells": [1], "scenario": [0]})
    seq = windows.load_sequences(ds, sel)
    n = len(sel)
    assert seq.features.shape == (n, ds.sizes[schema.TIME], len(quantities.FEATURES))
    assert set(quantities.FEATURES) & set(schema.HIDDEN) == set()
    i = quantities.feature_index("current")
    q = quantities.feature_index("charge_passed")
    # current[k] is the current of the step ending at sample k: charge passed up to k is exact
    dt = float(np.diff(ds[schema.TIME].values)[0])
    expected = np.cumsum(seq.features[0, 1:, i]) * dt  # [C]
    valid = seq.valid[0, 1:]
    np.testing.assert_allclose(seq.features[0, 1:, q][valid], expected[valid], rtol=1e-4)
    assert seq.features[0, 0, q] == 0
    v = seq.features[0, :, quantities.feature_index("voltage")]
    truth = ds["voltage"].isel(scenario=0, cell=1, snapshot=0).values
    np.testing.assert_allclose(v[seq.valid[0]], truth[seq.valid[0]], rtol=1e-6)
    assert np.all(v[~seq.valid[0]] == 0)
    assert seq.targets["c_s_n"].shape[2:] == (ds.sizes[schema.X_N], ds.sizes[schema.R_N])


def test_nan_inside_valid_samples_is_a_clear_error(ds):
    mem = ds.load().copy(deep=True)
    mem["current"].values[2, 1, 0, 3] = np.nan
    with pytest.raises(windows.DataError, match=r"'current'.*scenario 2, cell 1, snapshot 0, "
                                                r"time index 3"):
        windows.load_sequences(mem, splits.select(mem, {}))


def test_windows_cover_the_valid_part(ds):
    seq = windows.load_sequences(ds, splits.select(ds, {"scenario": [0], "cells": [0],
                                                        "snapshots": [0]}))
    full = windows.SequenceDataset(seq)
    win = windows.SequenceDataset(seq, window=16, stride=8)
    assert len(full) == 1 and full[0]["features"].shape[0] == ds.sizes[schema.TIME]
    assert len(win) > 1 and all(win[k]["features"].shape[0] == 16 for k in range(len(win)))


def test_datamodule_stats_from_training_split_only(synthetic_store):
    dm = TwinDataModule(str(synthetic_store), train={"ambient_temperature": {"max": 15}},
                        val={"ambient_temperature": {"min": 30}}, batch_size=2)
    dm.setup("fit")
    i = quantities.feature_index("ambient_temperature")
    # only the 10 degC scenario is in training: its ambient temperature is the mean, std floored
    assert dm.stats["features"]["mean"][i] == pytest.approx(283.15, abs=1e-3)
    assert dm.n_cells == 4 and dm.info["c_max_n"] > 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["features"].shape[0] <= 2 and "c_s_p" in batch
    assert set(dm.sequences) == {"train", "val"}


def test_datamodule_rejects_off_schema_and_missing_stores(tmp_path, synthetic_store):
    with pytest.raises(store.StoreError, match="does not exist"):
        TwinDataModule(str(tmp_path / "nope.zarr")).setup("fit")
    bad = store.open_store(synthetic_store).load()
    bad = bad.drop_vars("voltage")
    bad.attrs["schema_version"] = "0.1"
    path = tmp_path / "bad.zarr"
    bad.to_zarr(path, **store.ZARR_KW)
    with pytest.raises(schema.SchemaError, match="voltage"):
        TwinDataModule(str(path)).setup("fit")
