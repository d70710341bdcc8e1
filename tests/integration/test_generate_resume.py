"""A scenario stopped mid-life resumes after its last checkpointed cycle (slow: real PyBaMM packs).

Stored values are compared EXACTLY with an uninterrupted run: the resumed cells start from the
same float64 PyBaMM state vectors and the stepper from the same adaptive state, so the same
floating-point operations run (a tolerance would hide a state that was not restored)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from packtwin import schema
from packtwin.data import store
from packtwin.sim import checkpoint
from packtwin.sim import scenario as scenario_mod
from packtwin.sim.cell import CURRENT, RAMP_START, SLOPE, CellModel, get_model
from packtwin.sim.generate import PRESET_DIR, draw_cells, parse, run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Killed(BaseException):
    """Stands for a kill: not an Exception, so no scenario records it as a failure."""


def _config(tmp_path: Path, name: str, temperatures=(25.0, 45.0)) -> Path:
    """The tiny preset's 1s2p pack (coarse mesh, coupling steps up to 16 periods), 3 cycles at
    25 and 45 degC."""
    d = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    d.update(n_cycles=3, snapshot_every=2, scenarios=[
        {"ambient_temperature": t, "charge_c_rate": 2.0, "discharge_c_rate": 2.0,
         "protocol": "cccv"} for t in temperatures])
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _solves(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for ln in lines for m in [re.search(r"(\d+) cell solves", ln)] if m]


@pytest.fixture
def count_solves(monkeypatch):
    """Every cell solve of this process, counted."""
    calls = {"n": 0}
    step = CellModel.step

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(CellModel, "step", counted)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its store, config file and cell solves."""
    tmp = tmp_path_factory.mktemp("resume")
    cfg_file = _config(tmp, "three")
    cfg, _ = parse(["--config", str(cfg_file)])
    lines = []
    counts = run(cfg, tmp / "ref.zarr", workers=1, quiet=True, log=lines.append)
    assert counts["ok"] == 2, lines
    return {"store": tmp / "ref.zarr", "config": cfg_file, "solves": sum(_solves(lines))}


def _assert_same_store(a: Path, b: Path) -> None:
    x = xr.open_zarr(a, consolidated=False).load()
    y = xr.open_zarr(b, consolidated=False).load()
    assert set(x.data_vars) == set(y.data_vars)
    for name in x.data_vars:
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


def test_run_stopped_after_a_cycle_resumes_there_with_identical_values(
        reference, tmp_path, monkeypatch, count_solves):
    cfg, _ = parse(["--config", str(reference["config"])])
    path = tmp_path / "stopped.zarr"
    seen = []

    def stop_after_first(s, cycle):
        seen.append((s, cycle))
        if cycle == 1:
            raise Killed

    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", stop_after_first)
    with pytest.raises(Killed):
        run(cfg, path, workers=1, quiet=True, log=lambda *a: None)
    solves_before = count_solves["n"]
    ds = xr.open_zarr(path, consolidated=False).load()
    assert np.isnan(ds["status"].values).all()  # not finished: pending for the next run
    assert np.isfinite(ds["capacity"].values[0, :, 0]).all()  # cycle 1's rows are in the store
    assert np.isnan(ds["capacity"].values[0, :, 1:]).all()
    assert checkpoint.load(path, 0)["cycle"] == 1

    lines = []
    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", lambda s, c: seen.append((s, c)))
    counts = run(cfg, path, workers=1, quiet=True, log=lines.append)
    assert counts["ok"] == 2 and counts["cell_cycles"] == (2 + 3) * 2  # cycles computed here
    assert any("scenario 0 resumes after cycle 1 of 3" in ln for ln in lines), lines
    assert seen == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]  # (0, 1) not started again
    # the two runs together solved exactly what the uninterrupted one solved
    assert count_solves["n"] == reference["solves"]
    assert solves_before + sum(_solves(lines)) == reference["solves"]
    _assert_same_store(path, reference["store"])
    assert not list((path / checkpoint.GROUP).glob("*.npz"))  # the status is the record now


