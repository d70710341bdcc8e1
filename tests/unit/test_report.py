"""The report from a constructed metrics dataset, and every committed experiment config."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.data import splits
from packtwin.eval import evaluate, report

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "configs" / "experiments").glob("*.yaml"))


def metrics_dataset() -> xr.Dataset:
    """Two splits, physics/data_only with 3 seeds, a baseline with one: known means and spreads."""
    split, variant, seed = ["hot", "cold"], ["physics", "data_only", "baseline", "pybamm"], [0, 1, 2]
    v = np.full((2, 4, 3), np.nan)
    v[:, 0] = [[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]]  # physics: mean 2 (std 1), mean 2 (std 0)
    v[:, 1] = [[4.0, 4.0, 4.0], [1.0, 1.0, 1.0]]  # data_only: mean 4, mean 1
    v[:, 2, 0] = [8.0, 9.0]  # baseline: one run
    cells = np.arange(2)
    per_cell = np.broadcast_to(v[..., None], v.shape + (2,)).copy()
    per_cell[..., 1] *= 2  # cell 1 is the worst
    audit = np.full((2, 4, 3), np.nan)
    audit[:, 3, 0] = 0.01  # PyBaMM's floor
    audit[:, 0] = 0.02
    ds = xr.Dataset(
        {"pack_c_s_n_rmse_pct": (("split", "variant", "seed"), v, {"units": "% of c_max"}),
         "c_s_n_rmse_pct": (("split", "variant", "seed", "cell"), per_cell),
         "pack_audit_fick_n_rel": (("split", "variant", "seed"), audit, {"units": "1"})},
        coords={"split": split, "variant": variant, "seed": seed, "cell": cells})
    ds.attrs.update({"store": "x.zarr", "train_cells": "[0, 1]", "new_cells": "[]",
                     "splits_resolved": json.dumps({"hot": {"scenarios": [0], "cells": [0, 1],
                                                            "snapshots": [0]},
                                                    "cold": {"scenarios": [1], "cells": [0, 1],
                                                             "snapshots": [0]}}),
                     "config": json.dumps({"splits": {"hot": {"ambient_temperature": [45]}},
                                           "variants": {"physics": [], "data_only": []}}),
                     "skipped_splits": json.dumps({"colder": "selects no usable scenario"})})
    return ds


def test_metric_table_mean_spread_and_ratio():
    table = report.metric_table(metrics_dataset(), "c_s_n_rmse_pct")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table.splitlines()[2:]}
    assert rows["hot"] == ["2 ± 1 (n=3)", "4 ± 0 (n=3)", "8 (n=1)", "0.5"]
    assert rows["cold"] == ["2 ± 0 (n=3)", "1 ± 0 (n=3)", "9 (n=1)", "2"]
    assert "pybamm" not in table.splitlines()[0]


def test_write_report_and_plots(tmp_path):
    path = report.write_report(metrics_dataset(), tmp_path, plots=True, note="a note")
    text = path.read_text()
    assert "> a note" in text
    assert "physics / data-only" in text and "## Residual audit" in text
    assert "| hot | Fick residual, negative" in text
    assert "colder: selects no usable scenario" in text
    assert "(cell 1)" in text  # worst cell
    png = tmp_path / "plots" / "c_s_n_rmse_pct.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![c_s_n_rmse_pct](plots/c_s_n_rmse_pct.png)" in text


def test_observers_only_report_has_no_ratio_and_no_variants(tmp_path):
    """An evaluation without twins (``variants: {}``): baseline and observer rows only."""
    ds = metrics_dataset().sel(variant=["baseline", "pybamm"])
    ds = ds.assign_coords(variant=["baseline", "pybamm"])
    ds.attrs["config"] = json.dumps({"variants": {}, "observer_start_s": 600.0})
    ds.attrs["observers"] = json.dumps({"ekf": "the EKF"})
    text = report.write_report(ds, tmp_path, plots=False).read_text()
    assert "physics / data-only" not in text and "## Variants" not in text
    assert "| hot | 8 (n=1) |" in text
    assert "**loaded start**: the observers start 600 s into every cycle" in text


def test_report_regenerates_from_metrics_zarr(tmp_path):
    ds = metrics_dataset()
    evaluate.write_metrics(ds, tmp_path / "metrics.zarr")
    assert report.main([str(tmp_path)]) == 0
    assert "physics / data-only" in (tmp_path / "report.md").read_text()
    assert report.main([str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_configs_parse_and_select(path):
    """Every committed experiment parses, and each split selects data of its store's scenarios."""
    cfg, _ = evaluate.parse(["--config", str(path)])
    if cfg.variants or not cfg.observers:  # else an observers-only evaluation
        assert set(cfg.variants) >= {"physics", "data_only"}
    if path.stem == "reference":
        assert len(cfg.seeds) >= 3
    if cfg.generate is None:
        return  # e.g. tiny: a synthetic store made by the tests
    from packtwin.sim import config as gen_config
    from packtwin.sim import generate

    gen, run = generate.parse(["--config", str(ROOT / cfg.generate)])
    assert run["store"] == cfg.store, "the generate config must write the experiment's store"
    scen = gen.scenarios
    fake = xr.Dataset(coords={
        schema.SCENARIO: np.arange(len(scen)),
        "ambient_temperature": (schema.SCENARIO, [s.ambient_temperature for s in scen]),
        "charge_c_rate": (schema.SCENARIO, [s.charge_c_rate for s in scen]),
        "discharge_c_rate": (schema.SCENARIO, [s.discharge_c_rate for s in scen]),
        "protocol": (schema.SCENARIO, [schema.PROTOCOLS.index(s.protocol) for s in scen]),
        schema.CELL: np.arange(gen.pack.n_series * gen.pack.n_parallel),
        schema.SNAPSHOT: np.arange(len(gen_config.snapshot_cycles(gen)))})
    train = splits.select(fake, cfg.train, "train")
    t_train = fake["ambient_temperature"].values[train.scenarios]
    for name, spec in cfg.splits.items():
        sel = splits.select(fake, spec, name)
        t = fake["ambient_temperature"].values[sel.scenarios]
        if "hotter" in name:
            assert t.min() >= t_train.max() + 20, name
        if "colder" in name:
            assert t.max() <= t_train.min() - 20, name
        if "c_rate" in name:
            c = fake["discharge_c_rate"].values
            assert c[sel.scenarios].min() > c[train.scenarios].max(), name
        if "unseen" in name or name == "combined":
            assert not set(sel.cells) & set(train.cells), name
