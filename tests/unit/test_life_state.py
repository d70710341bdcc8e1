"""The twin over life (packtwin.physics.life_state): growth law, temperature, and the filter."""

import math

import numpy as np
import pytest
import torch

from packtwin.physics.analytic import sei_thickness_constant_T
from packtwin.physics.constants import okane2022
from packtwin.physics.life_state import (AH_PER_MOL, cycle_duration, cycle_exposure, estimate,
                                         life_model, paths, sei_path)

CELL = okane2022()
PERIOD = 30.0
N_SAMPLES = 361  # a 3 h cycle at 30 s


def _history(T_k, n_cycles, wobble=0.0, seed=0):
    """Temperature samples (cycles, samples) around T_k with a self-heating bump per cycle."""
    rng = np.random.default_rng(seed)
    phase = np.sin(np.linspace(0, 2 * np.pi, N_SAMPLES)) ** 2
    T = T_k + 2.0 * phase[None, :] + wobble * rng.standard_normal((n_cycles, 1))
    T[:, -20:] = np.nan  # shorter cycles are NaN-padded in the life data
    return T


def test_growth_law_matches_constant_T_solution():
    T = np.full((50, N_SAMPLES), 310.0)
    g = cycle_exposure(T, PERIOD)
    L = sei_path(CELL.sei.D_sol, g, CELL.sei.L_0)
    t = np.arange(1, 51) * (N_SAMPLES - 1) * PERIOD
    exact = sei_thickness_constant_T(torch.tensor(t), CELL.sei.L_0, 310.0, CELL).numpy()
    np.testing.assert_allclose(L, exact, rtol=1e-12)


def test_padding_and_kelvin_checked():
    T = np.full((2, 5), 300.0)
    T[1, 3:] = np.nan
    g = cycle_exposure(T, PERIOD)
    assert g[1] == pytest.approx(g[0] / 2)  # two of four intervals
    with pytest.raises(ValueError, match="kelvin"):
        cycle_exposure(np.full((1, 5), 25.0) - 40.0, PERIOD)


def _synthetic(model, T, D, psi, q0=4.9, r0=0.03):
    """Capacity and discharge-step resistance of a cell that follows the model exactly."""
    g, d = cycle_exposure(T, PERIOD), cycle_duration(T, PERIOD)
    L, n = paths(np.array([math.log(D), psi]), model, g, d)
    return g, d, q0 - AH_PER_MOL * (n - n[1]), r0 + model.kappa * (L - L[1]), L, n


def test_hot_cell_estimate_grows_faster_than_cold():
    model = life_model()
    n_cycles = 100
    T_hot, T_cold = _history(318.15, n_cycles), _history(288.15, n_cycles)
    hot = cycle_exposure(T_hot, PERIOD), cycle_duration(T_hot, PERIOD)
    cold = cycle_exposure(T_cold, PERIOD), cycle_duration(T_cold, PERIOD)
    # Same cell, same (flat) capacity record: only the measured temperature differs.
    q = np.full(n_cycles, 4.9)
    est_hot, est_cold = estimate(*hot, q, model), estimate(*cold, q, model)
    growth_hot = est_hot.sei_nm[-1] - est_hot.sei_nm[0]
    growth_cold = est_cold.sei_nm[-1] - est_cold.sei_nm[0]
    assert growth_hot > 1.5 * growth_cold > 0  # Arrhenius: rate x4.5, sqrt growth ~x2
    # and without any capacity (no correction at all) the law alone does the same
    none = np.full(n_cycles, np.nan)
    assert estimate(*hot, none, model).sei_nm[-1] > estimate(*cold, none, model).sei_nm[-1]


