"""Fickian diffusion in a spherical particle: bulk equation, centre and surface conditions.

    dc/dt = D (d2c/dr2 + (2/r) dc/dr),   0 < r < R
    dc/dr = 0                            at r = 0 (symmetry)
    -D dc/dr = j / F                     at r = R

Sign convention (PyBaMM's): ``j`` is the interfacial current density of the intercalation reaction
[A/m2], positive for *de*-intercalation (lithium leaving the particle). For a discharge
(cell current I > 0) j > 0 in the negative electrode and j < 0 in the positive one.

Every residual has the units of the equation it comes from (mol/(m3 s) for the bulk, mol/(m2 s) for
the surface flux); scale them in the loss, not here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from packtwin.physics.constants import F, R_GAS, T_REF


def arrhenius(value_ref, Ea, T, T_ref: float = T_REF):
    """value_ref * exp(Ea / R_GAS * (1/T_ref - 1/T)), PyBaMM's form.

    Args:
        value_ref: the value at ``T_ref`` (any units; float or tensor).
        Ea: activation energy [J/mol].
        T: temperature [K] (float or tensor; broadcasts).
        T_ref: reference temperature [K].
    """
    if isinstance(T, Tensor) or isinstance(Ea, Tensor):
        return value_ref * torch.exp(Ea / R_GAS * (1.0 / T_ref - 1.0 / T))
    # Scalar factor in float64 even when value_ref is a float32 tensor: 1/T_ref - 1/T cancels.
    return value_ref * math.exp(Ea / R_GAS * (1.0 / T_ref - 1.0 / T))


def _spherical_laplacian(dc_dr: Tensor, d2c_dr2: Tensor, r: Tensor) -> Tensor:
    # At r = 0 the (2/r) dc/dr term tends to 2 d2c/dr2 (dc/dr = 0 there), so the Laplacian is
    # 3 d2c/dr2. torch.where on a safe denominator keeps gradients finite at r = 0.
    r = torch.as_tensor(r, dtype=dc_dr.dtype, device=dc_dr.device)
    at_centre = r == 0
    r_safe = torch.where(at_centre, torch.ones_like(r), r)
    return torch.where(at_centre, 3.0 * d2c_dr2, d2c_dr2 + 2.0 / r_safe * dc_dr)


def fick_residual(dc_dt: Tensor, dc_dr: Tensor, d2c_dr2: Tensor, r: Tensor, D) -> Tensor:
    """dc/dt - D (d2c/dr2 + (2/r) dc/dr), with the limit dc/dt - 3 D d2c/dr2 at r = 0.

    Args:
        dc_dt: [mol/(m3 s)], dc_dr: [mol/m4], d2c_dr2: [mol/m5], all shape S.
        r: radius [m], broadcastable to S (e.g. [R] for data shaped [..., T, R]).
        D: diffusivity [m2/s], float or tensor broadcastable to S.

    Returns:
        residual [mol/(m3 s)], shape S.
    """
    return dc_dt - D * _spherical_laplacian(dc_dr, d2c_dr2, r)


def fick_residual_normalised(dc_dt: Tensor, dc_drho: Tensor, d2c_drho2: Tensor, rho: Tensor, D,
                             R) -> Tensor:
    """Fick residual with the radius normalised by the particle radius, rho = r / R in [0, 1].

    dc/dt - (D / R^2) (d2c/drho2 + (2/rho) dc/drho); at rho = 0 the limit 3 D/R^2 d2c/drho2.

    Args:
        dc_dt: [mol/(m3 s)], dc_drho: [mol/m3], d2c_drho2: [mol/m3], shape S.
        rho: normalised radius [1], broadcastable to S.
        D: diffusivity [m2/s]; R: particle radius [m] (floats or per-cell tensors broadcastable
            to S).

    Returns:
        residual [mol/(m3 s)], shape S (same units as :func:`fick_residual`).
    """
    return dc_dt - D / (R * R) * _spherical_laplacian(dc_drho, d2c_drho2, rho)


def diffusion_term_scale(dc_dt: Tensor, dc_dr: Tensor, d2c_dr2: Tensor, r: Tensor, D) -> Tensor:
    """|dc/dt| + |D lap c| [mol/(m3 s)]: the size of the terms the Fick residual balances.

    Dividing a residual by (a mean of) this gives a relative residual for tolerances and loss
    scaling. Pass normalised derivatives with ``D / R**2`` for D to get the normalised version.
    """
    return dc_dt.abs() + (D * _spherical_laplacian(dc_dr, d2c_dr2, r)).abs()


def surface_flux_residual(dc_dr_surface: Tensor, D, j, R=None) -> Tensor:
    """-D dc/dr|_R - j / F [mol/(m2 s)]: the particle's surface flux equals the reaction rate.

    Args:
        dc_dr_surface: radial gradient at the surface, [mol/m4] (physical r); if ``R`` is given
            it is the gradient in normalised radius, dc/drho at rho = 1 [mol/m3].
        D: diffusivity [m2/s].
        j: intercalation interfacial current density [A/m2], positive = de-intercalation
            (lithium leaves the particle); e.g. from
            :func:`packtwin.physics.conservation.mean_interfacial_current`.
        R: particle radius [m], only when ``dc_dr_surface`` is a normalised gradient.
    """
    grad = dc_dr_surface if R is None else dc_dr_surface / R
    return -D * grad - j / F


def centre_condition_residual(dc_dr_centre: Tensor) -> Tensor:
    """dc/dr at r = 0, which symmetry makes zero (units of the gradient passed in)."""
    return dc_dr_centre


def particle_diffusivity(electrode, T):
    """D(T) of an :class:`~packtwin.physics.constants.ElectrodeConstants` [m2/s] (Arrhenius)."""
    return arrhenius(electrode.D_ref, electrode.Ea_D, T, electrode.T_ref)


__all__ = ["arrhenius", "fick_residual", "fick_residual_normalised", "diffusion_term_scale",
           "surface_flux_residual", "centre_condition_residual", "particle_diffusivity"]
