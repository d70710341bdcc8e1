"""SEI growth (PyBaMM's "solvent-diffusion limited" model) and the lithium-plating criterion.

PyBaMM 26.10 (``models/submodels/interface/sei/sei_growth.py``, Marquis thesis eq. 5.91):

    j_sei = -D_sol c_sol F / L_sei * exp(E_sei/R (1/T_ref - 1/T))        [A/m2]
    dc_sei/dt = -a j_sei / (F z_sei),   L_sei = c_sei V_bar_sei / a        (``sei_thickness.py``)

so, with a constant surface area a (no loss of active material),

    dL_sei/dt = V_bar_sei D_sol c_sol / (z_sei L_sei) * exp(E_sei/R (1/T_ref - 1/T))   [m/s]

and under constant temperature L_sei(t) = sqrt(L_0^2 + 2 k t), k = L dL/dt (see
:func:`packtwin.physics.analytic.sei_thickness_constant_T`). The rate does not depend on the
current or potential: the twin can only learn its temperature history.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F, CellConstants, SEIConstants
from packtwin.physics.diffusion import arrhenius


def _sei(constants) -> SEIConstants:
    if isinstance(constants, CellConstants):
        return constants.sei
    if isinstance(constants, SEIConstants):
        return constants
    raise TypeError(f"expected CellConstants or SEIConstants, got {type(constants).__name__}")


def sei_growth_rate(L_sei: Tensor, T, constants, D_sol=None) -> Tensor:
    """dL_sei/dt [m/s] of solvent-diffusion-limited SEI.

    Args:
        L_sei: SEI thickness [m] (> 0), any shape.
        T: temperature [K], broadcastable.
        constants: :class:`CellConstants` or :class:`SEIConstants`.
        D_sol: optional per-cell solvent diffusivity [m2/s] overriding the constant's (the
            generator varies it per cell: schema parameter ``sei_solvent_diffusivity``).
    """
    s = _sei(constants)
    D = s.D_sol if D_sol is None else D_sol
    k = s.V_bar * D * s.c_sol / s.z
    return arrhenius(k / torch.as_tensor(L_sei), s.E, T, s.T_ref)


def sei_current_density(L_sei: Tensor, T, constants, D_sol=None) -> Tensor:
    """j_sei [A/m2] (negative: it consumes lithium like intercalation does), PyBaMM's sign."""
    s = _sei(constants)
    D = s.D_sol if D_sol is None else D_sol
    return arrhenius(-D * s.c_sol * F / torch.as_tensor(L_sei), s.E, T, s.T_ref)


def sei_residual(dL_dt: Tensor, L_sei: Tensor, T, constants, D_sol=None) -> Tensor:
    """dL_sei/dt - growth rate [m/s]; 0 for exact solvent-diffusion-limited growth."""
    return dL_dt - sei_growth_rate(L_sei, T, constants, D_sol)


class PlatingCriterion(NamedTuple):
    """``possible``: bool, plating thermodynamically possible; ``soft``: smooth, in (0, 1)."""

    possible: Tensor
    soft: Tensor


def plating_margin_criterion(phi_margin: Tensor, width: float = 0.005) -> PlatingCriterion:
    """Plating is possible where the negative electrode's surface potential difference vs Li,
    phi_s - phi_e [V] (schema ``plating_margin``), is below 0 V.

    Args:
        phi_margin: potential margin [V], any shape.
        width: [V] width of the soft indicator sigmoid(-phi / width) (differentiable; 0.5 at 0 V,
            ~0.88 at -10 mV for the default 5 mV).
    """
    phi = torch.as_tensor(phi_margin)
    if width <= 0:
        raise ValueError(f"plating_margin_criterion: width must be > 0 V, got {width}")
    return PlatingCriterion(phi < 0, torch.sigmoid(-phi / width))
