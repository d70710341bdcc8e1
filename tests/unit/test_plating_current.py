"""The plating current alone (packtwin.physics.plating_current) and in the core: its backward-
Euler step against the exact law, its Newton slope, conservation and the cold charge-rest it
was built for. Small and fast (no PyBaMM; the DFN comparison is test_physics_core_pybamm)."""

import dataclasses
import json

import pytest
import torch

from packtwin.physics.constants import F, okane2022
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.plating_current import PlatingInput, plating_current

PL = okane2022().plating
f64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _inputs(c_pl, h, B=3, X=4):
    return PlatingInput(torch.full((B, X), c_pl, dtype=f64), torch.full((B, 1), 3.8e5, dtype=f64),
                        PL.k, PL.alpha, h)


def test_instantaneous_current_is_pybamms_law():
    eta = torch.linspace(-0.1, 0.15, 12, dtype=f64).reshape(3, 4)
    c_e, T = torch.full_like(eta, 900.0), torch.full((3, 1), 263.15, dtype=f64)
    out = plating_current(eta, c_e, T, _inputs(200.0, 0.0))
    f = F / (8.314462618 * T)
    law = F * PL.k * (200.0 * torch.exp((1 - PL.alpha) * f * eta)
                      - c_e * torch.exp(-PL.alpha * f * eta))
    torch.testing.assert_close(out.j, law, rtol=1e-4, atol=0.0)
    torch.testing.assert_close(out.c_pl, torch.full_like(eta, 200.0))
    assert float(out.j[0, 0]) < 0 < float(out.j[-1, -1])  # plates below, strips above


@pytest.mark.parametrize("h", [0.0, 10.0, 1e6])
def test_step_conserves_lithium_stays_positive_and_slope_is_exact(h):
    inp = _inputs(150.0, h)
    eta = torch.linspace(-0.08, 0.3, 12, dtype=f64).reshape(3, 4)
    c_e, T = torch.full_like(eta, 1000.0), torch.full((3, 1), 273.15, dtype=f64)
    out = plating_current(eta, c_e, T, inp)
    # the plated lithium changes by exactly the charge the plating current carries
    torch.testing.assert_close(inp.c_pl - out.c_pl, h * inp.a * out.j / F, rtol=1e-10, atol=1e-9)
    assert float(out.c_pl.min()) >= 0.0
    e = 1e-7
    fd = (plating_current(eta + e, c_e, T, inp).j - plating_current(eta - e, c_e, T, inp).j) / (2 * e)
    torch.testing.assert_close(out.dj_deta, fd, rtol=1e-5, atol=1e-9)


def _cold_charge_rest(plating: bool, n_charge=20, n_rest=30):
    """Nominal cells at -10 degC: 1C charge from 40 % then rest, 30 s samples."""
    cfg = CoreConfig(n_x_n=4, n_x_s=2, n_x_p=4, n_r=8, plating=plating)
    core = ReducedCore(CoreParams.nominal(2), cfg)
    c = core.design.constants
    s0 = core.initial_state(torch.full((2,), 0.4 * c.neg.c_max, dtype=f64),
                            torch.full((2,), 0.75 * c.pos.c_max, dtype=f64))
    I = torch.tensor([[-5.0] * n_charge + [0.0] * n_rest, [-2.5] * n_charge + [0.0] * n_rest],
                     dtype=f64)
    T = torch.full_like(I, 263.15)
    with torch.no_grad():
        s1, out = core.simulate(s0, I, T, 30.0)
    return core, s0, s1, out, I


