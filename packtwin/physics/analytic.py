"""Exact solutions of the particle-diffusion and SEI equations, for tests and fixtures.

All are torch expressions in their coordinates, so autograd derivatives work through them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.constants import F
from packtwin.physics.sei import sei_growth_rate


@lru_cache(maxsize=8)
def sphere_eigenvalues(n_terms: int) -> np.ndarray:
    """The first ``n_terms`` positive roots of tan(lam) = lam, [n_terms] float64.

    They are the decay rates of the zero-flux modes sin(lam rho) / rho of a sphere; root n lies in
    (n pi, (n + 1/2) pi).
    """
    n = np.arange(1, n_terms + 1, dtype=np.float64)
    lo, hi = n * math.pi + 1e-12, (n + 0.5) * math.pi - 1e-12
    for _ in range(80):  # bisection on sin - lam cos, which changes sign once in each bracket
        mid = 0.5 * (lo + hi)
        f_mid = np.sin(mid) - mid * np.cos(mid)
        f_lo = np.sin(lo) - lo * np.cos(lo)
        same = np.sign(f_mid) == np.sign(f_lo)
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def constant_flux_sphere(rho: Tensor, t: Tensor, c0: float, j: float, D: float, R: float,
                         n_terms: int = 200) -> Tensor:
    """Concentration in a sphere, uniform c0 at t = 0, constant surface reaction current j.

    Crank, *The Mathematics of Diffusion* (1975), eq. 6.20 (constant flux F0 into a sphere), with
    F0 = -j / F (PyBaMM's convention: j > 0 takes lithium out, -D dc/dr|_R = j / F):

        c = c0 + (F0 R / D) [3 tau + rho^2 / 2 - 3/10
                             - 2 sum_n sin(lam_n rho) / (lam_n^2 sin(lam_n) rho) exp(-lam_n^2 tau)]

    with tau = D t / R^2 and lam_n the roots of tan(lam) = lam. The volume average is exactly
    c0 + 3 F0 t / R.

    Args:
        rho: normalised radius r / R [1]; t: time [s] (> 0 for the series to converge with
            ``n_terms``; it needs exp(-lam_N^2 tau) << 1, i.e. tau >~ 40 / (n_terms pi)^2);
            broadcastable with each other.
        c0: initial concentration [mol/m3]; j: reaction current density [A/m2];
        D: diffusivity [m2/s]; R: particle radius [m].

    Returns:
        c [mol/m3], broadcast shape of rho and t.
    """
    lam_np = sphere_eigenvalues(n_terms)
    rho = torch.as_tensor(rho)
    t = torch.as_tensor(t, dtype=rho.dtype)
    lam = torch.as_tensor(lam_np, dtype=rho.dtype, device=rho.device)
    coef = torch.as_tensor(2.0 / (lam_np ** 2 * np.sin(lam_np)), dtype=rho.dtype,
                           device=rho.device)
    tau = D * t / R ** 2
    rho_e, tau_e = torch.broadcast_tensors(rho, tau)
    # sin(lam rho) / rho = lam sinc(lam rho / pi): finite at the centre.
    modes = lam * torch.sinc(lam * rho_e[..., None] / math.pi)
    series = (coef * modes * torch.exp(-lam ** 2 * tau_e[..., None])).sum(-1)
    F0 = -j / F
    return c0 + F0 * R / D * (3.0 * tau_e + rho_e ** 2 / 2.0 - 0.3 - series)


def constant_flux_sphere_average(t: Tensor, c0: float, j: float, R: float) -> Tensor:
    """Volume average of :func:`constant_flux_sphere`: c0 - 3 j t / (F R) [mol/m3]."""
    return c0 - 3.0 * j * torch.as_tensor(t) / (F * R)


def polynomial_sphere(r: Tensor, t: Tensor, D: float, c0: float = 0.0, k2: float = 1.0,
                      k4: float = 0.0) -> Tensor:
    """Polynomial exact solutions of dc/dt = D lap c in a sphere (any r units with D to match):

        c = c0 + k2 (r^2 + 6 D t) + k4 (r^4 + 20 D t r^2 + 60 D^2 t^2)

    The k2 part (the steady-flux profile) is differentiated exactly by 3-point finite
    differences; the k4 part is not, which tests the convergence order. dc/dr = 0 at r = 0, and
    the surface gradient is 2 k2 R + k4 (4 R^3 + 40 D t R).
    """
    r = torch.as_tensor(r)
    t = torch.as_tensor(t, dtype=r.dtype)
    return c0 + k2 * (r ** 2 + 6.0 * D * t) + k4 * (r ** 4 + 20.0 * D * t * r ** 2
                                                    + 60.0 * D ** 2 * t ** 2)


def sei_thickness_constant_T(t: Tensor, L_0: float, T: float, constants, D_sol=None) -> Tensor:
    """Solvent-diffusion-limited SEI thickness [m] at constant temperature T [K]:

        L(t) = sqrt(L_0^2 + 2 k t),   k = L dL/dt = V_bar D_sol c_sol / z * Arrhenius(T)

    the exact solution of :func:`packtwin.physics.sei.sei_growth_rate` (t [s]).
    """
    k = float(sei_growth_rate(torch.tensor(1.0, dtype=torch.float64), T, constants, D_sol))
    t = torch.as_tensor(t)
    return torch.sqrt(L_0 ** 2 + 2.0 * k * t)
