"""Pooling evaluate's metrics over generated packs (cell draws): packtwin.eval.draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.eval.draws import draws_markdown, draws_summary, stack_draws

SPLITS = ["25C_1C_cccv", "-10C_1C_pulses"]
VARIANTS = ["baseline", "ekf", "subspace", "pybamm"]


def _metrics(offset: float, splits=SPLITS) -> xr.Dataset:
    """A metrics store as evaluate writes it: dims split, variant, seed (one), cell."""
    shape = (len(splits), len(VARIANTS), 1)
    base = np.arange(np.prod(shape), dtype=float).reshape(shape) + offset
    base[:, VARIANTS.index("pybamm")] = np.nan
    coords = {"split": splits, "variant": VARIANTS, "seed": [0], "cell": [0, 1]}
    ds = xr.Dataset(coords=coords)
    for name, units, scale in (("c_s_n_rmse_pct", "% of c_max", 1.0),
                               ("c_s_p_rmse_pct", "% of c_max", 0.5),
                               ("voltage_rmse", "mV", 10.0)):
        ds[f"pack_{name}"] = (("split", "variant", "seed"), base * scale, {"units": units})
        ds[name] = (("split", "variant", "seed", "cell"),
                    np.repeat(base[..., None] * scale, 2, axis=-1), {"units": units})
    return ds


def test_stack_puts_each_draw_on_the_seed_dim_and_keeps_units():
    stores = {12: _metrics(0.0), 13: _metrics(1.0), 14: _metrics(2.0)}
    ds = stack_draws(stores)
    assert ds["seed"].values.tolist() == [12, 13, 14]
    assert set(ds.data_vars) == {"pack_c_s_n_rmse_pct", "pack_c_s_p_rmse_pct", "pack_voltage_rmse"}
    assert ds["pack_voltage_rmse"].attrs["units"] == "mV"
    got = ds["pack_c_s_n_rmse_pct"].sel(split="25C_1C_cccv", variant="ekf").values
    np.testing.assert_allclose(got, [1.0, 2.0, 3.0])


def test_summary_is_the_sample_mean_and_std_over_draws():
    ds = stack_draws({12: _metrics(0.0), 13: _metrics(1.0), 14: _metrics(5.0)})
    s = draws_summary(ds)
    row = s["metrics"]["voltage_rmse"]["splits"]["-10C_1C_pulses"]["subspace"]
    vals = np.array([6.0, 7.0, 11.0]) * 10.0
    assert row["values"] == pytest.approx(vals.tolist())
    assert row["mean"] == pytest.approx(vals.mean())
    assert row["std"] == pytest.approx(vals.std(ddof=1))
    assert row["n"] == 3
    # the audit row (pybamm: NaN everywhere) is left out, not reported as 0
    assert "pybamm" not in s["metrics"]["voltage_rmse"]["splits"]["-10C_1C_pulses"]
    assert s["metrics"]["c_s_n_rmse_pct"]["units"] == "% of c_max"


def test_markdown_shows_mean_std_and_n():
    md = draws_markdown(stack_draws({12: _metrics(0.0), 13: _metrics(2.0)}), title="t")
    assert "[mV]" in md and "(n=2)" in md and "±" in md
    assert "| 25C_1C_cccv |" in md


def test_a_draw_lacking_a_split_counts_where_it_has_values():
    """A split whose scenario failed to generate on one draw: NaN there, n counts the others."""
    short = _metrics(5.0, splits=[s for s in SPLITS if s != "-10C_1C_pulses"])
    ds = stack_draws({12: _metrics(0.0), 13: _metrics(1.0), 14: short})
    v = ds["pack_c_s_n_rmse_pct"].sel(variant="ekf")
    assert np.isnan(v.sel(split="-10C_1C_pulses", seed=14)) and np.isfinite(v.sel(seed=14)).sum() == len(SPLITS) - 1
    s = draws_summary(ds)
    assert s["missing_splits"] == {"14": ["-10C_1C_pulses"]}
    assert s["metrics"]["c_s_n_rmse_pct"]["splits"]["-10C_1C_pulses"]["ekf"]["n"] == 2
    assert s["metrics"]["c_s_n_rmse_pct"]["splits"]["25C_1C_cccv"]["ekf"]["n"] == 3
    assert "seed 14 has no -10C_1C_pulses" in draws_markdown(ds)


def test_different_splits_are_refused_naming_the_store():
    with pytest.raises(ValueError, match=r"b\.zarr: split .* differs"):
        stack_draws({12: _metrics(0.0), 13: _metrics(0.0, splits=["25C_1C_cccv", "0C"])},
                    where={12: "a.zarr", 13: "b.zarr"})


def test_several_training_seeds_and_missing_metrics_are_refused():
    two = xr.concat([_metrics(0.0), _metrics(0.0).assign_coords(seed=[1])], dim="seed")
    with pytest.raises(ValueError, match="expected one training seed, found 2|found 2"):
        stack_draws({12: _metrics(0.0), 13: two})
    with pytest.raises(ValueError, match=r"pack_voltage_rmse.*missing"):
        stack_draws({12: _metrics(0.0), 13: _metrics(0.0).drop_vars("pack_voltage_rmse")})


def test_observer_seeds_script_pools_the_reports_it_finds(tmp_path, monkeypatch, load_script):
    """scripts/observer_seeds.py --pool-only: every (seed, start) report -> OUT.md / OUT.json."""
    import json
    from pathlib import Path

    mod = load_script("observer_seeds")
    monkeypatch.chdir(tmp_path)
    for i, seed in enumerate((12, 13)):
        for start in ("rested", "loaded"):
            _metrics(float(i)).to_zarr(Path(mod.output_for(seed, start), "metrics.zarr"))
    assert mod.main(["--seeds", "12", "13", "--pool-only", "--prior", "loaded",
                     "--out", "r/pooled"]) == 0
    summary = json.loads((tmp_path / "r/pooled.json").read_text())
    assert summary["prior"] == "loaded"
    assert summary["starts"]["loaded"]["sources"]["13"] == "reports/observer-check-s13_loaded/metrics.zarr"
    assert summary["starts"]["rested"]["metrics"]["c_s_n_rmse_pct"]["splits"]["25C_1C_cccv"]["ekf"]["n"] == 2
    assert "loaded start" in (tmp_path / "r/pooled.md").read_text()
    with pytest.raises(SystemExit, match="s14.*missing|missing"):
        mod.main(["--seeds", "12", "14", "--pool-only", "--prior", "loaded", "--out", "r/x"])
    # another prior's loaded start has its own reports (the rested start's are shared)
    assert mod.output_for(13, "loaded", "loaded_window") == "reports/observer-check-s13_loaded-loaded_window"
    assert mod.output_for(13, "rested", "loaded_window") == "reports/observer-check-s13"
    with pytest.raises(SystemExit, match="loaded-loaded_window.*missing"):
        mod.main(["--seeds", "12", "13", "--pool-only", "--out", "r/y"])
    # --identified: its own reports, named so, and pooled as such
    assert mod.output_for(13, "loaded", "loaded_window", True) == \
        "reports/observer-check-s13_loaded-loaded_window-identified"
    assert mod.output_for(12, "rested", "loaded_window", True) == "reports/observer-check-identified"
    for i, seed in enumerate((12, 13)):
        _metrics(float(i)).to_zarr(Path(mod.output_for(seed, "loaded", "loaded_window", True),
                                        "metrics.zarr"))
    assert mod.main(["--seeds", "12", "13", "--pool-only", "--starts", "loaded", "--identified",
                     "--out", "r/ident"]) == 0
    summary = json.loads((tmp_path / "r/ident.json").read_text())
    assert summary["parameters"] == "identified"
    assert "identified parameters" in (tmp_path / "r/ident.md").read_text()


def test_observer_seeds_names_subspace_overrides(load_script):
    """--subspace: SubspaceConfig overrides end the output's name, one -<key><value> each."""
    mod = load_script("observer_seeds")
    assert mod.output_for(15, "loaded", "loaded_window", offset=0.3,
                          subspace={"reprior_soc": 0.1}) == \
        "reports/observer-check-s15_loaded-loaded_window-off0.3-reprior_soc0.1"
    assert mod.subspace_tail({"reprior_soc": 0.1, "reprior_covariance": True}) == \
        "-reprior_covarianceTrue-reprior_soc0.1"
    assert mod.subspace_tail(None) == ""
    # --tag: a rerun of the same configuration gets its own reports, named last
    assert mod.output_for(15, "loaded", "loaded_window", True, 1800.0, tag="stop38") == \
        "reports/observer-check-s15_loaded-loaded_window-identified-w1800-stop38"
    # --identify: IdentifyConfig overrides name the output; refused without --identified
    assert mod.output_for(13, "loaded", "loaded_window", True, identify={"iterations": 40},
                          tag="stop39") == \
        "reports/observer-check-s13_loaded-loaded_window-identified-id-iterations40-stop39"
    with pytest.raises(SystemExit):
        mod.main(["--identify", '{"iterations": 40}', "--pool-only"])


