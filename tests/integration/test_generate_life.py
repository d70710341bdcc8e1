"""Multi-cycle packs through ``packtwin generate`` (slow: real PyBaMM): check-up cycles, every
cycle's V/I/T, the twin over life on the store, and a run on a real Dask scheduler with two worker
processes on the loopback address (not a LocalCluster)."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.data import store
from packtwin.physics.life_pack import track_pack
from packtwin.physics.life_state import life_model
from packtwin.sim.config import Scenario
from packtwin.sim.generate import parse, run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _tiny(**changes):
    """The tiny preset (1s2p, coarse mesh) with changes; coupling every period, because longer
    coupling steps fail here at the end of the first discharge (a parallel group's split does
    not converge; see configs/generate/life-demo.yaml)."""
    cfg, _ = parse(["--preset", "tiny", "--solver.max_step_periods", "1"])
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def life_store(tmp_path_factory):
    """The tiny pack at 10 and 45 C, 5 cycles, a C/2 check-up every 3rd with a 1 s 1C pulse
    half-way, every cycle logged."""
    cfg = _tiny(n_cycles=5, snapshot_every=2, cycle_series=True,
                scenarios=[Scenario(t, 1.0, 1.0, "cccv") for t in (10.0, 45.0)])
    cfg.protocol.checkup_every, cfg.protocol.checkup_c_rate = 3, 0.5
    cfg.protocol.checkup_pulse_c_rate = 1.0
    path = tmp_path_factory.mktemp("life") / "life.zarr"
    assert run(cfg, path, workers=2, quiet=True)["ok"] == 2
    return path


def test_checkups_flagged_and_every_cycle_logged(life_store):
    ds = store.open_store(life_store).load()
    assert (ds["status"].values == 1).all()
    np.testing.assert_array_equal(ds["checkup"].values, np.broadcast_to([0, 0, 1, 0, 0], (2, 2, 5)))
    # at 10 C the slow capacity test delivers more than the 1C cycles around it (at 45 C 1C
    # already delivers nearly all: within 0.1 %)
    cap = ds["capacity"].values
    assert (cap[0, :, 2] > cap[0, :, 1]).all() and (cap[0, :, 2] > cap[0, :, 3]).all()
    # every cycle's log: finite inside the cycle, NaN in its padding, and equal to the full
    # fields where the cycle is a snapshot
    v = ds["life_voltage"].values
    assert np.isfinite(v[..., 0]).all()
    for k, cyc in enumerate(ds["snapshot_cycle"].values):
        valid = ds["valid"].values[:, k].astype(bool)  # (scenario, time)
        for s in range(2):
            np.testing.assert_allclose(v[s, :, cyc - 1][:, valid[s]],
                                       ds["voltage"].values[s, :, k][:, valid[s]], rtol=1e-6)
            assert np.isnan(v[s, :, cyc - 1][:, ~valid[s]]).all()
    # the logged cell currents count the stored discharge capacity
    from packtwin.physics.life_pack import measured_capacity

    q = measured_capacity(ds["life_current"].values, ds.attrs["period_s"])
    np.testing.assert_allclose(q, cap, rtol=2e-3)


def test_check_up_pulse_read_inside_one_period(life_store):
    """The pulse's resistance is stored on check-ups only; the period holding it is one sample
    on the grid (its current the period's mean: the counted capacity is checked above), and a
    hot cell reads a lower resistance (faster kinetics and electrolyte)."""
    ds = store.open_store(life_store).load()
    r = ds["checkup_pulse_resistance"]
    assert r.attrs["units"] == "Ohm"
    ck = ds["checkup"].values == 1
    assert np.isfinite(r.values[ck]).all() and np.isnan(r.values[~ck]).all()
    assert ((r.values[ck] > 0.01) & (r.values[ck] < 0.06)).all()  # tens of mOhm: 5 mOhm contact + cell
    assert (r.values[1, :, 2] < r.values[0, :, 2]).all()
    # the period after the pulse period: back at C/2; the pulse period's mean current lies
    # between C/2 and 1C in proportion to the pulse's length (0.1 s of 60: a 0.17 % rise)
    from packtwin.sim import config as cfgmod
    from packtwin.sim.generate import parse

    cfg, _ = parse(["--preset", "tiny"])
    cfg = dataclasses.replace(cfg, protocol=dataclasses.replace(
        cfg.protocol, checkup_every=3, checkup_c_rate=0.5, checkup_pulse_c_rate=1.0))
    k = cfgmod.pulse_period(cfg) + 1  # sample index
    i = ds["life_current"].values[0, :, 2]
    pack = i[:, k].sum() / i[:, k + 1].sum()
    t_p = cfg.protocol.checkup_pulse_s
    assert pack == pytest.approx(1.0 + t_p / cfg.solver.period_s, rel=1e-5)


def test_a_pulse_the_cells_cannot_hold_is_recorded_not_fatal(tmp_path):
    """A 40C check-up pulse takes the cells past the cut-off at once: the scenario stops at
    that check-up (its earlier cycle kept, status partial) with the reason and phase named."""
    cfg = _tiny(n_cycles=3, snapshot_every=2, cycle_series=True,
                scenarios=[Scenario(25.0, 1.0, 1.0, "cccv")])
    cfg.protocol.checkup_every, cfg.protocol.checkup_c_rate = 2, 0.5
    cfg.protocol.checkup_pulse_c_rate = 40.0
    path = tmp_path / "pulse.zarr"
    summary = run(cfg, path, workers=1, quiet=True)
    assert summary["partial"] == 1
    ds = store.open_store(path).load()
    assert int(ds["cycles_done"].values[0]) == 1
    msg = json.loads(ds.attrs["messages"])["0"]
    assert "stopped in cycle 2 of 3 (check-up pulse)" in msg and "check-up pulse at 40.0C" in msg
    assert np.isfinite(ds["capacity"].values[0, :, 0]).all()


def test_twin_over_life_on_the_store_grows_faster_hot(life_store):
    ds = store.open_store(life_store).load()
    est = track_pack(ds, life_model())
    sei, truth = est["sei_thickness_est"].values, ds["sei_thickness_end"].values
    assert np.isfinite(sei).all()
    for cell in range(ds.sizes["cell"]):
        assert truth[1, cell, -1] - truth[1, cell, 0] > truth[0, cell, -1] - truth[0, cell, 0]
        assert sei[1, cell, -1] - sei[1, cell, 0] > 1.5 * (sei[0, cell, -1] - sei[0, cell, 0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1."""
    pytest.importorskip("distributed")
    dask = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = open(tmp_path / "dask.log", "w")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=log, stderr=log)]
    try:
        from distributed import Client

        for _ in range(2):
            procs.append(subprocess.Popen(
                [dask, "worker", addr, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--death-timeout", "60",
                 "--local-directory", str(tmp_path / "dask-worker")],
                env=env, stdout=log, stderr=log))
        with Client(addr, timeout=60) as client:
            client.wait_for_workers(2, timeout=90)
            hosts = [w["host"] for w in client.scheduler_info()["workers"].values()]
        assert hosts == ["127.0.0.1", "127.0.0.1"]
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def test_generate_on_a_dask_scheduler_with_two_worker_processes(dask_cluster, tmp_path):
    cfg = _tiny()
    path, ref = tmp_path / "dask.zarr", tmp_path / "local.zarr"
    assert run(cfg, path, executor="dask", scheduler=dask_cluster, quiet=True)["ok"] == 2
    # the same store made in this process: identical data
    assert run(cfg, ref, workers=1, quiet=True)["ok"] == 2
    ds, local = (xr.open_zarr(p, consolidated=False).load() for p in (path, ref))
    for name in ("capacity", "lli", "sei_thickness_end", "voltage", "current"):
        np.testing.assert_array_equal(ds[name].values, local[name].values, err_msg=name)


