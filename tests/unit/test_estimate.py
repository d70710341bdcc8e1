"""``packtwin estimate``: any pack (any cell count, measured or simulated), every cell new, a seed
ensemble's mean and spread; CSV -> ingest -> estimate equals estimating the simulated store; bad
inputs refused in one line or handled."""

from __future__ import annotations

import json
import re

import lightning
import numpy as np
import pytest
import xarray as xr

from packtwin import cli, schema
from packtwin.data import store, synthetic
from packtwin.data.datamodule import TwinDataModule
from packtwin.eval import estimate as est
from packtwin.eval import uncertainty
from packtwin.model.module import TwinModule
from tests.unit.test_ingest import long_log

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIT = ["--steps", "4"]  # the embedding fit is tested in test_predict; here its plumbing


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, synthetic_store):
    """Two physics twins (seeds 0, 1) trained a few batches on cells 0-2 of the 2s2p synthetic
    pack, saved by Lightning."""
    d = tmp_path_factory.mktemp("ens")
    paths = []
    for seed in (0, 1):
        lightning.seed_everything(seed, verbose=False)
        dm = TwinDataModule(str(synthetic_store), train={"cells": [0, 1, 2]}, batch_size=8)
        m = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
        trainer = lightning.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0,
                                    logger=False, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False,
                                    accelerator="cpu", devices=1)
        trainer.fit(m, datamodule=dm)
        trainer.save_checkpoint(d / f"seed{seed}.ckpt")
        paths.append(str(d / f"seed{seed}.ckpt"))
    return paths


@pytest.fixture(scope="module")
def big_pack(tmp_path_factory):
    """A 3s2p pack (6 cells; the checkpoints know 4), two scenarios, one snapshot."""
    p = tmp_path_factory.mktemp("big") / "pack.zarr"
    synthetic.make_store(p, n_series=3, n_parallel=2, n_snapshots=1, seed=3, scenarios=[
        dict(ambient_temperature=25.0, charge_c_rate=1.0, discharge_c_rate=1.0, protocol="cccv"),
        dict(ambient_temperature=10.0, charge_c_rate=2.0, discharge_c_rate=2.0, protocol="pulse")])
    return p


def run(argv, capsys) -> tuple[int, str]:
    """Exit code and stderr (or stdout when it succeeded)."""
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.err if rc else out.out


def test_any_cell_count_ensemble_mean_and_spread(ckpts, big_pack, tmp_path, capsys):
    outs = {}
    for name, members in (("a", ckpts[:1]), ("b", ckpts[1:]), ("ab", ckpts)):
        outs[name] = tmp_path / f"{name}.zarr"
        args = sum((["--checkpoint", c] for c in members), [])
        rc, msg = run(["estimate", *args, "--store", str(big_pack), "--out", str(outs[name]),
                       *FIT], capsys)
        assert rc == 0, msg
    truth = store.open_store(big_pack)
    ab = store.open_store(outs["ab"], kind="estimate")
    a, b = (store.open_store(outs[k], kind="estimate") for k in "ab")
    # aligned with the input: same scenarios, cells (6, more than the checkpoints'), times
    for c in ("scenario", "cell", "snapshot", "time", "series_index", "parallel_index",
              "ambient_temperature", "x_n", "r_p"):
        np.testing.assert_array_equal(ab[c].values, truth[c].values, err_msg=c)
    assert ab.sizes["cell"] == 6 and ab.attrs["ensemble_size"] == 2
    # one checkpoint: no spread; two: the mean of the members and their sample std
    assert not [n for n in a.data_vars if n.endswith("_std")]
    for name in ("soc", "c_s_n", "voltage", "param_neg_diffusivity"):
        m = np.stack([a[name].values, b[name].values]).astype(np.float64)
        np.testing.assert_allclose(ab[name].values, m.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ab[schema.std_var(name)].values, m.std(0, ddof=1),
                                   rtol=1e-4, atol=1e-6)
        assert ab[schema.std_var(name)].attrs["units"] == ab[name].attrs["units"]
    valid = truth["valid"].values.astype(bool)[:, None, :, :]
    soc = ab["soc"].values
    assert np.isfinite(soc[np.broadcast_to(valid, soc.shape)]).all()
    assert np.isnan(soc[np.broadcast_to(~valid, soc.shape)]).all()
    band = json.loads(ab.attrs["uncertainty"])
    assert band["kind"] == "ensemble over seeds" and band["nominal_coverage"] == 0.9
    assert band["k"] == pytest.approx(uncertainty.band_factor(2, 0.9))
    fit = json.loads(ab.attrs["embedding_fit"])
    assert fit["cells"] == 6 and len(fit["members"]) == 2


