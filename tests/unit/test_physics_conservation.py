"""Conservation: interfacial current from the cell current, sphere averages, lithium balance."""

import math

import pytest
import torch

from packtwin.physics.analytic import constant_flux_sphere, constant_flux_sphere_average
from packtwin.physics.constants import F, okane2022
from packtwin.physics.conservation import (average_concentration, expected_concentration_change,
                                           lithium_balance_residual, lithium_moles,
                                           mean_interfacial_current)

DT = torch.float64
CELL = okane2022()


def test_mean_interfacial_current_signs_and_value():
    I = torch.tensor([5.0, -2.5], dtype=DT)  # 1C discharge, C/2 charge
    jn = mean_interfacial_current(I, CELL.neg)
    jp = mean_interfacial_current(I, CELL.pos)
    n = CELL.neg
    assert math.isclose(float(jn[0]), 5.0 / (3 * n.eps_s / n.R * n.L * n.A), rel_tol=1e-14)
    assert jn[0] > 0 and jp[0] < 0 and jn[1] < 0 and jp[1] > 0  # discharge de-lithiates the anode
    # Total reaction current integrated over each electrode is the cell current.
    for e, j in ((CELL.neg, jn), (CELL.pos, jp)):
        assert torch.allclose(e.sign * j * e.a * e.L * e.A, I, rtol=1e-14)
    # Per-cell overrides broadcast.
    eps = torch.tensor([0.7, 0.8], dtype=DT)
    assert torch.allclose(mean_interfacial_current(5.0, n, eps_s=eps) * eps,
                          jn[0] * n.eps_s * torch.ones(2, dtype=DT))


def test_average_concentration_exact_cases():
    rho = torch.linspace(0, 1, 2001, dtype=DT)
    assert torch.isclose(average_concentration(torch.full((2001,), 7.0, dtype=DT), rho),
                         torch.tensor(7.0, dtype=DT), rtol=1e-14)
    # Mean of rho^2 over a sphere is 3/5.
    assert abs(float(average_concentration(rho ** 2, rho)) - 0.6) < 1e-6
    # Cell-centre grid (PyBaMM's): finite-volume weights sum to one and converge to 3/5.
    centres = (torch.arange(400, dtype=DT) + 0.5) / 400
    assert torch.isclose(average_concentration(torch.ones(400, dtype=DT), centres),
                         torch.tensor(1.0, dtype=DT), rtol=1e-14)
    assert abs(float(average_concentration(centres ** 2, centres)) - 0.6) < 1e-5
    with pytest.raises(ValueError, match="finite_volume"):
        average_concentration(centres, centres, method="trapezoid")
    with pytest.raises(ValueError, match="rho has shape"):
        average_concentration(torch.ones(3, 5), centres)


def test_constant_flux_average_changes_by_flux_integral():
    """Crank's solution: the sphere's mean moves by exactly -3 j t / (F R) (checked via the
    lithium balance of a whole electrode carrying the matching cell current)."""
    e = CELL.neg
    I = 5.0  # A, discharge
    j = float(mean_interfacial_current(I, e))
    rho = torch.linspace(0, 1, 801, dtype=DT)
    t = torch.tensor([60.0, 300.0, 900.0, 1800.0], dtype=DT)
    c0 = 25000.0
    c = constant_flux_sphere(rho[None, :], t[:, None], c0, j, e.D_ref, e.R)
    c_avg = average_concentration(c, rho)
    expected = constant_flux_sphere_average(t, c0, j, e.R)
    delta = (expected - c0).abs()
    assert ((c_avg - expected).abs() / delta).max() < 1e-4
    res = lithium_balance_residual(c_avg, torch.tensor(c0, dtype=DT), I * t, e)
    assert (res.abs() / delta).max() < 1e-4
    # Lithium moles leaving the negative electrode equal the charge passed / F.
    moles = lithium_moles(c_avg, e) - lithium_moles(torch.tensor(c0, dtype=DT), e)
    assert torch.allclose(-moles * F, I * t, rtol=1e-4)
    # The positive electrode gains what the negative loses.
    assert torch.allclose(expected_concentration_change(I * t, CELL.pos) * CELL.pos.active_volume,
                          -expected_concentration_change(I * t, e) * e.active_volume, rtol=1e-14)


def test_side_reactions_reduce_the_negative_electrode_lithium():
    e = CELL.neg
    Q = torch.tensor(3600.0 * 2.0, dtype=DT)  # 2 Ah charged into the cell -> Q < 0
    side = 0.01 * Q.abs()  # 1 % of it to SEI
    dc_no_side = expected_concentration_change(-Q, e)
    dc_side = expected_concentration_change(-Q, e, side_charge_C=side)
    assert dc_no_side > 0 and dc_side < dc_no_side
    assert torch.isclose(dc_side / dc_no_side, torch.tensor(0.99, dtype=DT), rtol=1e-12)
    # A wrong side charge shows in the residual.
    r = lithium_balance_residual(torch.tensor(1000.0, dtype=DT) + dc_side, 1000.0, -Q, e)
    assert r.abs() > 0.5 * (dc_no_side - dc_side)


def test_side_charges_from_states():
    from packtwin.physics.conservation import plating_side_charge, sei_side_charge

    e, s = CELL.neg, CELL.sei
    # 1 nm of SEI over the whole negative electrode's particle surface (a L A), z Li per SEI mol.
    q = sei_side_charge(torch.tensor(s.L_0 + 1e-9, dtype=DT), s.L_0, e, s)
    surface = 3 * e.eps_s / e.R * e.L * e.A  # m2
    assert math.isclose(float(q), F * s.z * 1e-9 * surface / s.V_bar, rel_tol=1e-12)
    assert float(sei_side_charge(torch.tensor(s.L_0, dtype=DT), s.L_0, e, s)) == 0.0
    q_pl = plating_side_charge(torch.tensor(10.0, dtype=DT), e, c_dead=2.0)
    assert math.isclose(float(q_pl), F * 12.0 * e.L * e.A, rel_tol=1e-14)
