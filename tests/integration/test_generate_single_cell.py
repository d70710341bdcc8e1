"""A 1s1p pack equals a plain single-cell PyBaMM run of the same constant-current discharge."""

import numpy as np
import pytest

from packtwin import schema
from packtwin.sim import config as cfgmod
from packtwin.sim.generate import draw_cells

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fewer_trials, coupling",
                         [(False, "stepped"), (True, "stepped"), (False, "dae")])
def test_one_cell_pack_equals_pybamm_experiment(fewer_trials, coupling):
    import pybamm

    from packtwin.sim.cell import nominal_parameter_values
    from packtwin.sim.scenario import run_scenario

    cfg = cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 1.0, 1.0, "cccv")],
        pack=cfgmod.PackConfig(1, 1),
        # uniform mesh stored on its own nodes: compared node by node with a plain PyBaMM run
        model=cfgmod.ModelConfig(var_pts={"x_n": 6, "x_s": 4, "x_p": 6, "r_n": 8, "r_p": 8},
                                 submesh={}, stored_r_points=None),
        variation=cfgmod.VariationConfig(parameters=[
            cfgmod.VariedParameter("neg_c_init", 0.02), cfgmod.VariedParameter("contact_resistance", 0.2),
            cfgmod.VariedParameter("neg_am_fraction", 0.02)]),
        protocol=cfgmod.ProtocolConfig(rest_s=60.0, cv_max_s=60.0),
        solver=cfgmod.SolverConfig(fewer_trials=fewer_trials, coupling=coupling), n_cycles=1,
        seed=5)
    cells, nominal = draw_cells(cfg)
    res = run_scenario({"config": cfgmod.to_dict(cfg), "scenario": 0, "cell_values": cells,
                        "nominal": nominal})
    assert res["status"] == schema.STATUS_OK, res["message"]
    snap = res["snapshots"][0]
    i_pack = snap["pack"]["pack_current"]
    i_set = 1.0 * 5.0
    # discharge samples at the set current (the last discharge step is cut back to hit 2.5 V)
    n = int(np.argmax(~np.isclose(i_pack[1:], i_set))) or 1
    assert n > 40  # ~55 min of 1C discharge
    period = cfg.solver.period_s

    pv = nominal_parameter_values(cfg.model)
    pv.update({schema.PARAMETERS[k].pybamm: v for k, v in cells[0].items()})
    model = pybamm.lithium_ion.DFN(dict(cfg.model.options))
    exp = pybamm.Experiment(["Rest for 60 seconds",
                             f"Discharge at {i_set} A for {n * period} seconds"],
                            period=f"{period} seconds")
    sim = pybamm.Simulation(model, parameter_values=pv, experiment=exp,
                            var_pts=dict(cfg.model.var_pts), solver=pybamm.IDAKLUSolver())
    sol = sim.solve()
    # our sample k of cycle 1 is at 60 s (initial rest) + k * period
    t = period + period * np.arange(0, n + 1)
    v_ref = sol["Voltage [V]"](t=t)
    k_end = int(np.argmin(np.abs(sol.t - t[-1])))
    assert abs(sol.t[k_end] - t[-1]) < 1e-6
    c_ref = sol["Negative particle concentration [mol.m-3]"].entries[:, :, k_end]  # (r, x)
    v = snap["fields"]["voltage"][0, : n + 1]
    dv = np.abs(v - v_ref).max()
    # Both integrate the same DAE with IDAKLU (rtol 1e-6); the pack restarts the integrator every
    # step, which moves the answer by the integration tolerance, measured 0.007 mV and 2e-6 c_max here.
    assert dv < 1e-4, f"max voltage difference {dv * 1e3:.3f} mV"
    c = snap["fields"]["c_s_n"][0, n]  # (x, r)
    dc = np.abs(c - np.asarray(c_ref).T).max() / 33133.0
    assert dc < 1e-4, f"max c_s_n difference {dc:.2e} of c_max"
    # The capacity is the charge to the cut-off itself, as PyBaMM's event finds it, not to the
    # period grid: within 0.5 % of one period's charge (holding 2.5 V at a cut-back current for
    # the rest of the last period, as stores made before did, adds up to ~half a period's).
    exp = pybamm.Experiment(["Rest for 60 seconds", f"Discharge at {i_set} A until 2.5 V"])
    sim = pybamm.Simulation(model, parameter_values=pv, experiment=exp,
                            var_pts=dict(cfg.model.var_pts), solver=pybamm.IDAKLUSolver())
    q_ref = float(sim.solve()["Discharge capacity [A.h]"].entries[-1])
    dq = abs(float(res["summary"]["capacity"][0, 0]) - q_ref)
    assert dq <= 0.005 * i_set * period / 3600.0, f"capacity differs by {dq:.2e} A.h"
    print(f"1s1p vs PyBaMM: max |dV| = {dv * 1e3:.4f} mV, max |dc_s_n| = {dc:.2e} c_max over {n} "
          f"samples, capacity {dq:.1e} A.h")