def test_csv_log_through_ingest_and_estimate_equals_the_simulated_store(ckpts, tmp_path, capsys):
    """V/I/T of a simulated pack written as a CSV log, ingested, estimated: the same estimates
    as estimating the simulated store itself (whose hidden variables estimate never reads)."""
    sim_path = tmp_path / "sim.zarr"
    sim = synthetic.make_store(sim_path, n_snapshots=1, seed=5, scenarios=[dict(
        ambient_temperature=20.0, charge_c_rate=0.5, discharge_c_rate=0.5, protocol="cccv")])
    assert sim["valid"].values.all()  # a log has no padding: the cycle fills the store
    log = tmp_path / "log.csv"
    long_log(sim.load()).to_csv(log, index=False)
    measured = tmp_path / "measured.zarr"
    rc, msg = run(["ingest", str(log), "--out", str(measured), "--topology", "2s2p",
                   "--period-s", repr(sim.attrs["period_s"]), "--ambient-temperature", "20",
                   "--cycle", str(int(sim["snapshot_cycle"].values[0])),
                   "--units", "voltage=V,current=A,temperature=K"], capsys)
    assert rc == 0, msg
    outs = {}
    for name, src in (("sim", sim_path), ("measured", measured)):
        outs[name] = tmp_path / f"est_{name}.zarr"
        args = sum((["--checkpoint", c] for c in ckpts), [])
        rc, msg = run(["estimate", *args, "--store", str(src), "--out", str(outs[name]), *FIT],
                      capsys)
        assert rc == 0, msg
    e_sim = store.open_store(outs["sim"], kind="estimate")
    e_meas = store.open_store(outs["measured"], kind="estimate")
    assert e_meas.attrs["input_kind"] == "measured" and e_sim.attrs["input_kind"] == "simulated"
    np.testing.assert_allclose(e_meas["time"].values, e_sim["time"].values, rtol=0, atol=1e-9)
    assert sorted(e_meas.data_vars) == sorted(e_sim.data_vars)
    for name in e_sim.data_vars:
        np.testing.assert_allclose(e_meas[name].values, e_sim[name].values, rtol=1e-5,
                                   atol=1e-6 * float(np.nanmax(np.abs(e_sim[name].values))),
                                   err_msg=name)
    assert np.isfinite(e_meas["soc_std"].values).all()


# ---- bad inputs --------------------------------------------------------------------------------
def _edit(src, dst, fn):
    ds = store.open_store(src).load()
    ds = fn(ds)
    ds = ds.chunk({"scenario": 1, "cell": 1})
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(dst, mode="w", **store.ZARR_KW)
    return dst


def _other_period(ds):
    ds.attrs["period_s"] = 2.0 * ds.attrs["period_s"]
    return ds.assign_coords(time=ds["time"].copy(data=ds["time"].values * 2.0))


def _nan_inside(ds):
    ds["voltage"].values[0, 1, 0, 5] = np.nan
    return ds


def _first_invalid(ds):
    ds["valid"].values[0, 0, 0] = 0
    return ds


def _milliamps(ds):
    ds["current"].values *= 1000.0
    return ds


