"""The pack as one DAE (packtwin.sim.pack_dae): a one-cell pack is the cell's own uninterrupted
solve, the circuit equations hold at every sample, and a parallel group splits its current as the
stepped pack's 60 s coupling reference does."""

import numpy as np
import pytest

from packtwin import schema

pytest.importorskip("pybamm")

MESH = {"x_n": 4, "x_s": 3, "x_p": 4, "r_n": 6, "r_p": 6}


def _config(n_series, n_parallel, seed=3):
    from packtwin.sim import config as cfgmod

    return cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 1.0, 1.0, "cccv")],
        pack=cfgmod.PackConfig(n_series, n_parallel),
        model=cfgmod.ModelConfig(var_pts=dict(MESH), submesh={}, stored_r_points=None),
        protocol=cfgmod.ProtocolConfig(rest_s=300.0, cv_max_s=1200.0),
        solver=cfgmod.SolverConfig(max_step_periods=1), n_cycles=1, seed=seed)


def _pack(cfg):
    from packtwin.sim.cell import get_model
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.pack_dae import PackDAE

    cells, nominal = draw_cells(cfg)
    varied = tuple(p.key for p in cfg.variation.parameters)
    models = [get_model(cfg.model, varied, (c.get("neg_radius", nominal["neg_radius"]),
                                            c.get("pos_radius", nominal["pos_radius"])))
              for c in cells]
    ambient = cfg.scenarios[0].ambient_temperature + 273.15
    inputs = [m.inputs(c, nominal, 0.0, ambient) for m, c in zip(models, cells)]
    pack = PackDAE(models, cfg.pack.n_series, cfg.pack.n_parallel, cell_inputs=inputs)
    return pack, models, inputs, cells, nominal


def test_a_one_cell_pack_is_the_cells_own_uninterrupted_solve():
    from packtwin.sim.cell import CURRENT

    pack, models, inputs, _, _ = _pack(_config(1, 1))
    res = pack.phase(pack.inputs(inputs, current=5.0), 900.0, 60.0)
    assert res.termination == "final time"
    np.testing.assert_allclose(res.current[:, 0], 5.0, rtol=0, atol=1e-9)
    cell = models[0]
    ins = dict(inputs[0])
    ins[CURRENT] = 5.0
    sol = cell.step(None, ins, 900.0, 15, lean=False)  # one solve, sampled every 60 s
    v_cell = np.array([float(v["voltage"][0]) for v in cell.read_samples(sol, ins, 16)])
    assert np.abs(res.voltage[:, 0] - v_cell).max() < 1e-4  # 0.1 mV
    end = pack.read(0, res.t[-1], res.y[:, -1], inputs[0], 5.0)
    ref = cell.read_samples(sol, ins, 1)[0]
    np.testing.assert_allclose(end["c_s_n"], ref["c_s_n"], rtol=1e-5)
    np.testing.assert_allclose(end["sei_thickness_avg"], ref["sei_thickness_avg"], rtol=1e-5)


def _phases(pack, inputs, p, q, period):
    """Discharge to the first cell at v_min, CC charge to the first at v_max, CV hold of that
    cell's group until the cut-off current (or p.cv_max_s), each one PackDAE phase."""
    dis = pack.phase(pack.inputs(inputs, current=q, v_min=p.v_min, stop=("v_min",)),
                     2 * 3600.0, period)
    cc = pack.phase(pack.inputs(inputs, current=-q, v_max=p.v_max, stop=("v_max",)),
                    2 * 3600.0, period)
    group = int(np.argmax(cc.voltage[-1])) // pack.np_
    cv = pack.phase(pack.inputs(inputs, hold_voltage=p.v_max, hold_group=group,
                                i_cut=p.cv_cutoff_c * q, stop=("i_cut",)), p.cv_max_s, period)
    return {"discharge": dis, "CC charge": cc, "CV hold": cv}


def test_circuit_holds_at_every_sample_and_phases_end_at_their_limits():
    from packtwin.sim import pack_dae

    cfg = _config(2, 2)
    pack, models, inputs, _, _ = _pack(cfg)
    # every cell input is the cell's own (renamed), besides the pack's control inputs
    control = {pack_dae.PACK_CURRENT, pack_dae.HOLD_VOLTAGE, pack_dae.MODE, pack_dae.V_MIN,
               pack_dae.V_MAX, pack_dae.I_CUT, pack_dae.ON_V_MIN, pack_dae.ON_V_MAX,
               pack_dae.ON_I_CUT, "Hold weight [group 0]", "Hold weight [group 1]"}
    names = {p.name for p in pack.model.input_parameters}
    assert names - control and all(n in control or "[cell " in n for n in names), names
    q = models[0].capacity_ah * 2
    p = cfg.protocol
    phases = _phases(pack, inputs, p, q, 60.0)
    for name, res in phases.items():
        for g in range(2):
            group = res.current[:, 2 * g:2 * g + 2]
            np.testing.assert_allclose(group.sum(axis=1), res.pack_current, atol=1e-8)
            assert np.abs(np.diff(res.voltage[:, 2 * g:2 * g + 2], axis=1)).max() < 1e-6, name
    dis = phases["discharge"]
    assert dis.termination.startswith("lower cut-off")
    assert abs(dis.voltage[-1].min() - p.v_min) < 1e-4
    np.testing.assert_allclose(dis.pack_current, q, rtol=1e-9)
    cc = phases["CC charge"]
    assert cc.termination.startswith("upper cut-off")
    assert abs(cc.voltage[-1].max() - p.v_max) < 1e-4
    cv = phases["CV hold"]
    assert np.abs(cv.voltage.max(axis=1) - p.v_max).max() < 1e-4  # the hold group on v_max
    assert np.all(np.diff(np.abs(cv.pack_current)) < 1e-9)  # the current decays
    assert (cv.termination == "CV cut-off") == (abs(cv.pack_current[-1]) <= 0.05 * q + 1e-6)


