"""The twin over life on pack stores (packtwin.physics.life_pack), on a store-shaped Dataset made
by code: cells that follow the life model exactly, logged as a generator store with
``cycle_series`` logs them (V/I/T per cell, per cycle, NaN-padded; check-up flags)."""

import math

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.physics.checkup_inventory import electrode_capacities
from packtwin.physics.life_pack import (calibrate_pack, cell_life, measured_capacity,
                                        step_resistance, track_pack)
from packtwin.physics.life_state import (AH_PER_MOL, cycle_duration, cycle_exposure, life_model,
                                         paths)
from tests.unit.test_checkup_inventory import _ocv_discharge

PERIOD = 60.0
CAP_N = electrode_capacities()[0]
N_T = 400  # padded samples per cycle
N_DIS = 60  # discharge samples of a regular cycle
AMBIENT = (25.0, 45.0)


def _lengths(checkup):
    """Discharge and valid samples of each cycle (a check-up discharges slower, for longer)."""
    k = np.where(checkup, 3 * N_DIS, N_DIS)
    return k, 2 * k + 20


def _temperature(T_k, checkup):
    T = np.full((len(checkup), N_T), np.nan)
    for c, valid in enumerate(_lengths(checkup)[1]):
        T[c, :valid] = T_k + 2.0 * np.sin(np.linspace(0, np.pi, valid))
    return T


def _cycle_series(q_ah, r_ohm, checkup, lost_before=None):
    """V/I samples of one cell over its cycles: rest sample, discharge delivering q_ah with a
    voltage drop r_ohm * I at its start, rest, charge back, then NaN padding. With
    ``lost_before`` (lithium lost at each cycle's start [mol]) a check-up's discharge follows the
    OCV of the lithium left."""
    n = len(q_ah)
    v, i = (np.full((n, N_T), np.nan) for _ in range(2))
    for c, (k, valid) in enumerate(zip(*_lengths(checkup))):
        i_dis = q_ah[c] * 3600.0 / (k * PERIOD)
        i[c, :valid] = 0.0
        i[c, 1:1 + k] = i_dis
        i[c, 1 + k + 10:1 + 2 * k + 10] = -i_dis
        v[c, :valid] = 3.6
        v[c, 0] = 4.18
        v[c, 1] = 4.18 - r_ohm[c] * i_dis
        if lost_before is not None and checkup[c]:  # the lithium left moves the negative's start
            v[c, 1:1 + k] = _ocv_discharge(0.85 - lost_before[c] / CAP_N, 0.27, r_ohm[c],
                                           current=i_dis, samples=k)[0][1:-1]
    return v, i


def _store(n_cycles=60, D=(2.5e-22, 2.9e-22), checkup_every=25, cycles_done=None,
           beta=(1.0, 1.0), psi=0.0, ocv_checkups=False, pulses=False):
    """2 scenarios (25, 45 C) x 2 cells; cell c has SEI diffusivity D[c] in both scenarios;
    scenario s's capacity fades by beta[s] x F / 3600 per lithium lost, psi is the cells'
    dead-lithium rate; ``ocv_checkups``: check-up discharges follow the OCV of the lithium
    left; ``pulses``: each check-up also reads ``checkup_pulse_resistance``, the film of the SEI
    the cycle starts with (kappa x L) on a 25 mOhm offset."""
    model = life_model()
    shape = (len(AMBIENT), len(D), n_cycles)
    series = {n: np.full(shape + (N_T,), np.nan) for n in ("life_voltage", "life_current",
                                                           "life_temperature")}
    truth = {n: np.full(shape, np.nan) for n in ("sei_thickness_end", "lli", "capacity")}
    checkup = np.zeros(shape)
    pulse = np.full(shape, np.nan)
    slow = np.array([(c + 1) % checkup_every == 0 for c in range(n_cycles)])
    checkup[..., slow] = 1.0
    for s, amb in enumerate(AMBIENT):
        for j, d in enumerate(D):
            T = _temperature(amb + 273.15, slow)
            g, dur = cycle_exposure(T, PERIOD), cycle_duration(T, PERIOD)
            L, n = paths(np.array([math.log(d), psi]), model, g, dur)
            q = 4.9 - beta[s] * AH_PER_MOL * (n - n[0])
            r = 0.03 + model.kappa * (L - L[0])
            v, i = _cycle_series(q, r, slow, np.concatenate([[0.0], n[:-1]])
                                 if ocv_checkups else None)
            t = T
            for name, arr in zip(series, (v, i, t)):
                series[name][s, j] = arr
            pulse[s, j, slow] = 0.025 + model.kappa * np.concatenate([[model.L_0], L[:-1]])[slow]
            truth["sei_thickness_end"][s, j] = L * 1e9
            truth["lli"][s, j] = 100.0 * n / model.n_li0
            truth["capacity"][s, j] = q
    dims4 = schema.LIFE_SERIES_DIMS
    data = {n: (dims4, a.astype("float32")) for n, a in series.items()}
    data.update({n: (schema.SUMMARY_DIMS, a) for n, a in truth.items()})
    data["checkup"] = (schema.SUMMARY_DIMS, checkup)
    if pulses:
        data["checkup_pulse_resistance"] = (schema.SUMMARY_DIMS, pulse)
    done = np.full(len(AMBIENT), float(n_cycles)) if cycles_done is None else \
        np.asarray(cycles_done, dtype=float)
    data["cycles_done"] = ((schema.SCENARIO,), done)
    ds = xr.Dataset(data, coords={
        schema.SCENARIO: np.arange(len(AMBIENT)), schema.CELL: np.arange(len(D)),
        schema.CYCLE: np.arange(1, n_cycles + 1, dtype="int32"),
        schema.TIME: np.arange(N_T) * PERIOD,
        "ambient_temperature": (schema.SCENARIO, list(AMBIENT))})
    ds.attrs["period_s"] = PERIOD
    return schema.apply_attrs(ds)