def test_observer_seeds_names_an_observer_selection(load_script):
    """--observers: evaluate runs only those; the output's name ends in -only-<names>, after the
    subspace overrides, and --identified (which picks its own observers) refuses it."""
    mod = load_script("observer_seeds")
    assert mod.output_for(18, "rested", subspace={"strip_guard_s": 0}, observers=["subspace"]) == \
        "reports/observer-check-s18-strip_guard_s0-only-subspace"
    assert mod.output_for(18, "rested") == "reports/observer-check-s18"
    with pytest.raises(SystemExit):
        mod.main(["--identified", "--observers", "subspace", "--pool-only"])


def test_observer_seeds_names_a_core_override(load_script):
    """--core: evaluate's observer_core; the output's name carries -core-<key><value> after the
    subspace overrides and before -only-<names>."""
    mod = load_script("observer_seeds")
    assert mod.output_for(15, "loaded", "loaded_window", subspace={"strip_guard_s": 0},
                          observers=["subspace"], core={"plating": True}) == \
        "reports/observer-check-s15_loaded-loaded_window-strip_guard_s0-core-platingTrue-only-subspace"
    assert Path(mod.output_for(15, "rested", core={"plating": True})).name == \
        "observer-check-s15-core-platingTrue"


def test_identification_window_reaches_evaluate_through_the_command_line():
    """The scripts pass the window as evaluate's command line reads it: the whole cycle (inf)
    as YAML's .inf, which jsonargparse parses to a float where a bare "inf" is refused."""
    import math

    from packtwin.eval.evaluate import parse
    from packtwin.eval.observer_identify import WINDOW_S, window_arg

    for w in (1800.0, WINDOW_S):
        cfg, _ = parse(["--config", "configs/experiments/observer-check_loaded.yaml",
                        "--observer_identify_window_s", window_arg(w)])
        assert cfg.observer_identify_window_s == w
    assert math.isinf(WINDOW_S) and window_arg(WINDOW_S) == ".inf"
