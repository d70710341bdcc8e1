"""Plating over life (packtwin.physics.plating, packtwin.eval.plating_life): the plating
kinetics alone (exact solutions), the core-driven estimate on constructed logs (cold fast charge
plates, warm slow charge and rest do not), per-cycle event scores, and stores that lack the
plating truth."""

import math

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.eval.metrics import MetricsError, event_scores
from packtwin.physics.constants import F, R_GAS
from packtwin.physics.core import CoreConfig
from packtwin.physics.core_params import CoreParams
from packtwin.physics.plating import PlatingKinetics, plated_step, plating_over_life

# coarse core: the test is about the mechanism, not mV (tests/unit/test_physics_core.py is)
COARSE = CoreConfig(n_x_n=4, n_x_s=2, n_x_p=4, n_r=6, max_substep_s=20.0)
PERIOD = 60.0
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # importing PyBaMM and loading the set: ~4 s
def test_kinetics_are_pybamms_okane2022():
    import pybamm

    p, kin = pybamm.ParameterValues("OKane2022"), PlatingKinetics()
    assert kin.k == p["Lithium plating kinetic rate constant [m.s-1]"]
    assert kin.alpha == p["Lithium plating transfer coefficient"]
    assert kin.dead_decay == p["Dead lithium decay constant [s-1]"]


def test_plated_step_solves_the_linear_law_exactly():
    kin, a, T, c_e, decay = PlatingKinetics(), 4e5, 298.15, 1000.0, 1e-6
    f = F / (R_GAS * T)
    # long rest at a positive overpotential: plating and stripping balance at c_e exp(-f eta)
    # (less the small decay to dead lithium)
    eta = 0.05
    sink = a * kin.k * math.exp((1 - kin.alpha) * f * eta) + decay
    c_inf = a * kin.k * c_e * math.exp(-kin.alpha * f * eta) / sink
    assert c_inf == pytest.approx(c_e * math.exp(-f * eta), rel=0.01)
    assert plated_step(0.0, eta, c_e, T, a, decay, 1e6, kin) == pytest.approx(c_inf, rel=1e-9)
    # one step equals many small ones (the update is exact for a fixed overpotential)
    c = 50.0
    for _ in range(100):
        c = plated_step(c, eta, c_e, T, a, decay, 0.6, kin)
    assert plated_step(50.0, eta, c_e, T, a, decay, 60.0, kin) == pytest.approx(c, rel=1e-9)
    # far below 0 V the source is capped by the lithium the charging current brings
    assert plated_step(0.0, -1.0, c_e, T, a, decay, 10.0, kin, charge_flux=2.0) \
        == pytest.approx(2.0 * (1 - math.exp(-sink_at(-1.0, a, kin, T, decay) * 10.0))
                         / sink_at(-1.0, a, kin, T, decay), rel=1e-9)


def sink_at(eta, a, kin, T, decay):
    return a * kin.k * math.exp((1 - kin.alpha) * F / (R_GAS * T) * eta) + decay


def _charge_logs(cases, n=11, v0=3.5):
    """Logs [cells, 1 cycle, n] of a rested cell at v0 charged at each (C-rate, T [K])
    (C-rate 0: the cell rests)."""
    V, I, T = (np.full((len(cases), 1, n), np.nan) for _ in range(3))
    for b, (rate, temp) in enumerate(cases):
        V[b, 0] = v0
        I[b, 0] = 0.0
        I[b, 0, 1:] = -rate * 5.0  # OKane2022: a 5 A h cell
        T[b, 0] = temp
    return V, I, T


def test_cold_fast_charge_plates_warm_slow_charge_and_rest_do_not():
    cases = [(2.0, 273.15), (0.5, 298.15), (0.0, 273.15)]
    V, I, T = _charge_logs(cases)
    res = plating_over_life(CoreParams.nominal(len(cases)), V, I, T, np.zeros((3, 1)),
                            np.full((3, 1), 5.0), PERIOD, COARSE)
    assert res["event_est"][:, 0].tolist() == [1.0, 0.0, 0.0]
    assert res["margin_min_est"][0, 0] < 0.0 < res["margin_min_est"][1, 0]
    # the cold fast charge plates far more lithium than the others
    assert res["plated_end_est"][0, 0] > 10 * max(res["plated_end_est"][1:, 0])
    assert res["cell_cycles"] == 3


def test_lost_lithium_moves_the_start_and_skipped_cycles_stay_nan():
    V, I, T = _charge_logs([(1.0, 283.15)] * 2)
    V, I, T = (np.concatenate([a, np.full_like(a, np.nan)], axis=1) for a in (V, I, T))
    res = plating_over_life(CoreParams.nominal(2), V, I, T, np.array([[0.0, 0.0], [20.0, 0.0]]),
                            np.full((2, 2), 5.0), PERIOD, COARSE)
    assert np.isnan(res["event_est"][:, 1]).all() and np.isnan(res["plated_end_est"][:, 1]).all()
    # the life-tracked lithium enters: the same voltage read on the aged line is another state
    assert abs(res["margin_min_est"][1, 0] - res["margin_min_est"][0, 0]) > 5e-3