def test_capacity_and_resistance_from_measured_current_and_voltage():
    i = np.array([[0.0, 5.0, 5.0, -1.0, 2.0, 0.0, -5.0, np.nan]])
    # net charge peaks after sample 4: (5 + 5 - 1 + 2) * 60 s
    assert measured_capacity(i, 60.0)[0] == pytest.approx(11 * 60 / 3600)
    v = np.array([[4.1, 3.95, 3.9, 3.9, 3.9, 3.9, 3.9, np.nan]])
    assert step_resistance(v, i)[0] == pytest.approx(0.15 / 5.0)
    assert np.isnan(step_resistance(v, -i)[0])  # a charge first: no discharge step


def test_cell_life_reads_measured_signals_only_and_drops_checkups():
    ds = _store(n_cycles=30)
    one = cell_life(ds, 1, 0)
    assert set(one.data_vars) == {"life_temperature", "capacity"}
    one = cell_life(ds, 1, 0, use_resistance=True)
    assert set(one.data_vars) == {"life_temperature", "capacity", "life_resistance"}
    q = one["capacity"].values.ravel()
    true_q = ds["capacity"].values[1, 0]
    regular = ds["checkup"].values[1, 0] == 0
    np.testing.assert_allclose(q[regular], true_q[regular], rtol=1e-6)
    assert np.isnan(q[~regular]).all() and np.isnan(one["life_resistance"].values.ravel()[~regular]).all()
    assert one["life_temperature"].attrs["units"] == "K"


@pytest.mark.parametrize("use_resistance", [False, True])
def test_hot_cell_estimate_grows_faster_than_the_same_cell_cold(use_resistance):
    ds = _store()
    est = track_pack(ds, life_model(), use_resistance=use_resistance)
    sei = est["sei_thickness_est"].values  # (scenario, cell, cycle)
    for cell in range(ds.sizes["cell"]):
        cold, hot = sei[0, cell], sei[1, cell]
        assert (hot[-1] - hot[0]) > 1.5 * (cold[-1] - cold[0]) > 0
    # and it follows the truth the measurements came from (cell 1: D 16 % above the prior); the
    # capacity alone cannot tell SEI from dead lithium (free in the uncalibrated model): looser
    truth = ds["sei_thickness_end"].values
    growth = truth[..., -1] - truth[..., 0]
    err = np.abs(sei[..., -1] - truth[..., -1])
    assert (err < (0.05 if use_resistance else 0.15) * growth).all(), (err, growth)


def test_estimates_aligned_with_the_store_and_nan_where_not_run():
    ds = _store(n_cycles=30, cycles_done=[30, 12])
    est = track_pack(ds, life_model())
    assert est["sei_thickness_est"].dims == schema.SUMMARY_DIMS
    np.testing.assert_array_equal(est["cycle"].values, ds["cycle"].values)
    for name in ("sei_thickness_est", "lli_est", "capacity_est"):
        assert est[name].attrs["units"] == schema.LIFE_VARIABLES[name].units
        vals = est[name].values
        assert np.isfinite(vals[0, :, 2:]).all() and np.isfinite(vals[1, :, 2:12]).all()
        assert np.isnan(vals[1, :, 12:]).all()


def test_calibration_reads_truth_only_of_the_given_cells():
    ds = _store(n_cycles=40)
    model = calibrate_pack(ds, scenarios=[0], cells=[0], upto_cycle=20)
    assert 0.9 < model.beta < 1.1  # the synthetic cells lose exactly F/3600 A h per mole
    changed = ds.copy(deep=True)
    changed["lli"][1] = np.nan  # truth outside the calibration set is never read
    changed["sei_thickness_end"][:, 1] = np.nan
    assert calibrate_pack(changed, scenarios=[0], cells=[0], upto_cycle=20) == model