@pytest.mark.parametrize("factor", [0.75, 1.3])
def test_filter_corrects_a_wrong_rate(factor):
    model = life_model()
    n_cycles = 200
    D_true, psi_true = factor * model.D_nominal, 4e-10
    g, d, q, res, L_true, n_true = _synthetic(model, _history(308.15, n_cycles, wobble=3.0),
                                              D_true, psi_true)
    est = estimate(g, d, q, model, resistance_ohm=res)
    open_loop = estimate(g, d, np.full(n_cycles, np.nan), model)  # prior rate, no correction
    err = abs(est.sei_nm[-1] - L_true[-1] * 1e9)
    err_open = abs(open_loop.sei_nm[-1] - L_true[-1] * 1e9)
    assert est.D[-1] == pytest.approx(D_true, rel=0.02, abs=0)
    assert est.psi[-1] == pytest.approx(psi_true, rel=0.05, abs=0)
    assert err < 0.1 * err_open
    np.testing.assert_allclose(est.lli_pct[-1], 100 * n_true[-1] / model.n_li0, rtol=0.01)
    # one-step capacity predictions after the first few cycles are within 0.05 %
    rel = np.abs(est.capacity_ah[20:] / q[20:] - 1)
    assert rel.max() < 5e-4


def test_rate_from_fade_off_keeps_the_rate_and_corrects_dead_lithium():
    import dataclasses

    model = life_model()
    held = dataclasses.replace(model, rate_from_fade=False)
    D_true, psi_true = 1.3 * model.D_nominal, 4e-10
    g, d, q, res, _, n_true = _synthetic(model, _history(308.15, 200, wobble=3.0), D_true,
                                         psi_true)
    est = estimate(g, d, q, held)  # capacity only: nothing may move ln D
    np.testing.assert_allclose(est.D, model.D_nominal, rtol=1e-12)
    # the fade still moves psi
    assert est.psi[-1] != pytest.approx(model.psi_prior, rel=0.05, abs=0)
    # with psi alone the fade is still followed: the lost lithium within 5 % of the truth
    assert est.lli_pct[-1] == pytest.approx(100 * n_true[-1] / model.n_li0, rel=0.05)
    # the resistance (the film) still moves the rate
    with_res = estimate(g, d, q, held, resistance_ohm=res)
    assert with_res.D[-1] == pytest.approx(D_true, rel=0.05, abs=0)
    # and with the flag on (default) the same fade alone does move it
    assert estimate(g, d, q, model).D[-1] != pytest.approx(model.D_nominal, rel=0.01, abs=0)


def test_forecast_after_calibration_window_uses_no_capacity():
    model = life_model()
    g, d, q, res, _, _ = _synthetic(model, _history(308.15, 120), 1.2 * model.D_nominal, 4e-10)
    q_bad, res_bad = q.copy(), res.copy()
    q_bad[60:] = 0.0  # nonsense after the window must not be read
    res_bad[60:] = 1.0
    a = estimate(g, d, q, model, resistance_ohm=res, update_until=60)
    b = estimate(g, d, q_bad, model, resistance_ohm=res_bad, update_until=60)
    np.testing.assert_array_equal(a.sei_nm, b.sei_nm)
    assert math.isclose(a.D[-1], a.D[59])


def _synthetic_run(model, T_k, D, psi, cell=0):
    """A life Dataset (the run_life layout) of a cell that follows the model exactly."""
    import xarray as xr

    from packtwin import schema

    T = _history(T_k, 60, wobble=1.0, seed=cell)
    g, d, q, res, L, n = _synthetic(model, T, D, psi)
    dims = schema.SUMMARY_DIMS
    ds = xr.Dataset({
        "life_temperature": (schema.LIFE_SERIES_DIMS, T[None, None]),
        "capacity": (dims, q[None, None]), "life_resistance": (dims, res[None, None]),
        "lli": (dims, (100 * n / model.n_li0)[None, None]),
        "sei_thickness_end": (dims, (L * 1e9)[None, None])},
        coords={schema.SCENARIO: [0], schema.CELL: [cell], schema.CYCLE: np.arange(1, 61)})
    ds.attrs["period_s"] = PERIOD
    return schema.apply_attrs(ds)


