"""Real PyBaMM packs through ``packtwin generate`` (slow: each test solves DFN packs)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from packtwin import schema
from packtwin.data import store
from packtwin.sim import config as cfgmod
from packtwin.sim.generate import PRESET_DIR, draw_cells, main, parse

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, name: str, **changes) -> Path:
    d = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    d.update(changes)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.zarr"
    assert main(["--preset", "tiny", "--store", str(path), "--workers", "1", "--quiet"]) == 0
    return path


def test_schema_round_trip(tiny_store):
    ds = store.open_store(tiny_store)  # validates
    assert schema.validate(ds) == []
    assert (ds["status"].values == schema.STATUS_OK).all()
    cfg, _ = parse(["--preset", "tiny"])
    assert json.loads(ds.attrs["generator_config"]) == cfgmod.to_dict(cfg)
    cells, _ = draw_cells(cfg)
    for key in cells[0]:
        np.testing.assert_allclose(ds[schema.param_var(key)].values, [c[key] for c in cells])
    assert ds["c_s_n"].attrs["c_max"] > 3e4 and ds["c_s_p"].attrs["c_max"] > 6e4
    for a in ("pybamm_version", "parameter_set", "model_options", "seed"):
        assert ds.attrs[a] not in (None, "")
    valid = ds["valid"].values.astype(bool)
    v = ds["voltage"].values
    assert np.isfinite(v.transpose(1, 0, 2, 3)[:, valid]).all()
    assert np.isnan(v.transpose(1, 0, 2, 3)[:, ~valid]).all()


def test_stored_cell_currents_sum_to_the_pack_current(tiny_store):
    ds = xr.open_zarr(tiny_store, consolidated=False).load()
    npar = ds.attrs["n_parallel"]
    for g in range(ds.attrs["n_series"]):
        group = ds["current"].isel(cell=slice(g * npar, (g + 1) * npar)).astype("float64").sum("cell")
        pack = ds["pack_current"].astype("float64")
        scale = np.maximum(np.abs(ds["current"]).max("cell").astype("float64"), 1e-3)
        # stored as float32: the sum is exact to float32 rounding of each addend
        err = (np.abs(group - pack) / scale).where(ds["valid"] == 1)
        assert float(err.max()) < 4 * np.finfo(np.float32).eps


def test_instant_current_is_the_next_modes_at_a_discharge_cut_off(tiny_store):
    # current = the period's mean (the charge); current_end = at the sample's instant (the
    # voltage's). Per group (a 2p group's split moves inside a period): equal under a constant
    # pack current; in the period of a discharge cut-off the mean is the discharge's share and
    # the end is the rest that follows
    ds = xr.open_zarr(tiny_store, consolidated=False).load()
    assert ds["current_end"].attrs["units"] == "A"
    npar = ds.attrs["n_parallel"]
    grp = dict(cell=slice(0, npar))
    valid = ds["valid"] == 1
    mean = ds["current"].isel(grp).astype("float64").sum("cell").where(valid)
    end = ds["current_end"].isel(grp).astype("float64").sum("cell").where(valid)
    prev, nxt = mean.shift(time=1), mean.shift(time=-1)
    steady = (np.abs(prev - mean) < 1e-6) & (np.abs(nxt - mean) < 1e-6) & (np.abs(mean) > 0.1)
    assert int(steady.sum()) > 20
    np.testing.assert_allclose(end.where(steady).values, mean.where(steady).values, atol=1e-4)
    # the last discharging period, cut short inside (a pulse ending on the grid is not)
    cut = (mean > 0.5) & (mean < 0.99 * prev) & (np.abs(nxt) < 0.05 * mean)
    assert int(cut.sum()) >= 2
    assert float(np.abs(end.where(cut)).max()) < 0.05 * float(mean.where(cut).min())


def test_in_memory_split_is_exact_and_voltages_agree():
    from packtwin.sim.scenario import run_scenario

    cfg, _ = parse(["--preset", "tiny"])
    cells, nominal = draw_cells(cfg)
    res = run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 1, "cell_values": cells,
                        "nominal": nominal})
    assert res["status"] == schema.STATUS_OK, res["message"]
    snap = res["snapshots"][0]
    k = snap["valid"].astype(bool)
    i_cells, i_pack = snap["fields"]["current"][:, k], snap["pack"]["pack_current"][k]
    np.testing.assert_allclose(i_cells.sum(0), i_pack, rtol=1e-12, atol=1e-12)
    v = snap["fields"]["voltage"][:, k]
    assert np.abs(v[0] - v[1]).max() <= cfg.solver.voltage_tol
    # the parallel cells do not carry equal currents: the imbalance is simulated
    assert np.abs(i_cells[0] - i_cells[1]).max() > 1e-3


def test_physical_bounds_and_monotonic_sei(tiny_store):
    ds = xr.open_zarr(tiny_store, consolidated=False).load()
    assert schema.check_bounds(ds) == []
    for name in ("c_s_n", "c_s_p"):
        c = ds[name].values
        c = c[np.isfinite(c)]
        assert c.min() >= 0.0 and c.max() <= ds[name].attrs["c_max"]
    sei_end = ds["sei_thickness_end"].values  # (scenario, cell, cycle)
    assert (np.diff(sei_end, axis=-1) >= 0).all()
    sei = ds["sei_thickness_avg"].where(ds["valid"] == 1).values
    for s in range(sei.shape[0]):
        for c in range(sei.shape[1]):
            series = sei[s, c].ravel()  # snapshots follow each other in time
            series = series[np.isfinite(series)]
            assert (np.diff(series) >= -1e-6).all()  # nm; solver noise only


def test_failing_solve_is_recorded_and_others_complete(tmp_path, capsys):
    cfg = _config(tmp_path, "fail", n_cycles=1, pack={"n_series": 1, "n_parallel": 1}, scenarios=[
        {"ambient_temperature": -10.0, "charge_c_rate": 5.0, "discharge_c_rate": 5.0, "protocol": "cccv"},
        {"ambient_temperature": 25.0, "charge_c_rate": 2.0, "discharge_c_rate": 2.0, "protocol": "cccv"}])
    path = tmp_path / "fail.zarr"
    assert main(["--config", str(cfg), "--store", str(path), "--workers", "1", "--quiet"]) == 0
    ds = store.open_store(path)
    assert ds["status"].values.tolist() == [schema.STATUS_FAILED, schema.STATUS_OK]
    msgs = store.json_attr(ds, "messages")
    assert set(msgs) == {"0"} and "cut-off" in msgs["0"]
    capsys.readouterr()
    # a rerun skips both; --retry-failed retries only the failed one (and fails again)
    assert main(["--config", str(cfg), "--store", str(path), "--workers", "1", "--quiet"]) == 0
    assert "2 already done, 0 to run" in capsys.readouterr().out
    assert main(["--config", str(cfg), "--store", str(path), "--workers", "1", "--quiet",
                 "--retry-failed"]) == 0
    assert "1 already done, 1 to run" in capsys.readouterr().out


def test_store_made_with_another_config_is_refused(tiny_store, tmp_path, capsys):
    cfg = _config(tmp_path, "other", seed=1)
    assert main(["--config", str(cfg), "--store", str(tiny_store)]) == 2
    err = capsys.readouterr().err
    assert "different generator config" in err and "seed" in err


def test_store_made_with_the_old_stepping_is_refused_with_fewer_trials(tiny_store, tmp_path,
                                                                      capsys):
    d = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    cfg = _config(tmp_path, "fewer", solver={**d["solver"], "fewer_trials": True})
    assert main(["--config", str(cfg), "--store", str(tiny_store)]) == 2
    err = capsys.readouterr().err
    assert "different generator config" in err and "solver.fewer_trials" in err


def test_resume_after_kill_equals_uninterrupted_run(tiny_store, tmp_path):
    path = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "packtwin", "generate", "--preset", "tiny", "--store", str(path),
           "--workers", "1", "--quiet"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("scenario ") and "written" in line:
                os.killpg(proc.pid, signal.SIGKILL)  # a real, unclean kill
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    status = xr.open_zarr(path, consolidated=False)["status"].values
    assert np.isfinite(status).sum() == 1  # exactly one scenario was finished before the kill
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1 already done, 1 to run" in out.stdout
    assert out.stdout.count(" written: ") == 1  # the finished scenario was not redone
    a = xr.open_zarr(path, consolidated=False).load()
    b = xr.open_zarr(tiny_store, consolidated=False).load()
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values.astype(float), b[name].values.astype(float),
                                   rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=name)


def test_dask_executor_writes_the_same_store(tiny_store, tmp_path):
    pytest.importorskip("distributed")
    path = tmp_path / "dask.zarr"
    assert main(["--preset", "tiny", "--store", str(path), "--workers", "2", "--executor", "dask",
                 "--quiet"]) == 0
    a = xr.open_zarr(path, consolidated=False).load()
    b = xr.open_zarr(tiny_store, consolidated=False).load()
    for name in ("voltage", "c_s_n", "current", "capacity", "status"):
        np.testing.assert_allclose(a[name].values.astype(float), b[name].values.astype(float),
                                   rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=name)