def test_kill_9_of_two_workers_mid_life_then_rerun_resumes_with_identical_values(reference,
                                                                                 tmp_path):
    """Two pool workers checkpoint their scenarios into one store; the whole process group is
    killed once both have a checkpoint."""
    path = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "packtwin", "generate", "--config", str(reference["config"]),
           "--store", str(path), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    files = [checkpoint.file_for(path, s) for s in (0, 1)]
    try:
        deadline = time.time() + 600
        while not all(f.exists() for f in files) and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # a real, unclean kill, soon after a cycle
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    ds = xr.open_zarr(path, consolidated=False)
    resumed = {}
    for s in (0, 1):
        saved = checkpoint.load(path, s)
        if saved is None:  # finished just before the kill
            assert ds["status"].values[s] == schema.STATUS_OK
            continue
        k = resumed[s] = saved["cycle"]
        assert np.isnan(ds["status"].values[s]) and 1 <= k <= 3
        capacity = ds["capacity"].values[s]
        assert np.isfinite(capacity[:, :k]).all() and np.isnan(capacity[:, k:]).all()
    assert resumed and any(k < 3 for k in resumed.values())  # killed mid-life

    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    for s, k in resumed.items():
        assert f"scenario {s} resumes after cycle {k} of 3" in out.stdout, out.stdout
    _assert_same_store(path, reference["store"])


def test_solve_failing_mid_life_keeps_earlier_cycles_and_names_cell_and_cycle(
        reference, tmp_path, monkeypatch):
    """Cell 1 of the 25 degC scenario cannot be solved from cycle 2 on; the 45 degC one goes on."""
    cfg, _ = parse(["--config", str(reference["config"])])
    cells, nominal = draw_cells(cfg)
    varied = tuple(p.key for p in cfg.variation.parameters)
    radii = (cells[1].get("neg_radius", nominal["neg_radius"]),
             cells[1].get("pos_radius", nominal["pos_radius"]))
    cell_1 = {k: v for k, v in get_model(cfg.model, varied, radii).inputs(
        cells[1], nominal, 0.0, 298.15).items() if k not in (CURRENT, SLOPE, RAMP_START)}
    broken = {"on": False}
    step = CellModel.step

    def failing(self, old, inputs, dt, n_samples=1):
        if broken["on"] and all(inputs[k] == v for k, v in cell_1.items()):
            import pybamm

            raise pybamm.SolverError("injected: IDA_CONV_FAIL")
        return step(self, old, inputs, dt, n_samples)

    def break_after_first(s, cycle):
        broken["on"] = broken["on"] or (s, cycle) == (0, 1)

    monkeypatch.setattr(CellModel, "step", failing)
    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", break_after_first)
    path = tmp_path / "failing.zarr"
    counts = run(cfg, path, workers=1, quiet=True, log=lambda *a: None)
    assert (counts["partial"], counts["ok"]) == (1, 1)

    ds = store.open_store(path).load()
    np.testing.assert_array_equal(ds["status"].values, [schema.STATUS_PARTIAL, schema.STATUS_OK])
    np.testing.assert_array_equal(ds["cycles_done"].values, [1, 3])
    failure = store.json_attr(ds, "failures")["0"]
    assert {k: failure[k] for k in ("cycle", "cell", "phase")} == {
        "cycle": 2, "cell": 1, "phase": "discharge"}
    assert "injected: IDA_CONV_FAIL" in failure["reason"] and "cell 1 " in failure["reason"]
    assert "0" in store.json_attr(ds, "messages") and "1" not in store.json_attr(ds, "failures")
    assert "stopped in cycle 2 of 3 (discharge, cell 1)" in store.json_attr(ds, "messages")["0"]
    # cycle 1 as the uninterrupted run has it; the unfinished cycle 2 and cycle 3 are blank;
    # the other scenario is the uninterrupted run's
    ref = xr.open_zarr(reference["store"], consolidated=False).load()
    for name in ("capacity", "lli", "sei_thickness_end", "temperature_max"):
        np.testing.assert_array_equal(ds[name].values[0, :, 0], ref[name].values[0, :, 0])
        assert np.isnan(ds[name].values[0, :, 1:]).all()
    for name in ds.data_vars:
        np.testing.assert_array_equal(ds[name].values[1], ref[name].values[1], err_msg=name)
    assert not list((path / checkpoint.GROUP).glob("*.npz"))