def test_calibrate_and_track_on_datasets():
    from packtwin.physics.life_twin import calibrate, track

    truth = life_model()
    runs = [_synthetic_run(truth, 300.0, 1.1 * truth.D_nominal, 3e-10),
            _synthetic_run(truth, 310.0, 0.9 * truth.D_nominal, 5e-10, cell=1)]
    # start from a wrong capacity-per-lithium: calibration must find the data's
    model = calibrate(runs, life_model(beta=0.5), upto_cycle=30)
    assert model.beta == pytest.approx(1.0, rel=1e-6)
    assert abs(model.xi) < 1e-6 * truth.kappa * 1e-9  # no charge-transfer drift in these data
    assert model.psi_prior == pytest.approx(4e-10, rel=0.05, abs=0)
    unseen = _synthetic_run(truth, 320.0, 1.25 * truth.D_nominal, 4e-10, cell=2)
    est = track(unseen, model)
    assert est["sei_thickness_est"].attrs["units"] == "nm"
    err = np.abs(est["sei_thickness_est"] - unseen["sei_thickness_end"]).values[..., 30:]
    growth = float(unseen["sei_thickness_end"].values.ravel()[-1]) - 5.0
    assert err.max() < 0.01 * growth


def test_walk_is_chosen_by_the_capacity_when_the_fade_leaves_the_rate_alone():
    import dataclasses

    from packtwin.physics.life_state import plating_driver
    from packtwin.physics.life_twin import WALKS, calibrate

    truth = life_model()
    runs = []
    for cell, (T_k, f) in enumerate(((300.0, 1.1), (310.0, 0.9))):
        run = _synthetic_run(truth, T_k, f * truth.D_nominal, 3e-10, cell=cell)
        # the cell plates twice as much from cycle 31 on: a psi drift only a walk can follow
        T = run["life_temperature"].values[0, 0]
        g, d = cycle_exposure(T, PERIOD), cycle_duration(T, PERIOD)
        u = np.cumsum(plating_driver(f * truth.D_nominal, g, d, truth.L_0))
        extra = 3e-10 * np.where(np.arange(60) >= 30, u - u[29], 0.0)
        run["capacity"] = run["capacity"] - AH_PER_MOL * extra
        run["lli"] = run["lli"] + 100 * extra / truth.n_li0
        runs.append(run)
    held = calibrate(runs, dataclasses.replace(truth, rate_from_fade=False), upto_cycle=60)
    assert held.psi_walk > 0 and held.psi_walk / abs(held.psi_prior) in WALKS[1:]
    assert held.rate_from_fade is False


def test_life_data_problems_are_named():
    from packtwin.physics.life_twin import calibrate, track

    model = life_model()
    run = _synthetic_run(model, 300.0, model.D_nominal, 3e-10)
    with pytest.raises(ValueError, match="life_temperature"):
        track(run.drop_vars("life_temperature"), model)
    bad_units = run.copy()
    bad_units["life_temperature"] = bad_units["life_temperature"].assign_attrs(units="degC")
    with pytest.raises(ValueError, match="units 'degC'"):
        track(bad_units, model)
    flat = run.copy()
    flat["lli"] = flat["lli"] * 0
    with pytest.raises(ValueError, match="no lithium loss"):
        calibrate([flat], model)


def test_run_life_refuses_bad_requests_before_solving():
    from packtwin.sim.life_reference import run_life

    with pytest.raises(ValueError, match="n_cycles and chunk must be >= 1"):
        run_life({}, {}, 0, 25.0)
    with pytest.raises(ValueError, match="unknown cell parameter keys \\['sei_rate'\\]"):
        run_life({"sei_rate": 1.0}, {}, 5, 25.0)


def test_gate_ignores_shortened_discharges():
    """A discharge cut short (the pack's cutoff on its coupling grid) is no lithium lost: the
    gated filter keeps the rate it had; without the gate the drops pull the rate up."""
    import dataclasses

    model = dataclasses.replace(life_model(), noise_mol=4e-5)
    g, d, q, _, L_true, _ = _synthetic(model, _history(308.15, 150), 1.1 * model.D_nominal, 4e-10)
    q_cut = q.copy()
    q_cut[90::3] -= 0.05  # every third cycle from 90 on ends one step early
    clean = estimate(g, d, q, model)
    gated = estimate(g, d, q_cut, model)
    ungated = estimate(g, d, q_cut, dataclasses.replace(model, gate=math.inf))
    assert gated.D[-1] == pytest.approx(clean.D[-1], rel=1e-3, abs=0)
    err = lambda e: abs(e.sei_nm[-1] - L_true[-1] * 1e9)  # noqa: E731
    assert err(ungated) > 5 * err(gated) + 0.1