def test_life_evaluation_writes_estimates_beside_the_store(life_store, tmp_path, capsys):
    from packtwin.eval import life

    out, rep = tmp_path / "est.zarr", tmp_path / "life.json"
    assert life.main(["--store", str(life_store), "--out", str(out), "--report", str(rep),
                      "--calib-cells", "0", "--calib-cycles", "4"]) == 0
    est = xr.open_zarr(out, consolidated=False)
    ds = xr.open_zarr(life_store, consolidated=False)
    for name in ("sei_thickness_est", "lli_est", "capacity_est"):
        assert est[name].dims == ("scenario", "cell", "cycle")
        assert est[name].attrs["units"] == ds["sei_thickness_end" if name.startswith("sei")
                                              else "lli" if name.startswith("lli")
                                              else "capacity"].attrs["units"]
    assert set(json.loads(rep.read_text())["groups"]) == {"seen_cells", "unseen_cells",
                                                           "other_scenarios"}
    # the pack explorer opens the estimates beside the store and draws the twin over life
    from packtwin.app.layout import build_app

    ex = build_app(life_store, [out])
    assert not ex.sources.warnings, ex.sources.warnings
    assert ex.data.sel.variant == life.LIFE_VARIANT and ex.sei is not None
    twin = [el for el in ex.sei.dmap[()] if el.label == "twin over life"][0]
    np.testing.assert_allclose(twin.dimension_values(1),
                               est["sei_thickness_est"].isel(scenario=0, cell=0).values)
    # the truth store is an input: never an output
    assert life.main(["--store", str(life_store), "--out", str(life_store)]) == 2
    assert "destroy the input" in capsys.readouterr().err