def test_a_store_without_cycle_series_is_refused_by_name():
    ds = _store(n_cycles=5).drop_vars("life_current")
    with pytest.raises(ValueError, match=r"life_current.*cycle_series"):
        track_pack(ds, life_model())


def test_judged_beyond_the_calibration_window_by_group():
    from packtwin.eval.life import judge, sqrt_fit

    ds = _store(n_cycles=60)
    model = calibrate_pack(ds, scenarios=[0], cells=[0], upto_cycle=20)
    live, forecast = track_pack(ds, model), track_pack(ds, model, update_until=20)
    rep = judge(ds, live, forecast, [0], [0], 20, model.L_0 * 1e9)
    assert [(r["scenario"], r["cell"], r["group"]) for r in rep["per_run"]] == [
        (0, 0, "seen_cells"), (0, 1, "unseen_cells"), (1, 0, "other_scenarios"),
        (1, 1, "other_scenarios")]
    for g in rep["groups"].values():
        assert g["twin"]["sei_mae_pct_of_growth"] < 5.0  # the cells follow the model exactly
        assert np.isfinite(g["twin"]["capacity_mae_pct"])
    # the baseline is a least-squares a + b sqrt(cycle) of the window (check-ups left out)
    c = np.arange(1, 11, dtype=float)
    y = 2.0 + 3.0 * np.sqrt(c)
    y[4] = np.nan
    np.testing.assert_allclose(sqrt_fit(c, y, 8), 2.0 + 3.0 * np.sqrt(c))


def test_calibrated_cell_keeps_its_own_rate_at_another_temperature():
    from packtwin.physics.life_pack import calibrate_rates

    ds = _store(n_cycles=40, D=(2.5e-22, 3.1e-22))
    model = life_model()
    rates = calibrate_rates(ds, [0], [1], 20, model)
    assert list(rates) == [1] and rates[1] == pytest.approx(3.1e-22, rel=1e-4, abs=0)
    changed = ds.copy(deep=True)  # truth beyond the window and of other runs is never read
    changed["sei_thickness_end"][:, :, 20:] = np.nan
    changed["sei_thickness_end"][1] = np.nan
    changed["sei_thickness_end"][:, 0] = np.nan
    assert calibrate_rates(changed, [0], [1], 20, model) == rates
    # capacity says nothing here (no loss beyond the SEI's, prior spread kept): the 45 C run of
    # the calibrated cell is tracked with its own rate, the uncalibrated cell with the nominal
    nan_cap = ds.copy(deep=True)
    nan_cap["life_current"][:] = np.nan
    with_rates = track_pack(nan_cap, model, rates=rates)
    without = track_pack(nan_cap, model)
    err = lambda est, c: float(np.nanmax(np.abs(  # noqa: E731
        est["sei_thickness_est"][1, c] - ds["sei_thickness_end"][1, c])))
    assert err(with_rates, 1) < 1e-3 < 0.5 < err(without, 1)
    np.testing.assert_array_equal(with_rates["sei_thickness_est"][:, 0],
                                  without["sei_thickness_est"][:, 0])


def test_lithium_from_checkups_holds_where_the_fade_costs_another_capacity_per_lithium():
    """Calibrated at 25 C where a lithium costs beta = 1, tracked at 45 C where it costs 1.5:
    read through the fade the hot cells' lost lithium comes out ~1.5 x the truth; read from the
    check-ups' OCV it holds."""
    ds = _store(n_cycles=60, checkup_every=10, beta=(1.0, 1.5), psi=3e-10, ocv_checkups=True)
    one = cell_life(ds, 1, 0, checkup_lithium=True)
    n_ck = one["checkup_lithium"].values.ravel()
    regular = ds["checkup"].values[1, 0] == 0
    assert np.isnan(n_ck[regular]).all() and np.isfinite(n_ck[~regular]).all()
    assert one["checkup_lithium"].attrs["units"] == "mol"
    lli = {}
    for source in ("capacity", "checkup"):
        base = life_model(lithium_from=source, rate_from_fade=False)
        model = calibrate_pack(ds, [0], [0, 1], upto_cycle=30, model=base)
        if source == "checkup":
            assert model.noise_checkup_mol < 1e-3 * model.n_li0  # the fit is near exact here
        lli[source] = track_pack(ds, model)["lli_est"].values[1, :, -1]
    truth = ds["lli"].values[1, :, -1]
    np.testing.assert_allclose(lli["checkup"], truth, rtol=0.02)
    assert (lli["capacity"] > 1.3 * truth).all()
    with pytest.raises(ValueError, match="no 'checkup' variable"):
        cell_life(ds.drop_vars("checkup"), 0, 0, checkup_lithium=True)