BAD = [  # id, store edit, extra argv, fragment of the one-line error
    ("another sampling period", _other_period, [],
     r"period_s: checkpoint [0-9.]+, store [0-9.]+ .*packtwin ingest --period-s"),
    ("a missing variable", lambda ds: ds.drop_vars("temperature"), [],
     r"variable\(s\) \['temperature'\] missing"),
    ("NaN inside valid samples", _nan_inside, [],
     r"input 'voltage' has 1 NaN/inf values inside valid samples \(first at scenario 0, cell 1"),
    ("a window starting with an invalid sample", _first_invalid, [],
     r"scenario 0, snapshot 0 does not start with a valid sample"),
    ("current in mA", _milliamps, [], r"input 'current' has mean .* wrong units"),
    ("a band level outside (0, 1)", None, ["--level", "1.5"], r"coverage level must be in"),
    ("a file that is not a checkpoint", None, ["--checkpoint", "{text}"],
     r"is not a readable packtwin checkpoint"),
    ("a checkpoint that does not exist", None, ["--checkpoint", "{missing}"],
     r"checkpoint does not exist"),
    ("the output is the input store", None, ["--out", "{store}"], r"would destroy the input"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_clear_line(case, ckpts, synthetic_store, tmp_path, capsys):
    _, edit, extra, fragment = case
    path = synthetic_store if edit is None else _edit(synthetic_store, tmp_path / "e.zarr", edit)
    (tmp_path / "model.txt").write_text("not a checkpoint")
    fmt = dict(text=tmp_path / "model.txt", missing=tmp_path / "none.ckpt", store=path)
    extra = [a.format(**fmt) for a in extra]
    out = tmp_path / "out.zarr"
    members = sum((["--checkpoint", c] for c in ckpts), [])
    argv = ["estimate", *members, "--store", str(path), "--out", str(out), *FIT, *extra]
    rc, msg = run(argv, capsys)
    assert rc == 2, msg
    assert msg.startswith("packtwin estimate: error: ") and msg.count("\n") == 1, msg
    assert re.search(fragment, msg), msg
    assert not out.exists()


def test_gaps_marked_invalid_are_estimated_around(ckpts, synthetic_store, tmp_path):
    """A gap the log could not fill (valid = 0, NaN V/I/T, as ingest writes it) stays NaN in the
    estimates; the samples around it are estimated."""
    def gap(ds):
        for q in schema.MEASURED:
            ds[q].values[0, :, 0, 10:14] = np.nan
        ds["valid"].values[0, 0, 10:14] = 0
        return ds

    path = _edit(synthetic_store, tmp_path / "gap.zarr", gap)
    ds = est.estimate(ckpts[:1], path, steps=3, scenarios=[0], snapshots=[0])
    soc = ds["soc"].values[0, :, 0]
    assert np.isnan(soc[:, 10:14]).all()
    assert np.isfinite(soc[:, :10]).all() and np.isfinite(soc[:, 14:40]).all()
    assert ds.sizes["scenario"] == 1 and ds.sizes["snapshot"] == 1


def test_the_fit_window_is_the_selection(ckpts, synthetic_store, tmp_path):
    """Embeddings are fitted on the selected scenarios and snapshots only: changing another
    snapshot's data changes nothing."""
    def shifted(ds):
        ds["voltage"].values[:, :, 1] += 0.05
        return ds

    other = _edit(synthetic_store, tmp_path / "shifted.zarr", shifted)
    a, b = (est.estimate(ckpts[:1], p, steps=3, scenarios=[0, 1], snapshots=[0])
            for p in (synthetic_store, other))
    xr.testing.assert_allclose(a["soc"], b["soc"])
    fit = json.loads(a.attrs["embedding_fit"])
    assert fit["scenarios"] == [0, 1] and fit["snapshots"] == [0]


# ---- the band and its coverage -----------------------------------------------------------------
def test_band_factor_is_the_student_t_prediction_interval():
    # K = 3, 90 %: t_2(0.95) = 2.919986 times sqrt(1 + 1/3)
    assert uncertainty.band_factor(3, 0.9) == pytest.approx(2.919986 * np.sqrt(4 / 3), rel=1e-6)
    # many members: the normal quantile
    assert uncertainty.band_factor(10**6, 0.9) == pytest.approx(1.644854, rel=1e-4)
    assert uncertainty.range_level(3) == 0.5
    with pytest.raises(uncertainty.EnsembleError, match="at least 2"):
        uncertainty.band_factor(1, 0.9)


def test_coverage_counts_exactly_on_a_constructed_case():
    truth = np.array([0.0, 0.5, 1.0, 1.5, 2.0, np.nan, 3.0])
    mean = np.zeros(7)
    std = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, np.nan])
    c = uncertainty.coverage(truth, mean, std, k=1.0)
    assert c == {"n": 5, "covered": 3, "coverage": 0.6}  # |0|, |0.5|, |1.0| <= 1; NaN rows out
    members = np.array([[0.0, 0.0, 2.0], [1.0, 2.0, 3.0]])
    r = uncertainty.range_coverage(np.array([0.5, 3.0, 2.0]), members)
    assert r == {"n": 3, "covered": 2, "coverage": 2 / 3}


