"""Lithium inventory from a check-up's slow discharge (packtwin.physics.checkup_inventory)."""

import numpy as np
import pytest
import torch

from packtwin.physics import ocp
from packtwin.physics.checkup_inventory import (checkup_lithium, discharge_block,
                                                electrode_capacities, fit_checkup)
from packtwin.physics.constants import F

PERIOD = 60.0


def _ocv_discharge(x0, y0, r_ohm, current=1.0, samples=280, polarise=0.0):
    """V/I of a discharge that follows the fit's own model exactly, a rest sample before it and
    after it, and (``polarise``) an overpotential decaying over the first minutes, which the
    fit's leading ``skip`` samples are there to leave out."""
    cap_n, cap_p = electrode_capacities()
    i = np.full(samples, current)
    q = np.cumsum(i) * PERIOD / F
    x, y = torch.as_tensor(x0 - q / cap_n), torch.as_tensor(y0 + q / cap_p)
    v = (ocp.ocp_positive(y) - ocp.ocp_negative(x)).numpy() - i * r_ohm
    v[:10] -= polarise * (1.0 - np.arange(10) / 10.0)
    rest_v = float(v[0] + r_ohm * current)
    return np.r_[rest_v, v, v[-1] + 0.1], np.r_[0.0, i, 0.0]


def test_fit_recovers_the_inventory_of_an_exact_ocv_discharge():
    cap_n, cap_p = electrode_capacities()
    x0, y0, r = 0.83, 0.29, 0.041
    v, i = _ocv_discharge(x0, y0, r, polarise=0.05)
    fit = fit_checkup(v, i, PERIOD)
    assert fit is not None and fit.rms_v < 1e-5
    assert fit.n_li_mol == pytest.approx(x0 * cap_n + y0 * cap_p, rel=1e-6, abs=0)
    assert fit.resistance_ohm == pytest.approx(r, rel=1e-3, abs=0)
    # the 50 mV start-up transient is what the skipped samples hold: fitted, it biases n
    biased = fit_checkup(v, i, PERIOD, skip=0)
    assert abs(biased.n_li_mol - fit.n_li_mol) > 100 * abs(fit.n_li_mol - (x0 * cap_n
                                                                            + y0 * cap_p))


def test_inventory_does_not_depend_on_where_the_charge_count_starts():
    # a log that starts a few samples into the discharge: the stoichiometries move, n does not
    v, i = _ocv_discharge(0.83, 0.29, 0.04)
    full, late = fit_checkup(v, i, PERIOD), fit_checkup(v[5:], i[5:], PERIOD)
    assert late.sto_n0 < full.sto_n0 - 1e-3
    assert late.n_li_mol == pytest.approx(full.n_li_mol, rel=1e-6, abs=0)


def test_lost_lithium_is_read_from_the_change_between_checkups():
    cap_n, _ = electrode_capacities()
    lost = 0.004 * cap_n  # lithium gone from the negative electrode at the same positive state
    a = fit_checkup(*_ocv_discharge(0.83, 0.29, 0.040), PERIOD)
    b = fit_checkup(*_ocv_discharge(0.83 - lost / cap_n, 0.29, 0.042), PERIOD)
    assert a.n_li_mol - b.n_li_mol == pytest.approx(lost, rel=1e-4, abs=0)


def test_no_discharge_and_bad_shapes():
    assert fit_checkup(np.full(50, 4.0), np.zeros(50), PERIOD) is None  # a rest only
    v, i = _ocv_discharge(0.83, 0.29, 0.04, samples=15)  # too short once skipped
    assert fit_checkup(v, i, PERIOD) is None
    with pytest.raises(ValueError, match="1-D of one length"):
        fit_checkup(np.zeros(10), np.zeros(11), PERIOD)
    with pytest.raises(ValueError, match=r"\(cycles, samples\)"):
        checkup_lithium(np.zeros((3, 10)), np.zeros((3, 10)), np.zeros(2), PERIOD)
    assert discharge_block(np.array([0, 2, 2, 0, 2]), 1.0) == slice(1, 3)


def test_only_checkup_cycles_are_read():
    v, i = _ocv_discharge(0.83, 0.29, 0.04)
    V, I = np.stack([v, v, v]), np.stack([i, i, i])
    out = checkup_lithium(V, I, np.array([0, 1, 0]), PERIOD)
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[1])
    # a "check-up" whose voltage is not a slow discharge along the OCPs is not read
    flat = V.copy()
    flat[1, 1:-1] = 3.6
    fit = fit_checkup(flat[1], I[1], PERIOD)
    assert fit is None or fit.rms_v > 0.02
    assert np.isnan(checkup_lithium(flat, I, np.array([0, 1, 0]), PERIOD)).all()


def test_lithium_removed_in_pybamm_is_read_back():
    """A C/5 DFN discharge of OKane2022 (lumped thermal) from its initial state, and the same
    cell with 1.5 % less lithium in the negative electrode: the fit, with the nominal electrodes,
    reads PyBaMM's own change of ``Total lithium in particles [mol]`` within 3 %."""
    pybamm = pytest.importorskip("pybamm")

    def run(scale):
        pv = pybamm.ParameterValues("OKane2022")
        key = "Initial concentration in negative electrode [mol.m-3]"
        pv[key] = pv[key] * scale
        model = pybamm.lithium_ion.DFN({"thermal": "lumped"})
        exp = pybamm.Experiment(["Discharge at C/5 until 2.5 V"], period="60 seconds")
        sol = pybamm.Simulation(model, parameter_values=pv, experiment=exp).solve()
        v, i = sol["Terminal voltage [V]"].entries, sol["Current [A]"].entries
        return fit_checkup(v, i, PERIOD), float(sol["Total lithium in particles [mol]"].entries[0])

    (fit_a, n_a), (fit_b, n_b) = run(1.0), run(0.985)
    assert n_a - n_b > 0
    assert (fit_a.n_li_mol - fit_b.n_li_mol) == pytest.approx(n_a - n_b, rel=0.03, abs=0)
    # the absolute inventory carries the fit's model-form bias, small against the change read
    assert abs(fit_a.n_li_mol / n_a - 1) < 0.01