def _checkups(n_lost, every, inventory=0.28):
    """Lithium in the particles read at every ``every``-th cycle (0-based ``every - 1``, ...):
    a check-up at cycle k reads the state at cycle k-1's end; NaN elsewhere."""
    before = np.concatenate([[0.0], n_lost])
    out = np.full(len(n_lost), np.nan)
    idx = np.arange(every - 1, len(n_lost), every)
    out[idx] = inventory - before[idx]
    return out


def test_checkup_lithium_holds_where_a_wrong_capacity_per_lithium_misleads_the_fade():
    """A cell whose fade costs 1.5 x F/3600 per lithium (the 2C cells of the life-long pack)
    and a twin calibrated at beta 1 (another condition): read through the fade its lost lithium
    comes out ~1.5 x too high; read from check-ups it holds, and the capacity is predicted with
    the cell's own beta learnt from its fade."""
    import dataclasses

    model = dataclasses.replace(life_model(), rate_from_fade=False, psi_prior=2e-10,
                                psi_prior_std=2e-10)
    g, d, _, _, _, n_true = _synthetic(model, _history(308.15, 300, wobble=2.0),
                                       model.D_nominal, 4e-10)
    q = 4.9 - 1.5 * AH_PER_MOL * (n_true - n_true[1])
    by_fade = estimate(g, d, q, model)
    ck = _checkups(n_true, 25)
    by_checkup = estimate(g, d, q, dataclasses.replace(model, lithium_from="checkup"),
                          checkup_lithium_mol=ck)
    truth = 100 * n_true / model.n_li0
    assert by_fade.lli_pct[-1] > 1.3 * truth[-1]
    assert by_checkup.lli_pct[-1] == pytest.approx(truth[-1], rel=0.02)
    assert by_checkup.psi[-1] == pytest.approx(4e-10, rel=0.05, abs=0)
    # the capacity through the cell's own beta: one-step predictions within 0.05 % late in life
    rel = np.abs(by_checkup.capacity_ah[150:] / q[150:] - 1)
    assert rel.max() < 5e-4
    # no capacity read at all: the check-ups alone still give the lithium
    blind = estimate(g, d, np.full_like(q, np.nan), dataclasses.replace(
        model, lithium_from="checkup"), checkup_lithium_mol=ck)
    assert blind.lli_pct[-1] == pytest.approx(truth[-1], rel=0.02)
    # nothing after update_until is read: later check-ups changed change nothing
    ck_bad = ck.copy()
    ck_bad[200:] = 0.0
    m = dataclasses.replace(model, lithium_from="checkup")
    a = estimate(g, d, q, m, update_until=180, checkup_lithium_mol=ck)
    b = estimate(g, d, q, m, update_until=180, checkup_lithium_mol=ck_bad)
    np.testing.assert_array_equal(a.lli_pct, b.lli_pct)


def test_checkup_settings_are_checked():
    import dataclasses

    model = life_model()
    g, d, q, _, _, _ = _synthetic(model, _history(308.15, 20), model.D_nominal, 4e-10)
    with pytest.raises(ValueError, match="no checkup_lithium_mol"):
        estimate(g, d, q, dataclasses.replace(model, lithium_from="checkup"))
    with pytest.raises(ValueError, match="check-up lithium shape"):
        estimate(g, d, q, dataclasses.replace(model, lithium_from="checkup"),
                 checkup_lithium_mol=np.zeros(3))
    with pytest.raises(ValueError, match="lithium_from must be one of"):
        life_model(lithium_from="voltage")
    with pytest.raises(ValueError, match="beta_forget must be in"):
        life_model(beta_forget=0.0)


