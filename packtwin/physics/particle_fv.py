"""Spherical particle diffusion on finite volumes, stepped by backward Euler.

    dc/dt = (D / R^2) (1/rho^2) d/drho (rho^2 dc/drho),   -D/R dc/drho|_1 = j / F

on the shells of a :class:`~packtwin.physics.core_grid.SphereGrid`. D does not depend on c in
OKane2022, so one step is linear in (c, j):

    c' = P c + q * (-dt j / (F R)),   P = M^-1 diag(v),  q = M^-1 e_N,  M = diag(v) + dt D/R^2 K

with v the shell volumes and K the (symmetric, zero-row-sum) stiffness: sum(v c') = sum(v c) -
dt j / (F R) exactly (lithium conservation). The surface value is extrapolated from the outer
shell with the known surface gradient, c_surf = c_N - (1 - rho_N) R j / (F D), exact to O(h^2).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F
from packtwin.physics.electrolyte import tridiagonal_stiffness


class ParticleStep(NamedTuple):
    """Backward-Euler operators of one electrode for one step, per cell [B]."""

    P: Tensor  # [B, N, N]
    q: Tensor  # [B, N]
    flux_scale: Tensor  # [B]: -dt / (F R), multiplies j [A/m2] into q's units
    surf_gain: Tensor  # [B]: -(1 - rho_N) R / (F D), dc_surf/dj at fixed c_N


def particle_operators(grid: dict[str, Tensor], D: Tensor, R: Tensor, dt: float) -> ParticleStep:
    """Operators of :func:`particle_step` for diffusivity D [B] (at the step's T), radius R [B]."""
    v = grid["volumes"]
    G = grid["face_areas"] / grid["distances"]  # [N-1]
    K = tridiagonal_stiffness(G)  # [N, N]
    tau = (dt * D / (R * R))[:, None, None]
    M = torch.diag_embed(v) + tau * K
    n = v.numel()
    rhs = torch.cat([torch.diag_embed(v), torch.eye(n, dtype=v.dtype)[:, -1:]], dim=1)
    sol = torch.linalg.solve(M, rhs.expand(M.shape[0], n, n + 1))
    rho_out = grid["centres"][-1]
    return ParticleStep(sol[..., :n], sol[..., n], -dt / (F * R),
                        -(1.0 - rho_out) * R / (F * D))


def particle_step(c: Tensor, j: Tensor, ops: ParticleStep) -> Tensor:
    """c [B, X, N] (X particles through the thickness) and j [B, X] -> c at the step's end."""
    return (torch.einsum("bij,bxj->bxi", ops.P, c)
            + ops.q[:, None, :] * (ops.flux_scale[:, None] * j)[..., None])


def surface_concentration(c: Tensor, j: Tensor, D: Tensor, R: Tensor, grid: dict[str, Tensor]
                          ) -> Tensor:
    """Surface concentration [B, X] from shells c [B, X, N] and reaction current j [B, X]."""
    rho_out = grid["centres"][-1]
    return c[..., -1] - (1.0 - rho_out) * (R / (F * D))[:, None] * j


def particle_average(c: Tensor, grid: dict[str, Tensor]) -> Tensor:
    """Volume average [..] of shells c [.., N]."""
    v = grid["volumes"]
    return (c * v).sum(-1) / v.sum()
