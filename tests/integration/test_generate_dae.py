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


def _1s2p(c_rate, mesh, rest_s, cv_max_s, n_cycles, seed, **solver):
    """A 1s2p pack at 25 C, one CCCV scenario at ``c_rate``, mesh (x_n, x_s, x_p, r)."""
    xn, xs, xp, r = mesh
    return cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, c_rate, c_rate, "cccv")], pack=cfgmod.PackConfig(1, 2),
        model=cfgmod.ModelConfig(var_pts={"x_n": xn, "x_s": xs, "x_p": xp, "r_n": r, "r_p": r},
                                 submesh={}, stored_r_points=None),
        protocol=cfgmod.ProtocolConfig(rest_s=rest_s, cv_max_s=cv_max_s),
        solver=cfgmod.SolverConfig(**solver), n_cycles=n_cycles, seed=seed)


def test_dae_coupling_of_a_2p_group_equals_the_60s_coupling_reference():
    cfg = _1s2p(1.0, (6, 4, 6, 10), 300.0, 1200.0, n_cycles=1, seed=3, max_step_periods=1)
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

    cfg = _1s2p(2.0, (4, 3, 4, 5), 120.0, 600.0, n_cycles=2, seed=0, coupling="dae")
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
    # the diagnosis re-ran the phase's periods: every cell steps alone, so no cell is named
    assert res["failure"]["cell"] is None and "every cell steps alone" in res["message"]


def test_a_cell_that_fails_in_the_joint_solve_is_named_in_the_failure():
    cfg = _1s2p(1.0, (4, 3, 4, 5), 120.0, 600.0, n_cycles=1, seed=0, coupling="dae")
    cells, nominal = draw_cells(cfg)
    cells[1]["neg_diffusivity"] = -cells[1]["neg_diffusivity"]  # cell 1 diffuses backwards
    res = scenario_mod.run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 0,
                                     "cell_values": cells, "nominal": nominal})
    assert res["status"] == schema.STATUS_FAILED and res["cycles_done"] == 0
    assert res["failure"]["cell"] == 1, res["message"]
    assert "cell 1 (series group 0, parallel position 1) fails alone" in res["message"]
