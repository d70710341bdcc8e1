"""End to end: `packtwin evaluate` with the tiny experiment on the synthetic store, then export."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.data import splits, store
from packtwin.eval import baselines, evaluate, export, metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "experiments" / "tiny.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def evaluated(synthetic_store, tmp_path_factory):
    import sys

    argv = sys.argv
    sys.argv = ["packtwin"]  # Lightning warns about pytest's own arguments
    try:
        out = tmp_path_factory.mktemp("eval") / "tiny"
        rc = evaluate.main(["--config", str(TINY), "--store", str(synthetic_store),
                            "--output", str(out), "--progress", "false"])
    finally:
        sys.argv = argv
    assert rc == 0
    return out


def test_outputs_and_structure(evaluated):
    ds = xr.open_zarr(evaluated / "metrics.zarr", consolidated=False).load()
    cfg, _ = evaluate.parse(["--config", str(TINY)])
    assert list(ds["split"].values) == list(cfg.splits)
    assert set(ds["variant"].values) == {"physics", "data_only", "baseline", "pybamm"}
    assert list(ds["seed"].values) == cfg.seeds
    for v in ("physics", "data_only"):
        vals = ds["pack_c_s_n_rmse_pct"].sel(variant=v).values
        assert np.isfinite(vals).all(), v  # every split x seed scored
    assert ds["pack_c_s_n_rmse_pct"].attrs["units"] == "% of c_max"
    assert np.isfinite(ds["pack_audit_fick_n_rel"].sel(variant="pybamm").isel(seed=0)).all()
    text = (evaluated / "report.md").read_text()
    for name in cfg.splits:
        assert f"| {name} |" in text
    assert "physics / data-only" in text
    assert len(list((evaluated / "plots").glob("*.png"))) >= 5
    for v in ("physics", "data_only"):
        for s in cfg.seeds:
            assert (evaluated / "runs" / v / f"seed{s}" / "model.ckpt").exists()
    # the variants differ only by their own arguments
    # (each run writes under its own folder runs/<variant>/seed<k>)
    cfgs = {v: json.loads((evaluated / "runs" / v / "seed0" / "fit_config.json").read_text()
                          .replace(str(evaluated / "runs" / v), "RUN"))
            for v in ("physics", "data_only")}
    diff = {k for k in cfgs["physics"].keys() | cfgs["data_only"].keys()
            if cfgs["physics"].get(k) != cfgs["data_only"].get(k)}
    assert diff == {"model"}, diff


def test_baseline_row_is_reproducible(evaluated, synthetic_store):
    """The stored baseline metrics equal an independent recomputation."""
    ds = xr.open_zarr(evaluated / "metrics.zarr", consolidated=False).load()
    truth = store.open_store(synthetic_store)
    cfg, _ = evaluate.parse(["--config", str(TINY)])
    tr = splits.select(truth, cfg.train)
    sel = splits.select(truth, cfg.splits["hotter"])
    b = baselines.baseline_dataset(truth, tr.scenarios, tr.cells, sel.scenarios, sel.cells)
    m = metrics.compute_metrics(truth, b)
    stored = ds.sel(split="hotter", variant="baseline").isel(seed=0)
    for name in ("c_s_n_rmse_pct", "voltage_rmse", "sei_mae", "soc_mae"):
        assert float(stored[f"pack_{name}"]) == pytest.approx(float(m[f"pack_{name}"]), rel=1e-9)


def test_given_checkpoints_and_export(evaluated, synthetic_store, tmp_path, cli_argv):
    ckpts = {v: [str(evaluated / "runs" / v / "seed0" / "model.ckpt")]
             for v in ("physics", "data_only")}
    out = tmp_path / "again"
    rc = evaluate.main(["--config", str(TINY), "--store", str(synthetic_store), "--output",
                        str(out), "--seeds", "[0]", "--checkpoints", json.dumps(ckpts),
                        "--splits", json.dumps({"hotter": {"ambient_temperature": {"min": 40},
                                                           "cells": [0, 1, 2]}}),
                        "--plots", "false", "--progress", "false"])
    assert rc == 0
    assert not (out / "runs").exists()  # nothing was trained
    first = xr.open_zarr(evaluated / "metrics.zarr", consolidated=False).load()
    again = xr.open_zarr(out / "metrics.zarr", consolidated=False).load()
    a = again["pack_c_s_n_rmse_pct"].sel(variant="physics", seed=0, split="hotter")
    b = first["pack_c_s_n_rmse_pct"].sel(variant="physics", seed=0, split="hotter")
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6)  # same model, same numbers
    pt = tmp_path / "twin.pt"
    assert export.main(["--ckpt", ckpts["physics"][0], "--out", str(pt), "--batch", "2",
                        "--time", "16"]) == 0
    meta = json.loads((tmp_path / "twin.pt.json").read_text())
    assert max(meta["max_rel_error"].values()) <= 1e-4 and meta["physics"] is True


def test_residual_audit_on_pybamm_output(tmp_path, cli_argv):
    """PyBaMM's own DFN output passes the audit's physics: the positive electrode's lithium follows
    the measured charge exactly, the SEI law holds, Fick's residual is small on the stored grid."""
    from packtwin import cli
    from packtwin.eval import audit

    path = tmp_path / "tiny.zarr"
    assert cli.main(["generate", "--preset", "tiny", "--store", str(path), "--workers", "1",
                     "--quiet"]) == 0
    ds = store.open_store(path)
    ok = [int(s) for s in np.flatnonzero(ds["status"].values == 1.0)]
    assert ok, "the tiny preset solved no scenario"
    a = audit.residual_audit(ds, ds.isel(scenario=ok))
    assert float(a["pack_audit_li_balance_p_pct"]) < 1e-3  # % of c_max
    assert float(a["pack_audit_li_balance_n_pct"]) < 2.0  # side reactions take some lithium
    assert float(a["pack_audit_sei_rel"]) < 0.02
    assert float(a["pack_audit_fick_n_rel"]) < 0.25 and float(a["pack_audit_fick_p_rel"]) < 0.25
    # a uniform coulomb-counted profile violates Fick: its Laplacian is 0 while c changes
    tr = splits.select(ds, {"scenario": ok})
    b = baselines.baseline_dataset(ds, tr.scenarios, tr.cells, scenarios=ok)
    ab = audit.residual_audit(ds, b)
    assert float(ab["pack_audit_fick_n_rel"]) > 0.9