def _pulses(model, L, every, r_0=0.028, kappa=None):
    """Check-up pulse resistances of a cell whose film follows ``L`` (end-of-cycle SEI [m]): read
    on the SEI each check-up cycle starts with, NaN on the other cycles."""
    kp = model.kappa if kappa is None else kappa
    before = np.concatenate([[model.L_0], L[:-1]])
    out = np.full(len(L), np.nan)
    ck = np.arange(every - 1, len(L), every)
    out[ck] = r_0 + kp * before[ck]
    return out


def test_check_up_pulses_pin_the_rate_the_fade_cannot():
    """Late in life the fade hardly carries the SEI rate (rate_from_fade off, an unseen cell at
    the nominal prior); the pulse's film rise does: five exact pulses pull the rate from 25 %
    off to within 7 % (the rest is the prior's weight against the pulse's assumed per-cell
    spread), and a run without pulses, or with use_pulse off, keeps the nominal rate."""
    import dataclasses

    model = dataclasses.replace(life_model(), rate_from_fade=False)
    D_true, psi_true = 0.8 * model.D_nominal, 4e-10
    g, d, q, _, L_true, _ = _synthetic(model, _history(308.15, 300, wobble=3.0), D_true,
                                       psi_true)
    pulse = _pulses(model, L_true, every=50)
    est = estimate(g, d, q, model, pulse_resistance_ohm=pulse)
    assert est.D[-1] == pytest.approx(D_true, rel=0.07, abs=0)
    # before the second pulse there is no rise to read: the prior stands
    np.testing.assert_allclose(est.D[:50], model.D_nominal, rtol=1e-12)
    none = estimate(g, d, q, model)
    off = estimate(g, d, q, dataclasses.replace(model, use_pulse=False),
                   pulse_resistance_ohm=pulse)
    np.testing.assert_allclose(none.D, model.D_nominal, rtol=1e-12)
    np.testing.assert_array_equal(off.sei_nm, none.sei_nm)
    err, err_none = (abs(e.sei_nm[-1] - 1e9 * L_true[-1]) for e in (est, none))
    assert err < 0.3 * err_none
    # a constant offset (contact, electrolyte, charge transfer) cancels in the rise
    shifted = estimate(g, d, q, model, pulse_resistance_ohm=pulse + 0.004)
    np.testing.assert_allclose(shifted.D, est.D, rtol=1e-9)


def test_a_cell_whose_film_is_off_by_its_kappa_spread_is_off_by_that_much_and_no_more():
    """The cell's own kappa differs from the nominal (its surface area, radius and active
    fraction): the rise is read with the nominal kappa, so the SEI grown since the first pulse
    is off by about that fraction; the noise model (kappa_rel_std) keeps the filter from
    trusting it more than the law's prior."""
    import dataclasses

    model = dataclasses.replace(life_model(), rate_from_fade=False)
    D_true = 1.15 * model.D_nominal
    g, d, q, _, L_true, _ = _synthetic(model, _history(298.15, 600), D_true, 4e-10)
    pulse = _pulses(model, L_true, every=100, kappa=1.03 * model.kappa)
    est = estimate(g, d, q, model, pulse_resistance_ohm=pulse)
    # the film read 3 % high: the SEI ends high by about as much (the law ties the start)
    assert 0.0 < est.sei_nm[-1] / (1e9 * L_true[-1]) - 1.0 < 0.035
    none = estimate(g, d, q, model)
    assert abs(est.sei_nm[-1] - 1e9 * L_true[-1]) < 0.5 * abs(none.sei_nm[-1] - 1e9 * L_true[-1])


def test_pulse_resistance_of_the_wrong_length_is_refused():
    model = life_model()
    g, d, q, _, _, _ = _synthetic(model, _history(298.15, 20), model.D_nominal, 0.0)
    with pytest.raises(ValueError, match="pulse resistance shape"):
        estimate(g, d, q, model, pulse_resistance_ohm=np.zeros(19))