def test_event_scores_on_constructed_arrays():
    truth = np.array([1, 1, 1, 0, 0, np.nan, 1])
    est = np.array([1, 1, 0, 1, 0, 1, np.nan])
    s = event_scores(truth, est)
    assert (s["tp"], s["fp"], s["fn"], s["tn"], s["n"]) == (2, 1, 1, 1, 5)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    none = event_scores(np.zeros(4), np.zeros(4))
    assert math.isnan(none["precision"]) and math.isnan(none["f1"]) and none["tn"] == 4
    with pytest.raises(MetricsError, match="shape"):
        event_scores(np.zeros(3), np.zeros(4))


def test_a_store_without_plating_truth_validates_but_cannot_be_scored():
    from packtwin.eval.plating_life import judge

    dims = schema.SUMMARY_DIMS
    ds = xr.Dataset({"plated_lithium_end": (dims, np.zeros((1, 2, 3)))},
                    coords={d: np.arange(n) for d, n in zip(dims, (1, 2, 3))})
    with pytest.raises(schema.SchemaError, match=r"plating_event.*old\.zarr|old\.zarr"):
        judge(ds, ds, "store 'old.zarr'")
    # declared for new stores, optional for validation of old ones
    assert set(schema.ADDED_SUMMARIES) <= set(schema.VARIABLES)


def test_a_truth_store_written_before_the_plating_summaries_still_validates(synthetic_store):
    from packtwin.data import store

    old = store.open_store(synthetic_store).drop_vars(list(schema.ADDED_SUMMARIES))
    assert schema.validate(old, kind="truth") == []
    # asked for by name, they are still required
    assert any("plating_event" in p for p in
               schema.validate(old, kind="truth", variables=["plating_event"]))


def test_positive_start_counts_the_measured_charge_from_the_first_rested_voltage():
    from packtwin.physics.core import ReducedCore
    from packtwin.physics.plating import aged_line, positive_start

    params = CoreParams.nominal(1)
    n = 6
    V = np.full((1, 3, n), 3.6)
    I = np.zeros((1, 3, n))
    I[0, 0, 0] = 99.0  # sample 0 is the previous period's current: never counted
    I[0, 0, 1:] = 2.0  # cycle 1 discharges 2 A for 5 periods
    I[0, 1, 1:3] = -1.0  # cycle 2 charges 1 A for 2 periods
    lengths = np.full((1, 3), n)
    sto = positive_start(params, V, I, lengths, np.zeros((1, 3)), PERIOD)
    cap_p = aged_line(ReducedCore(params), torch_zero()).cap_p.item()
    step = PERIOD / (F * cap_p)
    assert sto[0, 1] - sto[0, 0] == pytest.approx(10.0 * step, rel=1e-12)
    assert sto[0, 2] - sto[0, 1] == pytest.approx(-2.0 * step, rel=1e-12)


def torch_zero():
    import torch

    return torch.zeros(1, dtype=torch.float64)


def test_batches_of_cycles_carry_the_plated_lithium_exactly():
    V, I, T = _charge_logs([(2.0, 273.15), (1.0, 298.15)], n=6)
    V, I, T = (np.concatenate([a, a], axis=1) for a in (V, I, T))  # two cycles each
    I[:, 1, 1:] = 0.0  # the second cycle rests: plated lithium is stripped from the first's
    args = (np.zeros((2, 2)), np.full((2, 2), 5.0), PERIOD, COARSE)
    whole = plating_over_life(CoreParams.nominal(2), V, I, T, *args, batch=256)
    one_cycle_at_a_time = plating_over_life(CoreParams.nominal(2), V, I, T, *args, batch=1)
    for key in ("margin_min_est", "event_est", "plated_end_est"):
        np.testing.assert_allclose(one_cycle_at_a_time[key], whole[key], rtol=1e-12, err_msg=key)
    assert whole["plated_end_est"][0, 1] < whole["plated_end_est"][0, 0]


def _coupled() -> CoreConfig:
    """The core that plates itself (the default, PLATING_CORE) on the coarse grid."""
    import dataclasses

    return dataclasses.replace(COARSE, plating=True)


def test_the_plating_core_plates_in_a_cold_fast_charge_and_takes_that_current():
    cases = [(2.0, 273.15), (0.5, 298.15), (0.0, 273.15)]
    V, I, T = _charge_logs(cases)
    args = (np.zeros((3, 1)), np.full((3, 1), 5.0), PERIOD)
    coupled = plating_over_life(CoreParams.nominal(3), V, I, T, *args, _coupled())
    after = plating_over_life(CoreParams.nominal(3), V, I, T, *args, COARSE)
    assert coupled["event_est"][:, 0].tolist() == [1.0, 0.0, 0.0]
    assert coupled["plated_end_est"][0, 0] > 10 * max(coupled["plated_end_est"][1:, 0])
    # the plating current leaves the intercalation less: its overpotential, and so the lowest
    # margin, is less negative than in the core that does not plate
    assert after["margin_min_est"][0, 0] < coupled["margin_min_est"][0, 0] < 0.0


