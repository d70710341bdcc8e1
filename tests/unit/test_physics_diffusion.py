"""Fick's law in a sphere: exact solutions put into the residuals give ~0, by autograd and by FD."""

import math

import pytest
import torch

from packtwin.physics.analytic import constant_flux_sphere, polynomial_sphere
from packtwin.physics.constants import F, okane2022
from packtwin.physics.derivatives import Derivs, autograd_derivs, derivatives, fd_derivs
from packtwin.physics.diffusion import (arrhenius, centre_condition_residual,
                                        diffusion_term_scale, fick_residual,
                                        fick_residual_normalised, particle_diffusivity,
                                        surface_flux_residual)

DT = torch.float64
NEG = okane2022().neg
D, R = NEG.D_ref, NEG.R
J = 1.5  # A/m2, about the negative electrode's mean j at 1C (5 A)


def _grid_poly(t, r, **kw):
    tt, rr = torch.meshgrid(t, r, indexing="ij")
    return polynomial_sphere(rr, tt, D, **kw)


def test_fd_exact_on_quadratic_nonuniform_grid_including_centre():
    # c = r^2 + 6Dt is a quadratic: 3-point stencils differentiate it exactly on any grid.
    r = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.55, 0.7, 0.9, 1.0], dtype=DT) * R
    t = torch.tensor([0.0, 3.0, 4.0, 10.0, 30.0], dtype=DT)
    c = _grid_poly(t, r, c0=1000.0, k2=1e12)
    d = fd_derivs(c, t, r)
    res = fick_residual(*d, r, D)
    scale = diffusion_term_scale(*d, r, D).mean()
    assert (res.abs().max() / scale) < 1e-9
    assert centre_condition_residual(d.dc_dr[..., 0]).abs().max() < 1e-9 * d.dc_dr.abs().max()


def test_fd_second_order_convergence_on_quartic():
    # The quartic part is not exact for 3-point stencils: the error must fall ~4x per halving.
    errs = []
    for n in (21, 41, 81):
        r = torch.linspace(0.0, 1.0, n, dtype=DT)
        t = torch.linspace(0.0, 1.0, 5, dtype=DT)
        tt, rr = torch.meshgrid(t, r, indexing="ij")
        c = polynomial_sphere(rr, tt, 1.0, k2=0.0, k4=1.0)  # rho units, D = 1
        d = fd_derivs(c, t, r)
        errs.append((fick_residual(*d, r, 1.0).abs().max()
                     / diffusion_term_scale(*d, r, 1.0).mean()).item())
    assert errs[0] / errs[1] > 3.5 and errs[1] / errs[2] > 3.5, errs


def test_autograd_polynomial_including_centre():
    rho = torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=DT).requires_grad_()
    t = torch.tensor([1.0, 5.0, 7.0, 100.0], dtype=DT).requires_grad_()
    c = polynomial_sphere(rho * R, t, D, c0=5.0, k2=1e12, k4=1e22)
    d = autograd_derivs(c, t, rho)
    res = fick_residual_normalised(*d, rho, D, R)
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / R**2).mean()
    assert (res.abs().max() / scale).item() < 1e-12
    # create_graph: the residual itself can be trained on.
    assert res.requires_grad


def _crank_grid(n_r=201, n_t=31):
    rho = torch.linspace(0.0, 1.0, n_r, dtype=DT)
    t = torch.linspace(200.0, 800.0, n_t, dtype=DT)
    tt, rr = torch.meshgrid(t, rho, indexing="ij")
    return rho, t, constant_flux_sphere(rr, tt, 20000.0, J, D, R)


def test_crank_constant_flux_fd_residuals():
    rho, t, c = _crank_grid()
    d = fd_derivs(c, t, rho)
    res = fick_residual_normalised(*d, rho, D, R)
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / R**2).mean()
    # 3-point FD on a 201-point radius grid: truncation ~h^2 c'''' / c'' ~ 1e-4 near the surface.
    assert (res.abs().max() / scale).item() < 2e-3
    flux = surface_flux_residual(d.dc_dr[..., -1], D, J, R=R)
    assert (flux.abs().max() / (J / F)).item() < 1e-5  # measured 7e-7
    assert (d.dc_dr[..., 0].abs().max() / d.dc_dr[..., -1].abs().min()).item() < 1e-3


def test_crank_constant_flux_autograd_residuals():
    rho = torch.tensor([0.05, 0.3, 0.6, 0.9, 1.0], dtype=DT).requires_grad_()
    t = torch.tensor([50.0, 200.0, 400.0, 600.0, 3000.0], dtype=DT).requires_grad_()
    c = constant_flux_sphere(rho, t, 20000.0, J, D, R)
    d = autograd_derivs(c, t, rho)
    res = fick_residual_normalised(*d, rho, D, R)
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / R**2).mean()
    assert (res.abs().max() / scale).item() < 1e-8
    flux = surface_flux_residual(d.dc_dr[-1], D, J, R=R)
    assert (flux.abs() / (J / F)).item() < 1e-8
    # Physical r and normalised rho give the same residual.
    res_r = fick_residual(d.dc_dt, d.dc_dr / R, d.d2c_dr2 / R**2, rho * R, D)
    assert torch.allclose(res_r, res, rtol=0, atol=1e-9 * scale.item())


def test_residual_detects_wrong_diffusivity():
    # A residual that cannot fail is no oracle: 10 % off in D must show up clearly.
    rho, t, c = _crank_grid(101, 21)
    d = fd_derivs(c, t, rho)
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / R**2).mean()
    bad = fick_residual_normalised(*d, rho, 1.1 * D, R)
    assert (bad.abs().mean() / scale).item() > 0.02


def test_derivative_switch_and_errors():
    rho, t, c = _crank_grid(11, 5)
    assert isinstance(derivatives("fd", c, t, rho), Derivs)
    with pytest.raises(ValueError, match="unknown derivative method"):
        derivatives("spectral", c, t, rho)
    with pytest.raises(ValueError, match="t has shape"):
        fd_derivs(c, t[:-1], rho)
    with pytest.raises(ValueError, match="strictly increasing"):
        fd_derivs(c, t.flip(0), rho)
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="expand"):
        autograd_derivs(x * 2, torch.ones(1, requires_grad=True), x)
    with pytest.raises(ValueError, match="does not require grad"):
        autograd_derivs(x * 2, torch.ones(3), x)


def test_fd_batched_leading_dims():
    rho, t, c = _crank_grid(21, 7)
    batch = torch.stack([c, 2 * c])  # [2, T, R]
    d = fd_derivs(batch, t, rho)
    assert d.dc_dt.shape == batch.shape
    assert torch.allclose(d.d2c_dr2[1], 2 * d.d2c_dr2[0])


def test_arrhenius_matches_closed_form():
    T = torch.tensor([273.15, 298.15, 313.15], dtype=DT)
    got = particle_diffusivity(NEG, T)
    want = NEG.D_ref * torch.exp(NEG.Ea_D / 8.31446261815324 * (1 / 298.15 - 1 / T))
    assert torch.allclose(got, want, rtol=1e-14)
    assert arrhenius(2.0, 3e4, 298.15) == 2.0
    assert math.isclose(arrhenius(1.0, NEG.Ea_D, 313.15), float(want[2] / NEG.D_ref), rel_tol=1e-14)
