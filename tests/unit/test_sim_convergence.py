"""The generator's default mesh is converged: a short cold pulse against a mesh twice as fine.

The full study (every candidate mesh, whole cycles of the presets' hardest scenarios) is
``scripts/bench_generate.py --mesh-study-only``; this is its quick guard against a coarsened default.
"""

import numpy as np
import pytest

from packtwin.sim import config as cfgmod

pybamm = pytest.importorskip("pybamm")

# Voltage converged on the presets' hardest conditions (reports/bench_generate.json, "mesh_study").
CONVERGED = {"x_n": 48, "x_s": 8, "x_p": 16, "r_n": 30, "r_p": 30}
OLD_MESH = {"x_n": 8, "x_s": 4, "x_p": 8, "r_n": 10, "r_p": 10}
PREVIOUS_X = {"x_n": 16, "x_s": 8, "x_p": 16}  # the default before the thickness study
# The opening of the presets' coldest pulse scenario (-10 C, 1C pulse pattern) from full charge:
# 2C and regenerative -0.5C pulses on a cold cell, 10 min of 60 s steps.
COLD_PULSE_STEPS = 10
# Its first 3 steps end with the 2C pulse, where the through-thickness error of this opening
# peaks (0.46 mV at 48/8/16, 1.2 mV at 32/8/16, 6.4 mV at 16/8/16 against twice the x points).
THICKNESS_STEPS = 3


def test_default_mesh_is_at_least_the_converged_one():
    mc = cfgmod.ModelConfig()
    for key, n in CONVERGED.items():
        assert mc.var_pts[key] >= n, f"var_pts[{key!r}] = {mc.var_pts[key]} < converged {n}"
    for key in ("r_n", "r_p"):  # the radial count is converged for the surface-refined mesh only
        assert mc.submesh[key]["type"] == "exponential" and mc.submesh[key]["side"] == "right"
    # the x counts are converged for uniform x meshes (the study's exponential ones were worse)
    assert not [k for k in mc.submesh if k.startswith("x_")], mc.submesh


def test_stored_grid_validation_names_the_field():
    cfg = cfgmod.GenerateConfig()
    cfg.model.stored_r_points = cfg.model.var_pts["r_n"] + 1
    with pytest.raises(cfgmod.ConfigError, match="stored_r_points"):
        cfgmod.validate(cfg)


@pytest.fixture(scope="module")
def cold_pulse():
    from packtwin.sim.convergence import _discharge

    cfg = cfgmod.GenerateConfig(scenarios=[cfgmod.Scenario(-10.0, 1.0, 1.0, "pulse")])
    return cfg, np.asarray(_discharge(cfg, cfg.scenarios[0], 5.0, COLD_PULSE_STEPS))


def _errors(model_cfg, keys, cold_pulse, steps: int = COLD_PULSE_STEPS) -> dict:
    from packtwin.sim.convergence import errors, refined, trace

    cfg, currents = cold_pulse
    coarse = trace(model_cfg, currents[:steps], cfg.solver.period_s, -10.0)
    fine = trace(refined(model_cfg, keys), currents[:steps], cfg.solver.period_s, -10.0)
    return errors(coarse, fine)


def _with_x(x: dict) -> cfgmod.ModelConfig:
    from packtwin.sim.convergence import with_mesh

    return with_mesh(cfgmod.ModelConfig(), x)


def test_default_radial_mesh_converged_on_a_cold_pulse(cold_pulse):
    from packtwin.sim.convergence import RADIAL_KEYS

    # The default radial mesh on the cheaper previous x mesh: the radial error hardly depends
    # on the x points (mesh study), and doubling the radial points of 48 x cells is 3x the cost.
    err = _errors(_with_x(PREVIOUS_X), RADIAL_KEYS, cold_pulse)
    assert err["voltage_max_mv"] <= 1.0, err
    assert err["c_surf_n_max_pct"] <= 0.05 and err["c_surf_p_max_pct"] <= 0.05, err


def test_default_thickness_mesh_converged_on_a_cold_pulse(cold_pulse):
    from packtwin.sim.convergence import THICKNESS_KEYS

    err = _errors(cfgmod.ModelConfig(), THICKNESS_KEYS, cold_pulse, THICKNESS_STEPS)
    assert err["voltage_max_mv"] <= 1.0, err
    # Surface c_s through the thickness is not within 0.05 % of c_max on this mesh (data/README.md,
    # "Surface c_s through the thickness": no mesh near the default's cost meets it); not asserted.
    # The same check on the previous default fails, or it guards nothing.
    coarse = _errors(_with_x(PREVIOUS_X), THICKNESS_KEYS, cold_pulse, THICKNESS_STEPS)
    assert coarse["voltage_max_mv"] > 1.0, coarse


@pytest.mark.slow
def test_the_radial_check_catches_the_old_mesh(cold_pulse):
    from packtwin.sim.convergence import RADIAL_KEYS

    old = cfgmod.ModelConfig(var_pts=OLD_MESH, submesh={}, stored_r_points=None)
    assert _errors(old, RADIAL_KEYS, cold_pulse)["voltage_max_mv"] > 1.0


def test_observed_order_of_a_second_order_family():
    from packtwin.sim.convergence import observed_order

    # differences of a second-order method: each mesh twice as fine differs 4x less
    out = observed_order([0.8, 0.2, 0.05 * 1.21], target=0.05)
    assert out["orders"][0] == pytest.approx(2.0)
    # 0.0605 -> 0.05 at the last order log2(0.2 / 0.0605): a factor (1.21)^(1/p) on the points
    p = np.log2(0.2 / 0.0605)
    assert out["points_factor_for_target"] == pytest.approx(1.21 ** (1 / p))
    assert observed_order([0.1, 0.2], 0.05)["points_factor_for_target"] is None  # diverging
    assert observed_order([0.1, 0.04], 0.05)["points_factor_for_target"] == 1.0


def test_locate_names_sample_phase_and_side():
    from packtwin.sim.convergence import locate

    d = np.zeros((4, 4))
    d[2, 3] = 1.0  # third sample, last cell
    edges = np.linspace(0.0, 4.0, 5)
    current = np.array([1.0, 0.0, -1.0, -1.0])
    n = locate(d, edges, "n", current, sto=np.full((4, 4), 0.5))
    assert (n["sample"], n["phase"], n["step_in_phase"]) == (2, "charge", 1)
    assert n["from_collector"] == pytest.approx(0.875)  # negative: collector at x = 0
    assert locate(d, edges, "p", current)["from_collector"] == pytest.approx(0.125)
    assert n["max_by_phase_pct"] == {"discharge": 0.0, "rest": 0.0, "charge": 1.0}
    assert n["rms_pct"] == pytest.approx(0.25) and n["stoichiometry"] == 0.5