def test_a_parallel_group_splits_like_the_60s_coupling_reference():
    from packtwin.sim import config as cfgmod
    from packtwin.sim.scenario import run_scenario

    cfg = _config(1, 2)
    pack, models, inputs, cells, nominal = _pack(cfg)
    ref = run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 0, "cell_values": cells,
                        "nominal": nominal})
    assert ref["status"] == schema.STATUS_OK, ref["message"]
    # the stepped reference's cycle starts after one period of rest
    dt = cfg.solver.period_s
    pack.phase(pack.inputs(inputs, current=0.0), dt, dt)
    q = models[0].capacity_ah * 2
    dis = _phases(pack, inputs, cfg.protocol, q, dt)["discharge"]
    k = len(dis.t) - 2  # samples before the period of the cut-off
    f = ref["snapshots"][0]["fields"]
    i_ref = f["current_end"][:, 1:k + 1].T  # the current at each sample's instant
    i_dae = dis.current[1:k + 1]
    share = np.abs(i_dae / i_dae.sum(1, keepdims=True) - i_ref / i_ref.sum(1, keepdims=True))
    assert share.max() <= 0.01, f"split differs by {share.max():.2%} of the group current"
    dv = np.abs(dis.voltage[1:k + 1] - f["voltage"][:, 1:k + 1].T).max()
    assert dv <= 2 * cfg.solver.voltage_tol, f"voltages differ by {dv * 1e3:.2f} mV"
    cap = np.trapezoid(dis.current, dis.t, axis=0) / 3600.0
    np.testing.assert_allclose(cap, ref["summary"]["capacity"][:, 0], rtol=5e-3)


def test_a_pack_needs_one_model_per_cell(tiny_cell):
    from packtwin.sim.pack_dae import PackDAE

    with pytest.raises(ValueError, match="2s2p pack needs 4 cell models, found 1"):
        PackDAE([tiny_cell], 2, 2)


def test_a_failing_joint_solve_names_the_cell_that_fails_alone():
    from packtwin.sim.pack_dae import DAEStepper, PackDAEError

    pack, models, inputs, _, _ = _pack(_config(1, 2))
    # cell 1 diffuses backwards: its own equations, not the circuit, make the joint solve fail
    inputs[1]["neg_diffusivity multiplier"] = -1.0
    pack.set_state([np.asarray(m.model.concatenated_initial_conditions.evaluate(
        inputs=dict(ci))).ravel() for m, ci in zip(models, inputs)])
    stepper = DAEStepper(pack, inputs)
    t0, y0 = pack.end()
    with pytest.raises(PackDAEError, match=r"cell 1 \(series group 0, parallel position 1\) "
                                           r"fails alone") as err:
        stepper.advance(60.0, 30, 5.0, 2.5, 4.2, then=(0.0, None))
    assert err.value.cell == 1
    assert "with inputs" not in str(err.value)  # PyBaMM's list of every input is cut
    t1, y1 = pack.end()  # the diagnosis re-ran the phase: the state is back at its start
    assert t1 == t0 and np.array_equal(y1, y0)


def test_a_joint_failure_no_single_cell_causes_names_none(monkeypatch):
    import pybamm

    from packtwin.sim import pack_dae

    pack, models, inputs, _, _ = _pack(_config(1, 2))
    stepper = pack_dae.DAEStepper(pack, inputs)
    phase = pack_dae.PackDAE.phase

    def failing(self, ins, duration, period):  # the joint system fails after 2 periods
        if self.end()[0] >= 120.0 - 1e-6 or duration > 120.0:
            raise pybamm.SolverError("IDA_CONV_FAIL: convergence test failures")
        return phase(self, ins, duration, period)

    monkeypatch.setattr(pack_dae.PackDAE, "phase", failing)
    with pytest.raises(pack_dae.PackDAEError, match="every cell steps alone at its current from "
                                                    "120 s into the phase") as err:
        stepper.advance(60.0, 10, 5.0, 2.5, 4.2, then=(0.0, None))
    assert err.value.cell is None
