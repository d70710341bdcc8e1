"""SEI growth law: sqrt(t) exact solution in the residual, Arrhenius, and the plating criterion."""

import dataclasses
import math

import pytest
import torch

from packtwin.physics.analytic import sei_thickness_constant_T
from packtwin.physics.constants import F, okane2022
from packtwin.physics.sei import (plating_margin_criterion, sei_current_density,
                                  sei_growth_rate, sei_residual)

DT = torch.float64
CELL = okane2022()


@pytest.mark.parametrize("T", [273.15, 298.15, 318.15])
def test_sqrt_t_solution_zero_residual_autograd(T):
    t = torch.linspace(0.0, 1000 * 3600.0, 101, dtype=DT, requires_grad=True)
    L = sei_thickness_constant_T(t, CELL.sei.L_0, T, CELL)
    (dL_dt,) = torch.autograd.grad(L.sum(), t, create_graph=True)
    res = sei_residual(dL_dt, L, T, CELL)
    assert (res.abs() / dL_dt.abs()).max() < 1e-12


def test_sqrt_t_solution_zero_residual_fd():
    t = torch.linspace(0.0, 3.6e6, 2001, dtype=DT)
    L = sei_thickness_constant_T(t, CELL.sei.L_0, 298.15, CELL)
    dL_dt = torch.gradient(L, spacing=(t,), edge_order=2)[0]
    res = sei_residual(dL_dt, L, 298.15, CELL)
    # 2nd-order FD on a sqrt: error ~h^2 L'''/L' is largest at t = 0 where L bends most.
    assert (res.abs() / dL_dt.abs()).max() < 1e-3


def test_rate_formula_and_arrhenius():
    s = CELL.sei
    L = torch.tensor(10e-9, dtype=DT)
    k = s.V_bar * s.D_sol * s.c_sol / s.z
    assert math.isclose(float(sei_growth_rate(L, s.T_ref, s)), k / 10e-9, rel_tol=1e-14)
    ratio = float(sei_growth_rate(L, 318.15, CELL) / sei_growth_rate(L, 298.15, CELL))
    assert math.isclose(ratio, math.exp(s.E / 8.31446261815324 * (1 / 298.15 - 1 / 318.15)),
                        rel_tol=1e-12)
    # Per-cell solvent diffusivity scales the rate linearly.
    assert math.isclose(float(sei_growth_rate(L, 298.15, CELL, D_sol=2 * s.D_sol)),
                        2 * k / 10e-9, rel_tol=1e-14)
    # Current and thickness rate are the same reaction: dL/dt = -V_bar j_sei / (F z).
    assert math.isclose(float(-s.V_bar * sei_current_density(L, 300.0, CELL) / (F * s.z)),
                        float(sei_growth_rate(L, 300.0, CELL)), rel_tol=1e-14)
    with pytest.raises(TypeError, match="SEIConstants"):
        sei_growth_rate(L, 298.15, {"D_sol": 1.0})


def test_wrong_temperature_shows_in_residual():
    t = torch.linspace(3600.0, 3.6e6, 50, dtype=DT, requires_grad=True)
    L = sei_thickness_constant_T(t, 5e-9, 318.15, dataclasses.replace(CELL.sei))
    (dL_dt,) = torch.autograd.grad(L.sum(), t)
    assert (sei_residual(dL_dt, L, 298.15, CELL).abs() / dL_dt).min() > 0.5


def test_plating_criterion():
    phi = torch.tensor([-0.05, -0.001, 0.0, 0.001, 0.1], dtype=DT, requires_grad=True)
    crit = plating_margin_criterion(phi)
    assert crit.possible.tolist() == [True, True, False, False, False]
    assert crit.soft[0] > 0.99 and crit.soft[-1] < 0.01 and float(crit.soft[2].detach()) == 0.5
    (g,) = torch.autograd.grad(crit.soft.sum(), phi)
    assert (g < 0).all()
    with pytest.raises(ValueError, match="width"):
        plating_margin_criterion(phi, width=0.0)