@pytest.mark.parametrize("k_members", [3, 5])
def test_exchangeable_truth_is_covered_at_the_nominal_rate(k_members):
    """If the truth is one more draw like the members, the band covers it at its nominal level
    (and the range at (K-1)/(K+1)): the coverage computation and k agree."""
    rng = np.random.default_rng(0)
    n = 40000
    draws = rng.normal(size=(k_members + 1, n)) * rng.uniform(0.5, 2, n) + rng.normal(size=n)
    members, truth = draws[:-1], draws[-1]
    mean, std = members.mean(0), members.std(0, ddof=1)
    for level in (0.5, 0.8, 0.9, 0.95):
        got = uncertainty.coverage(truth, mean, std, uncertainty.band_factor(k_members, level))
        assert got["coverage"] == pytest.approx(level, abs=0.01)
    got = uncertainty.range_coverage(truth, members)["coverage"]
    assert got == pytest.approx(uncertainty.range_level(k_members), abs=0.01)


def test_combine_refuses_members_on_other_grids():
    a = xr.Dataset({"soc": (("cell",), np.zeros(2))}, coords={"cell": [0, 1]})
    b = xr.Dataset({"soc": (("cell",), np.zeros(2))}, coords={"cell": [0, 2]})
    with pytest.raises(uncertainty.EnsembleError, match="coordinate 'cell'"):
        uncertainty.combine([a, b], ["soc"])