def test_core_with_plating_conserves_lithium_and_salt():
    core, s0, s1, out, I = _cold_charge_rest(True)
    n0, p0, e0 = core.lithium(s0)
    n1, p1, e1 = core.lithium(s1)
    moles = I.sum(1) * 30.0 / F
    torch.testing.assert_close(p1 - p0, moles, rtol=1e-10, atol=1e-12)
    # the negative's particles and its plated lithium together take what the positive gives
    torch.testing.assert_close(n0 - n1 - core.plated_lithium(s1), moles, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(e1, e0, rtol=1e-10, atol=0.0)


def test_cold_charge_plates_and_the_rest_strips_above_the_open_circuit_voltage():
    core, _, s1, out, _ = _cold_charge_rest(True)
    plated = out["c_pl"].mean(-1)  # [B, K]
    k_end = 19  # last charge sample
    assert float(plated[0, k_end]) > 50.0  # 1C at -10 degC plates tens of mol/m3 or more
    assert float(plated[0, k_end]) > float(plated[1, k_end])  # more at the faster charge
    assert (plated[:, -1] < 0.8 * plated[:, k_end]).all()  # the rest strips it back
    # the local cell holds the rest voltage above the no-plating core's (same charge passed,
    # the same lithium now in the graphite or still plated)
    _, _, _, ref, _ = _cold_charge_rest(False)
    gap = 1e3 * (out["voltage"][0, k_end + 2] - ref["voltage"][0, k_end + 2])
    assert gap > 5.0, f"rest-voltage gap {gap:.1f} mV"
    # the plating current is anodic at rest: intercalation takes it, the total stays ~0
    assert float(out["c_pl"][0, -1].min()) >= 0.0


def test_more_newton_iterations_do_not_change_the_voltage_with_plating():
    outs = []
    for it, warm in ((CoreConfig().newton_iterations, CoreConfig().warm_iterations), (14, 14)):
        cfg = CoreConfig(n_x_n=4, n_x_s=2, n_x_p=4, n_r=8, plating=True, newton_iterations=it,
                         warm_iterations=warm)
        core = ReducedCore(CoreParams.nominal(1), cfg)
        I = torch.tensor([[-5.0] * 6 + [0.0] * 4 + [10.0] * 3], dtype=f64)
        outs.append(core.simulate(core.initial_state(torch.full((1,), 15000.0, dtype=f64),
                                                     torch.full((1,), 40000.0, dtype=f64)),
                                  I, torch.full_like(I, 263.15), 30.0)[1]["voltage"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-4)


def test_the_measurement_settles_where_stripping_meets_a_full_negative(load_script):
    """The instantaneous (h = 0) solve from a uniform start, in the CV taper after a 3C charge
    with plated lithium stripping (a state shaped like held-out draw 15's cell 1, made by
    scripts/diag_newton_settle.py's ``taper_state``): Newton alternated between a held-back and
    an overshooting step and stopped ~60 mV off after its 24 iterations; it now goes on until
    its steps settle (electrode_pair.STEP_TOL_V) and gives the answer of 48 iterations."""
    taper_state = load_script("diag_newton_settle").taper_state
    cfg = CoreConfig(plating=True, n_x_n=12, n_x_p=12)
    core = ReducedCore(CoreParams.nominal(1), cfg)
    I, T = torch.tensor([-2.0], dtype=f64), torch.tensor([299.0], dtype=f64)
    v = float(core.measure(taper_state(core), I, T).voltage[0])
    many = ReducedCore(core.params, dataclasses.replace(cfg, newton_iterations=48))
    out = many.measure(taper_state(many), I, T)
    assert abs(v - float(out.voltage[0])) < 1e-6, (v, float(out.voltage[0]))
    # the setting asked: plated lithium stripping (j_pl > 0) next to the separator, at 4.2 V
    assert float(out.j_pl_n[0, -1]) > 0.0 and 4.15 < v < 4.25


def test_plating_off_leaves_the_state_without_plated_lithium():
    core = ReducedCore(CoreParams.nominal(1), CoreConfig(n_x_n=3, n_x_s=2, n_x_p=3, n_r=6))
    s = core.initial_state()
    assert s.c_pl is None and float(core.plated_lithium(s)) == 0.0
    s1, out = core.simulate(s, torch.full((1, 3), -5.0, dtype=f64),
                            torch.full((1, 3), 263.15, dtype=f64), 30.0)
    assert s1.c_pl is None and "c_pl" not in out


def test_a_long_plating_step_settles_where_the_electrolyte_is_nearly_drained(monkeypatch):
    """The paired Newton with plating over a 10 s step, from a state where plating and a
    drained electrolyte meet (150 s of 1.5C charge at -10 degC): every iteration count gives
    one answer, that of 1 s sub-steps (electrode_pair.PLATING_ETA_STEP); without the limit the
    settling rounds' halved back-steps (electrode_pair.BACK_STEP) find the same answer; without
    either the same step has no stable answer (the failure the limit was built for)."""
    from packtwin.physics import electrode_pair

    base = CoreConfig(n_x_n=12, n_x_p=12, plating=True, max_substep_s=1.0)
    params = CoreParams.nominal(1)
    core = ReducedCore(params, base)
    c = core.design.constants
    I, T = torch.tensor([-7.5], dtype=f64), torch.tensor([263.15], dtype=f64)
    s = core.initial_state(torch.full((1,), 0.3 * c.neg.c_max, dtype=f64),
                           torch.full((1,), 0.63 * c.pos.c_max, dtype=f64))
    with torch.no_grad():
        for _ in range(15):
            s = core.step(s, I, T, 10.0)
        assert float(s.c_e[0, 0]) < 50.0 and float(s.c_pl.sum()) > 100.0  # the setting asked

        def volts(newton, warm, sub):
            one = ReducedCore(params, dataclasses.replace(
                base, newton_iterations=newton, warm_iterations=warm, max_substep_s=sub))
            return float(one.measure(one.step(s, I, T, 10.0), I, T).voltage[0])

        counts = ((base.newton_iterations, base.warm_iterations), (12, 8), (30, 30), (60, 60))
        fine = volts(base.newton_iterations, base.warm_iterations, 1.0)
        limited = [volts(n, w, 10.0) for n, w in counts]
        assert max(limited) - min(limited) < 1e-3, limited
        assert abs(limited[-1] - fine) < 2e-3, (limited, fine)
        monkeypatch.setattr(electrode_pair, "PLATING_ETA_STEP", float("inf"))
        free = [volts(n, w, 10.0) for n, w in counts]
        assert max(abs(a - b) for a, b in zip(free, limited)) < 1e-6, (free, limited)
        monkeypatch.setattr(electrode_pair, "BACK_STEP", 1.0)
        neither = [volts(n, w, 10.0) for n, w in counts]
        assert max(neither) - min(neither) > 0.1, neither


@pytest.mark.slow
def test_diag_newton_settle_compares_both_rules(tmp_path, synthetic_store, load_script):
    """scripts/diag_newton_settle.py on the synthetic store: the CV-taper state settles to the
    48-iteration answer with the settling rounds and stops tens of mV off without them (the
    script restores the module's constants after each mode); one row per scenario, plating
    setting and mode."""
    from packtwin.physics import electrode_pair

    before = (electrode_pair.STEP_TOL_V, electrode_pair.MAX_ROUNDS, electrode_pair.BACK_STEP)
    out = tmp_path / "n.json"
    assert load_script("diag_newton_settle").main(["--store", str(synthetic_store),
                                                   "--out", str(out)]) == 0
    assert (electrode_pair.STEP_TOL_V, electrode_pair.MAX_ROUNDS,
            electrode_pair.BACK_STEP) == before
    res = json.loads(out.read_text())
    ref = res["taper"]["fixed_48_iterations_V"]
    assert abs(res["taper"]["settle"]["voltage_V"] - ref) < 1e-6
    assert abs(res["taper"]["fixed"]["voltage_V"] - ref) > 0.03
    assert res["taper"]["fixed"]["unsettled"] == 1 and res["taper"]["settle"]["unsettled"] == 0
    assert len(res["open_loop"]) == 4 * 2 * 2
    assert all(r["steps_per_sample"] > 0 for r in res["open_loop"])
