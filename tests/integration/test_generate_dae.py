"""The generator with ``solver.coupling: dae`` (the pack as one PyBaMM DAE), slow: real DFN packs.

Against the stepped pack coupled every 60 s (the reference of issue #10's split test), a stopped
run resumes with identical values, and a failing joint solve is recorded, not fatal."""

import numpy as np
import pytest
import xarray as xr
import yaml

from packtwin import schema
from packtwin.sim import checkpoint
from packtwin.sim import config as cfgmod
from packtwin.sim import scenario as scenario_mod
from packtwin.sim.generate import PRESET_DIR, draw_cells, parse, run

pytestmark = pytest.mark.slow


class Killed(BaseException):
    """Stands for a kill: not an Exception, so no scenario records it as a failure."""


def _scenario(cfg):
    cells, nominal = draw_cells(cfg)
    return scenario_mod.run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 0,
                                      "cell_values": cells, "nominal": nominal})


def test_dae_coupling_of_a_2p_group_equals_the_60s_coupling_reference():
    cfg = cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 1.0, 1.0, "cccv")], pack=cfgmod.PackConfig(1, 2),
        model=cfgmod.ModelConfig(var_pts={"x_n": 6, "x_s": 4, "x_p": 6, "r_n": 10, "r_p": 10},
                                 submesh={}, stored_r_points=None),
        protocol=cfgmod.ProtocolConfig(rest_s=300.0, cv_max_s=1200.0),
        solver=cfgmod.SolverConfig(max_step_periods=1), n_cycles=1, seed=3)
    ref = _scenario(cfg)
    cfg.solver.coupling = "dae"
    new = _scenario(cfg)
    for res in (ref, new):
        assert res["status"] == schema.STATUS_OK, res["message"]
    a, b = ref["snapshots"][0], new["snapshots"][0]
    n = int(a["valid"].sum())
    assert int(b["valid"].sum()) == n  # every phase ends in the same period
    i_c = 1.0 * 5.0 * 2  # 1C of the group [A]
    ia, ib = a["fields"]["current_end"][:, :n], b["fields"]["current_end"][:, :n]
    busy = np.abs(ia.sum(0)) >= 0.2 * i_c
    d_share = np.abs(ib[:, busy] / ib[:, busy].sum(0) - ia[:, busy] / ia[:, busy].sum(0)).max()
    assert d_share <= 0.01, f"split differs by {d_share:.2%} of the group current"
    v = b["fields"]["voltage"][:, :n]
    assert np.ptp(v, axis=0).max() < 1e-5  # one terminal voltage: the circuit is exact
    dv = np.abs(v - a["fields"]["voltage"][:, :n]).max()
    assert dv <= 2 * cfg.solver.voltage_tol, f"voltages differ by {dv * 1e3:.2f} mV"
    # period currents are the mean over each period: the charge of the cycle is the reference's
    np.testing.assert_allclose(new["summary"]["capacity"], ref["summary"]["capacity"], rtol=2e-3)
    np.testing.assert_allclose(new["summary"]["sei_thickness_end"],
                               ref["summary"]["sei_thickness_end"], rtol=1e-3)
    assert new["steps"] < 0.2 * ref["steps"]  # phases and pulse edges, not periods


def _config(tmp_path, name):
    d = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    d.update(n_cycles=3, snapshot_every=2)
    d["solver"] = {**d.get("solver", {}), "coupling": "dae"}
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_dae_run_stopped_after_a_cycle_resumes_there_with_identical_values(tmp_path, monkeypatch):
    cfg_file = _config(tmp_path, "dae")
    cfg, _ = parse(["--config", str(cfg_file)])
    assert cfg.solver.coupling == "dae"
    counts = run(cfg, tmp_path / "ref.zarr", workers=1, quiet=True, log=lambda *a: None)
    assert counts["ok"] == 2  # cccv and pulse

    def stop_after_first(s, cycle):
        if cycle == 1:
            raise Killed

    path = tmp_path / "stopped.zarr"
    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", stop_after_first)
    with pytest.raises(Killed):
        run(cfg, path, workers=1, quiet=True, log=lambda *a: None)
    assert checkpoint.load(path, 0)["cycle"] == 1
    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", None)
    lines = []
    counts = run(cfg, path, workers=1, quiet=True, log=lines.append)
    assert counts["ok"] == 2
    assert any("scenario 0 resumes after cycle 1 of 3" in ln for ln in lines), lines
    x = xr.open_zarr(path, consolidated=False).load()
    y = xr.open_zarr(tmp_path / "ref.zarr", consolidated=False).load()
    for name in x.data_vars:
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)


def test_a_failing_joint_solve_keeps_the_cycles_before_it_and_names_the_phase(monkeypatch):
    import pybamm

    from packtwin.sim import pack_dae

    cfg = cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 2.0, 2.0, "cccv")], pack=cfgmod.PackConfig(1, 2),
        model=cfgmod.ModelConfig(var_pts={"x_n": 4, "x_s": 3, "x_p": 4, "r_n": 5, "r_p": 5},
                                 submesh={}, stored_r_points=None),
        protocol=cfgmod.ProtocolConfig(rest_s=120.0, cv_max_s=600.0),
        solver=cfgmod.SolverConfig(coupling="dae"), n_cycles=2, seed=0)
    done = []
    phase = pack_dae.PackDAE.phase

    def failing(self, inputs, duration, period):
        if done and inputs[pack_dae.PACK_CURRENT] < 0:  # the CC charge of cycle 2
            raise pybamm.SolverError("IDA_CONV_FAIL: convergence test failures with inputs "
                                     "{'a': 1.0}")
        return phase(self, inputs, duration, period)

    monkeypatch.setattr(pack_dae.PackDAE, "phase", failing)
    monkeypatch.setattr(scenario_mod, "CYCLE_HOOK", lambda s, c: done.append(c))
    res = _scenario(cfg)
    assert res["status"] == schema.STATUS_PARTIAL and res["cycles_done"] == 1
    assert np.isfinite(res["summary"]["capacity"][:, 0]).all()  # cycle 1 kept
    assert np.isnan(res["summary"]["capacity"][:, 1]).all()
    assert res["failure"]["cycle"] == 2 and res["failure"]["phase"] == "CC charge"
    assert "the pack DAE failed (current=-20" in res["message"]
    assert "IDA_CONV_FAIL" in res["message"] and "with inputs" not in res["message"]