# ---- the calibrated band -----------------------------------------------------------------------
def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 9.0, 8.0, 7.0, 6.0, np.nan])
    # 9 finite scores, level 0.8: the ceil(10 * 0.8) = 8th smallest
    assert uncertainty.conformal_quantile(scores, 0.8) == 8.0
    assert uncertainty.conformal_quantile(scores, 0.9) == 9.0
    with pytest.raises(uncertainty.CalibrationError, match="too few for level 0.95"):
        uncertainty.conformal_quantile(scores, 0.95)


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_calibration_recovers_a_known_scale_and_covers_at_its_level(level):
    """Errors c times larger than the spread: the fitted scale is c z / k, the calibration
    entries are covered at >= level by construction, new draws at level."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    c, k = 4.0, uncertainty.band_factor(3, level)

    def draw(n):
        std = rng.uniform(0.5, 2.0, n)
        mean = rng.normal(size=n)
        return mean + c * std * rng.normal(size=n), mean, std

    truth, mean, std = draw(20000)
    fit = uncertainty.fit_scale(truth, mean, std, k, level, floor=1e-9)
    assert fit["scale"] == pytest.approx(c * norm.ppf(0.5 + level / 2) / k, rel=0.03)
    assert level <= fit["coverage_calibrated"] <= level + 2 / fit["n"]
    assert fit["coverage_raw"] < level  # the spread alone is too narrow
    t2, m2, s2 = draw(20000)
    got = uncertainty.coverage(t2, m2, uncertainty.calibrated_std(s2, k, fit["scale"],
                                                                  fit["floor"]), k)
    assert got["coverage"] == pytest.approx(level, abs=0.01)


def test_calibration_floor_covers_where_the_members_agree():
    """Where the spread is 0 the band is scale * floor wide, not empty; the default floor is
    FLOOR_FRACTION of the RMS of k std."""
    truth = np.r_[np.full(50, 0.01), np.linspace(-1, 1, 50)]
    std = np.r_[np.zeros(50), np.ones(50)]
    fit = uncertainty.fit_scale(truth, np.zeros(100), std, 1.0, 0.9)
    assert fit["floor"] == pytest.approx(uncertainty.FLOOR_FRACTION * np.sqrt(0.5))
    assert fit["coverage_calibrated"] >= 0.9
    half = uncertainty.calibrated_std(0.0, 1.0, fit["scale"], fit["floor"])
    assert half >= 0.01


def test_write_and_apply_a_calibration(ckpts, synthetic_store, tmp_path, capsys):
    """--write-calibration on a simulated store, --calibration applied to its estimate: the
    calibrated band covers the calibration entries at >= its level, <name>_std is
    scale * (spread + floor / k), the attrs say so."""
    members = sum((["--checkpoint", c] for c in ckpts), [])
    common = [*members, "--store", str(synthetic_store), "--scenarios", "0,1", *FIT]
    cal_path = tmp_path / "cal.json"
    rc, msg = run(["estimate", *common, "--out", str(tmp_path / "raw.zarr"),
                   "--write-calibration", str(cal_path), "--level", "0.8"], capsys)
    assert rc == 0, msg
    cal = json.loads(cal_path.read_text())
    assert cal["kind"] == uncertainty.CALIBRATION_KIND and cal["members"] == 2
    assert cal["level"] == 0.8 and cal["provenance"]["scenarios"] == [0, 1]
    assert cal["variables"]["soc"]["units"] == "1"
    assert cal["variables"]["c_s_n"]["units"] == schema.units("c_s_n")
    rc, msg = run(["estimate", *common, "--out", str(tmp_path / "cal.zarr"),
                   "--calibration", str(cal_path)], capsys)
    assert rc == 0, msg
    raw = store.open_store(tmp_path / "raw.zarr", kind="estimate")
    got = store.open_store(tmp_path / "cal.zarr", kind="estimate")
    truth = store.open_store(synthetic_store)
    band = json.loads(got.attrs["uncertainty"])
    assert band["nominal_coverage"] == 0.8 and "calibration" in band
    for name in ("soc", "c_s_n", "voltage"):
        e = cal["variables"][name]
        want = e["scale"] * (raw[schema.std_var(name)].values.astype(np.float64)
                             + e["floor"] / cal["k"])
        np.testing.assert_allclose(got[schema.std_var(name)].values, want, rtol=1e-5)
        t = est.truth_aligned(truth, got, name)
        c = uncertainty.coverage(t, got[name].values.astype(np.float64),
                                 got[schema.std_var(name)].values.astype(np.float64), cal["k"])
        assert c["coverage"] >= 0.8, name  # by construction, float32 storage included
        assert c["coverage"] == pytest.approx(e["coverage_calibrated"], abs=1e-3)


def _cal_file(tmp_path, **change):
    entry = {"units": "1", "scale": 2.0, "floor": 0.01}
    cal = {"kind": uncertainty.CALIBRATION_KIND, "version": 1, "level": 0.9, "members": 2,
           "k": uncertainty.band_factor(2, 0.9), "variables": {"soc": entry}}
    for key, value in change.items():
        if key.startswith("soc_"):
            entry[key[4:]] = value
        else:
            cal[key] = value
    p = tmp_path / "cal.json"
    p.write_text(json.dumps(cal))
    return p


BAD_CAL = [  # id, change to a good file, extra argv, fragment of the one-line error
    ("a variable that is not estimated", dict(variables={"soc_x": {"units": "1"}}), [],
     r"variable 'soc_x' is not estimated here"),
    ("wrong units", dict(soc_units="%"), [],
     r"variable 'soc' has units '%', the estimate has '1'"),
    ("another ensemble size", dict(members=3), [],
     r"ensemble of 3 checkpoints, this estimate has 2"),
    ("not a calibration", dict(kind="something"), [], r"is not a band calibration"),
    ("a negative scale", dict(soc_scale=-1.0), [], r"has scale -1.0, expected a finite number"),
    ("a missing file", None, [], r"calibration '.*none.json' does not exist"),
    ("another --level than the file's", {}, ["--level", "0.8"],
     r"--level 0.8 differs from calibration .* level 0.9"),
]


@pytest.mark.parametrize("case", BAD_CAL, ids=[c[0] for c in BAD_CAL])
def test_bad_calibration_is_one_clear_line(case, ckpts, synthetic_store, tmp_path, capsys):
    _, change, extra, fragment = case
    path = tmp_path / "none.json" if change is None else _cal_file(tmp_path, **change)
    out = tmp_path / "out.zarr"
    members = sum((["--checkpoint", c] for c in ckpts), [])
    rc, msg = run(["estimate", *members, "--store", str(synthetic_store), "--out", str(out),
                   *FIT, "--calibration", str(path), *extra], capsys)
    assert rc == 2, msg
    assert msg.startswith("packtwin estimate: error: ") and msg.count("\n") == 1, msg
    assert re.search(fragment, msg), msg
    assert not out.exists()


def test_write_calibration_needs_a_truth(ckpts, synthetic_store, tmp_path, capsys):
    """A store without hidden truth (here: soc dropped) is refused before any fit."""
    path = _edit(synthetic_store, tmp_path / "no_soc.zarr", lambda ds: ds.drop_vars("soc"))
    members = sum((["--checkpoint", c] for c in ckpts), [])
    out, cal = tmp_path / "out.zarr", tmp_path / "cal.json"
    rc, msg = run(["estimate", *members, "--store", str(path), "--out", str(out), *FIT,
                   "--write-calibration", str(cal)], capsys)
    assert rc == 2 and msg.count("\n") == 1, msg
    assert re.search(r"has no truth for \['soc'\]: calibrate on a simulated store", msg), msg
    assert not out.exists() and not cal.exists()
