"""Butler-Volmer: inverse round trip, and OKane2022's exchange current equal to PyBaMM's."""

import numpy as np
import pytest
import torch

from packtwin.physics.constants import F, R_GAS, okane2022
from packtwin.physics.kinetics import (butler_volmer, electrode_exchange_current_density,
                                       exchange_current_density, inverse_butler_volmer)

DT = torch.float64


def test_inverse_butler_volmer_round_trip():
    eta = torch.linspace(-0.3, 0.3, 601, dtype=DT)
    T = torch.tensor([263.15, 298.15, 333.15], dtype=DT)[:, None]
    j0 = torch.tensor([0.1, 1.0, 5.0], dtype=DT)[:, None]
    j = butler_volmer(j0, eta, T)
    back = inverse_butler_volmer(j, j0, T)
    assert (back - eta).abs().max() < 1e-12
    j_grid = torch.logspace(-4, 2, 50, dtype=DT)
    j_grid = torch.cat([-j_grid, j_grid])
    assert torch.allclose(butler_volmer(1.3, inverse_butler_volmer(j_grid, 1.3, 298.15), 298.15),
                          j_grid, rtol=1e-10, atol=0)


def test_butler_volmer_limits():
    T = 298.15
    # Linear regime: j = j0 F eta / RT; sign: positive eta drives de-intercalation (j > 0).
    eta = torch.tensor(1e-6, dtype=DT)
    assert torch.isclose(butler_volmer(2.0, eta, T), 2.0 * F * eta / (R_GAS * T), rtol=1e-9)
    # alpha = 0.5 is 2 j0 sinh(F eta / 2RT).
    eta = torch.linspace(-0.2, 0.2, 11, dtype=DT)
    assert torch.allclose(butler_volmer(0.7, eta, T),
                          2 * 0.7 * torch.sinh(F * eta / (2 * R_GAS * T)), rtol=1e-12)
    # Asymmetric alpha: Tafel slope of the anodic branch is (1 - alpha) F / RT.
    j = butler_volmer(1.0, torch.tensor(0.5, dtype=DT), T, alpha=0.3)
    assert torch.isclose(torch.log(j), torch.tensor(0.7 * F * 0.5 / (R_GAS * T), dtype=DT),
                         rtol=1e-9)


@pytest.mark.parametrize("domain", ["negative", "positive"])
def test_exchange_current_equals_pybamm(domain):
    pybamm = pytest.importorskip("pybamm")
    pv = pybamm.ParameterValues("OKane2022")
    e = okane2022().electrode(domain)
    f = pv[f"{domain.capitalize()} electrode exchange-current density [A.m-2]"]
    sto = np.linspace(0.01, 0.99, 25)
    ce = np.array([200.0, 1000.0, 2000.0])
    T = np.array([263.15, 298.15, 333.15])
    S, C, TT = (a.ravel() for a in np.meshgrid(sto, ce, T, indexing="ij"))
    cs = S * e.c_max
    want = np.asarray(f(pybamm.Vector(C), pybamm.Vector(cs), pybamm.Scalar(e.c_max),
                        pybamm.Vector(TT)).evaluate()).ravel()
    got = electrode_exchange_current_density(torch.tensor(cs), torch.tensor(C), torch.tensor(TT),
                                             e).numpy()
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-12, f"{domain} j0 max relative error {rel:.3g}"


def test_exchange_current_finite_gradient_at_bounds():
    e = okane2022().neg
    cs = torch.tensor([0.0, e.c_max / 2, e.c_max], dtype=DT, requires_grad=True)
    j0 = exchange_current_density(cs, 1000.0, e.c_max, e.k_ref)
    (g,) = torch.autograd.grad(j0.sum(), cs)
    assert torch.isfinite(g).all() and torch.isfinite(j0).all()
    assert j0[0] < 1e-3 * j0[1]