def test_the_plating_cores_sweeps_equal_the_chain_of_cycles_run_one_after_another():
    """Cycle after cycle by hand (each from the previous end's plated lithium, decayed) against
    plating_over_life's batched sweeps: equal to PLATED_TOL."""
    from packtwin.physics.plating import (PLATED_TOL, _dead_decay, PlatingKinetics,
                                          positive_start, run_cycles)

    # (margins -60 and -130 mV; at 2C / 0 degC, -370 mV, far past the stores' -100 mV, the
    # coarse core's Newton iterations leave 2 % of the plated lithium unconverged, so a batch
    # that starts Newton cold where another warm-starts it differs by that)
    V, I, T = _charge_logs([(1.0, 273.15), (1.5, 278.15)], n=8)
    V, I, T = (np.concatenate([a, a, a], axis=1) for a in (V, I, T))
    I[:, 1, 1:4] = 3.0  # cycle 2 discharges a little, then rests: it strips
    I[:, 1, 4:] = 0.0
    lli, sei = np.array([[0.0, 0.1, 0.2]] * 2), np.full((2, 3), 5.0)
    params, cfg = CoreParams.nominal(2), _coupled()
    res = plating_over_life(params, V, I, T, lli, sei, PERIOD, cfg)
    lengths = np.full((2, 3), V.shape[-1])
    sto_p = positive_start(params, V, I, lengths, lli, PERIOD)
    c_pl, by_hand = None, np.zeros((2, 3))
    for cyc in range(3):
        run = run_cycles(params, V[:, cyc], I[:, cyc], T[:, cyc], lengths[:, cyc], lli[:, cyc],
                         sei[:, cyc], PERIOD, cfg, sto_p[:, cyc], c_pl)
        decay = _dead_decay(sei[:, cyc], PlatingKinetics()) * (V.shape[-1] - 1) * PERIOD
        c_pl = run.c_pl_end * np.exp(-decay)[:, None]
        by_hand[:, cyc] = c_pl.mean(1)
    np.testing.assert_allclose(res["plated_end_est"], by_hand, atol=2 * PLATED_TOL)
    assert by_hand[0, 1] < by_hand[0, 0] and by_hand[0, 2] > by_hand[0, 1] > 0
    assert 2 <= res["sweeps"] <= 3  # the chain settles in a few sweeps, not one per cycle


def test_every_nth_cycle_runs_the_core_on_those_and_interpolates_the_plated_lithium():
    V, I, T = _charge_logs([(1.5, 273.15), (0.5, 298.15)], n=6)
    V, I, T = (np.concatenate([a] * 5, axis=1) for a in (V, I, T))  # five cycles each
    I[:, 1::2, 1:] = 0.0  # cycles 2 and 4 rest: the plated lithium strips
    V[1, 4] = I[1, 4] = T[1, 4] = np.nan  # cell 1 logged 4 cycles
    args = (np.zeros((2, 5)), np.full((2, 5), 5.0), PERIOD, _coupled())
    every = plating_over_life(CoreParams.nominal(2), V, I, T, *args, every=2)
    assert every["every"] == 2 and every["cell_cycles"] == 3 + 3  # 1, 3, 5 / 1, 3, 4 (its last)
    run = np.array([[1, 0, 1, 0, 1], [1, 0, 1, 1, 0]], bool)
    assert np.isfinite(every["event_est"][run]).all() and np.isnan(every["event_est"][~run]).all()
    pl = every["plated_end_est"]
    np.testing.assert_allclose(pl[0, 1], 0.5 * (pl[0, 0] + pl[0, 2]), rtol=1e-12)
    np.testing.assert_allclose(pl[1, 1], 0.5 * (pl[1, 0] + pl[1, 2]), rtol=1e-12)
    assert np.isnan(pl[1, 4])  # never logged: never filled
    # the cycles run start where the chain of run cycles leaves them: cycle 1 is exactly the
    # every-cycle run's; the others within what one skipped (resting) cycle's stripping changes
    whole = plating_over_life(CoreParams.nominal(2), V, I, T, *args)
    np.testing.assert_allclose(every["margin_min_est"][:, 0], whole["margin_min_est"][:, 0])
    np.testing.assert_array_equal(every["event_est"][run], whole["event_est"][run])
    with pytest.raises(ValueError, match="every must be >= 1, got 0"):
        plating_over_life(CoreParams.nominal(2), V, I, T, *args, every=0)
