"""Reaction-current distribution through a porous electrode and the terminal voltage (reduced DFN).

Quasi-static charge conservation of the DFN on the core's finite volumes: in each electrode the
ionic current i_e grows from 0 (negative collector) to i_app (separator) by the local reaction,
di_e/dx = a j, the electronic current carries the rest, i_s = i_app - i_e, and the surface
potential difference dphi = phi_s - phi_e obeys, between neighbouring particles,

    dphi_{k+1} - dphi_k = -i_s dx / sigma_eff + i_e R_e - 2 (1 - t+) RT/F (ln c_e,k+1 - ln c_e,k)

(R_e the series electrolyte resistance between the two centres), with, at each particle,

    dphi_k = U(c_surf,k(j_k)) + (2RT/F) asinh(j_k / 2 j0_k) + R_film j_k

(Butler-Volmer, alpha = 0.5; SEI film resistance as in PyBaMM's "distributed" film option). The
surface concentration may depend on j_k linearly, c_surf = s0 + g j: g carries the implicit
particle step's response so that the current distribution is solved backward-Euler together
with the particle. Newton's method runs a fixed number of iterations (differentiable, batched).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F, R_GAS
from packtwin.physics.electrolyte import C_FLOOR, T_PLUS
from packtwin.physics.kinetics import exchange_current_density

NEWTON_ITERATIONS = 6  # from a uniform start; the test checks 6 against 12 at 3C
WARM_ITERATIONS = 3  # from the previous (sub-)step's solution at the same current (tested)


class ElectrodeSolution(NamedTuple):
    j: Tensor  # [B, N] interfacial current density [A/m2], > 0 de-intercalation
    dphi: Tensor  # [B, N] phi_s - phi_e [V]
    c_surf: Tensor  # [B, N] surface concentration [mol/m3]
    i_e_faces: Tensor  # [B, N-1] ionic current density at the interior faces [A/m2]


def solve_electrode(s0: Tensor, g: Tensor, ocp: Callable[[Tensor], Tensor],
                    ocp_slope: Callable[[Tensor], Tensor], c_max: float,
                    k: Tensor, Ea_k: float, T: Tensor, c_e: Tensor, kappa_eff: Tensor,
                    sigma_eff: float, dx: float, a: Tensor, i_app: Tensor, sign: float,
                    R_film: Tensor | float = 0.0, iterations: int = NEWTON_ITERATIONS,
                    j_init: Tensor | None = None) -> ElectrodeSolution:
    """Current distribution in one electrode.

    Args:
        s0, g: surface concentration c_surf = s0 + g j: s0 [B, N] [mol/m3], g [B] or [B, N].
        ocp: U(stoichiometry) [V]; ocp_slope: dU/dsto [V] (Newton's Jacobian only); c_max: [mol/m3]; k: j0 prefactor at T_ref [B]; Ea_k [J/mol].
        T: [B] temperature [K]; c_e, kappa_eff: [B, N] electrolyte concentration [mol/m3] and
            effective conductivity [S/m] at the particles.
        sigma_eff: effective solid conductivity [S/m]; dx: cell width [m]; a: [B] specific
            area [1/m]; i_app: [B] cell current density I / A [A/m2], discharge > 0.
        sign: +1 negative electrode (i_e 0 -> i_app with x), -1 positive (i_app -> 0).
        R_film: film resistance per unit particle area [Ohm m2], [B] or float.
        iterations: Newton iterations; j_init: [B, N] starting guess (default uniform).
    """
    B, N = s0.shape
    dtype = s0.dtype
    RT_F = R_GAS * T / F  # [B]
    g = torch.as_tensor(g, dtype=dtype)
    g = g[:, None] if g.dim() == 1 else g
    R_film = torch.as_tensor(R_film, dtype=dtype)
    R_film = R_film[:, None] if R_film.dim() == 1 else R_film
    i_e0 = torch.zeros_like(i_app) if sign > 0 else i_app
    R_e = 0.5 * dx / kappa_eff[:, :-1] + 0.5 * dx / kappa_eff[:, 1:]  # [B, N-1]
    ln_ce = torch.log(c_e.clamp_min(C_FLOOR))
    diffusion = 2.0 * (1.0 - T_PLUS) * RT_F[:, None] * (ln_ce[:, 1:] - ln_ce[:, :-1])
    adx = (a * dx)[:, None]  # [B, 1]
    # Lower-triangular cumulative-sum operator: i_e at face k sums reactions of particles <= k.
    tril = torch.tril(torch.ones(N - 1, N, dtype=dtype), diagonal=0)
    coupling = (dx / sigma_eff + R_e)[:, :, None] * tril * adx[:, :, None]  # [B, N-1, N]

    def terms(j):
        c_surf = s0 + g * j
        sto = c_surf / c_max
        j0 = exchange_current_density(c_surf, c_e.clamp_min(C_FLOOR), c_max, k[:, None], T[:, None], Ea_k)
        x = j / (2.0 * j0)
        dphi = ocp(sto) + 2.0 * RT_F[:, None] * torch.asinh(x) + R_film * j
        i_e = i_e0[:, None] + torch.cumsum(adx * j, dim=1)[:, :-1]
        return c_surf, sto, j0, x, dphi, i_e

    if j_init is None:
        j = (sign * i_app / (a * dx * N))[:, None].expand(B, N)
    else:
        j = j_init
    for _ in range(iterations):
        c_surf, sto, j0, x, dphi, i_e = terms(j)
        i_s = i_app[:, None] - i_e
        r_pot = dphi[:, 1:] - dphi[:, :-1] - (-i_s * dx / sigma_eff + i_e * R_e - diffusion)
        r_charge = (adx * j).sum(1, keepdim=True) - (sign * i_app)[:, None]
        res = torch.cat([r_pot, r_charge], dim=1)
        dU = ocp_slope(sto) / c_max
        # j0 depends on j through c_surf: d ln j0 / dj = (1/c - 1/(c_max - c)) g / 2
        dlnj0 = 0.5 * (1.0 / c_surf - 1.0 / (c_max - c_surf)) * g
        d = (dU * g + RT_F[:, None] * (1.0 - j * dlnj0) / (j0 * torch.sqrt(1.0 + x * x))
             + R_film)  # [B, N]
        # row k: d(dphi_{k+1} - dphi_k)/dj
        J_pot = torch.diag_embed(d[:, 1:], 1)[:, :N - 1] - torch.diag_embed(d)[:, :N - 1]
        J = torch.cat([J_pot - coupling,
                       adx[:, :, None].expand(B, 1, N)], dim=1)
        j = j - torch.linalg.solve(J, res[..., None])[..., 0]
    c_surf, _, _, _, dphi, i_e = terms(j)
    return ElectrodeSolution(j, dphi, c_surf, i_e)


def terminal_voltage(neg: ElectrodeSolution, pos: ElectrodeSolution, i_app: Tensor, I: Tensor,
                     T: Tensor, c_e: Tensor, kappa_eff: Tensor, dx: Tensor, n_n: int, n_s: int,
                     sigma_eff_n: float, sigma_eff_p: float, a_n: Tensor, a_p: Tensor,
                     R_contact: Tensor) -> Tensor:
    """Terminal voltage [V] [B]: phi_s of the positive collector, phi_s = 0 at the negative one,
    less the contact drop. Walks collector -> particles -> electrolyte -> particles -> collector.

    Args:
        c_e, kappa_eff: [B, Nx] electrolyte on the whole thickness grid; dx: [Nx] [m].
        n_n, n_s: cells in the negative electrode and separator.
    """
    dx_n, dx_p = float(dx[0]), float(dx[-1])
    RT_F = R_GAS * T / F
    # negative collector -> first particle (half cell; i_s falls from i_app linearly)
    phi_s = -(i_app - a_n * neg.j[:, 0] * dx_n / 4.0) * (0.5 * dx_n) / sigma_eff_n
    phi_s = phi_s - ((i_app[:, None] - neg.i_e_faces) * dx_n / sigma_eff_n).sum(1)
    phi_e = phi_s - neg.dphi[:, -1]
    # electrolyte from the last negative particle to the first positive one: i_e = i_app there
    lo, hi = n_n - 1, n_n + n_s
    half = 0.5 * dx[lo:hi + 1] / kappa_eff[:, lo:hi + 1]
    R_sep = (half[:, :-1] + half[:, 1:]).sum(1)
    phi_e = phi_e - i_app * R_sep + 2.0 * (1.0 - T_PLUS) * RT_F * (
        torch.log(c_e[:, hi].clamp_min(C_FLOOR)) - torch.log(c_e[:, lo].clamp_min(C_FLOOR)))
    phi_s = phi_e + pos.dphi[:, 0]
    phi_s = phi_s - ((i_app[:, None] - pos.i_e_faces) * dx_p / sigma_eff_p).sum(1)
    phi_s = phi_s - (i_app + a_p * pos.j[:, -1] * dx_p / 4.0) * (0.5 * dx_p) / sigma_eff_p
    return phi_s - I * R_contact
