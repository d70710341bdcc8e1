"""Plating over life on a real generated store (slow: PyBaMM): the per-cycle plating truth agrees
with PyBaMM's margin field at snapshot cycles, and ``python -m packtwin.eval.life --plating``
estimates and scores it from V/I/T (writing the estimates beside the others)."""

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.sim.config import Scenario
from packtwin.sim.generate import parse, run

pytestmark = pytest.mark.slow


def _config():
    """The tiny pack (1s2p, coarse mesh), 3 cycles with fields at every cycle and every cycle's
    V/I/T: a cold fast charge (0 C, 2C) and a warm slow one (25 C, C/2)."""
    cfg, _ = parse(["--preset", "tiny", "--solver.max_step_periods", "1"])
    return dataclasses.replace(cfg, n_cycles=3, snapshot_every=1, cycle_series=True,
                               scenarios=[Scenario(0.0, 2.0, 1.0, "cccv"),
                                          Scenario(25.0, 0.5, 1.0, "cccv")])


@pytest.fixture(scope="module")
def plating_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("plating") / "plating.zarr"
    assert run(_config(), path, workers=2, quiet=True)["ok"] == 2
    return path


def test_plating_truth_is_pybamms_margin_field_at_snapshots(plating_store):
    ds = xr.open_zarr(plating_store, consolidated=False).load()
    snaps = ds["snapshot_cycle"].values
    field = ds["plating_margin"].where(ds["valid"] == 1).min(schema.TIME)  # (scenario, cell, snap)
    summary = ds["plating_margin_min"].sel({schema.CYCLE: snaps}).values
    np.testing.assert_allclose(summary, field.values, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ds["plating_event"].values, ds["plating_margin_min"].values < 0)
    assert ds["plating_margin_min"].attrs["units"] == "V"
    assert ds["plating_event"].attrs["pybamm_name"] == schema.VARIABLES["plating_margin"].pybamm
    # the two conditions are on both sides of 0 V: the test has something to tell apart
    assert ds["plating_event"].values[0].all() and not ds["plating_event"].values[1].any()


def test_life_evaluation_scores_plating_per_cycle(plating_store, tmp_path):
    from packtwin.eval import life

    out, rep = tmp_path / "est.zarr", tmp_path / "life.json"
    assert life.main(["--store", str(plating_store), "--out", str(out), "--report", str(rep),
                      "--calib-cells", "0", "--calib-cycles", "3", "--plating", "nominal"]) == 0
    report = json.loads(rep.read_text())["plating"]
    pooled = report["pooled"]
    assert pooled["n"] == 12 and pooled["tp"] + pooled["fn"] == 6
    assert report["cost"]["cell_cycles"] == 12 and report["cost"]["seconds_per_cell_cycle"] > 0
    est = xr.open_zarr(out, consolidated=False)
    assert est["plating_event_est"].dims == schema.SUMMARY_DIMS
    assert np.isfinite(est["plated_lithium_end_est"].values).all()
    # on these two clearly separated conditions the estimate gets every cycle right
    assert pooled["f1"] == 1.0 and pooled["fp"] == 0


def test_life_evaluation_names_a_store_without_plating_truth(plating_store, tmp_path, capsys):
    from packtwin.eval import life

    old = tmp_path / "old.zarr"
    ds = xr.open_zarr(plating_store, consolidated=False).load()
    ds.drop_vars(list(schema.ADDED_SUMMARIES)).to_zarr(old, consolidated=False)
    assert life.main(["--store", str(old), "--calib-cells", "0", "--calib-cycles", "3",
                      "--plating", "nominal"]) == 2
    err = capsys.readouterr().err
    assert "plating_event" in err and "old.zarr" in err
    # without --plating the same store is evaluated as before
    assert life.main(["--store", str(old), "--calib-cells", "0", "--calib-cycles", "3"]) == 0


def test_a_store_written_before_the_plating_summaries_resumes(plating_store, tmp_path):
    """An older store (no plating summaries) with a scenario left to do is finished by this
    generator without them, the other scenario's values untouched."""
    old = tmp_path / "old.zarr"
    ds = xr.open_zarr(plating_store, consolidated=False).load()
    ds = ds.drop_vars(list(schema.ADDED_SUMMARIES))
    ds["status"].values[1] = np.nan
    ds["cycles_done"].values[1] = np.nan
    ds.to_zarr(old, consolidated=False)
    assert run(_config(), old, workers=1, quiet=True)["ok"] == 1
    after = xr.open_zarr(old, consolidated=False).load()
    assert not set(schema.ADDED_SUMMARIES) & set(after.variables)
    assert after["status"].values.tolist() == [schema.STATUS_OK] * 2
    np.testing.assert_array_equal(after["lli"].values[0], ds["lli"].values[0])
    np.testing.assert_allclose(after["lli"].values[1], ds["lli"].values[1], rtol=1e-5)
