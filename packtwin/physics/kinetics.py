"""Butler-Volmer kinetics of the intercalation reaction: exchange current, forward and inverse.

Sign convention (PyBaMM's): j > 0 is de-intercalation (anodic), driven by eta > 0, with
eta = phi_s - phi_e - U(c_s_surf) the reaction overpotential [V].
"""

from __future__ import annotations

import torch
from torch import Tensor

from packtwin.physics.constants import F, R_GAS, T_REF
from packtwin.physics.diffusion import arrhenius

# sqrt has an infinite slope at 0: keep concentrations this fraction of c_max inside (0, c_max) so
# gradients stay finite; j0 there is 2e-4 of its mid-range value, i.e. ~0.
_C_EPS = 1e-8


def exchange_current_density(c_s_surf: Tensor, c_e, c_max, k, T=None, Ea: float = 0.0,
                             T_ref: float = T_REF) -> Tensor:
    """OKane2022's (Chen2020's) exchange current density [A/m2].

        j0 = k * exp(Ea/R (1/T_ref - 1/T)) * c_e^0.5 * c_s^0.5 * (c_max - c_s)^0.5

    Args:
        c_s_surf: particle surface concentration [mol/m3], shape S.
        c_e: electrolyte concentration at the particle [mol/m3], broadcastable to S.
        c_max: maximum particle concentration [mol/m3].
        k: rate prefactor at ``T_ref`` [A/m2 (m3/mol)^1.5] (``ElectrodeConstants.k_ref``).
        T: temperature [K], broadcastable; ``None`` means T_ref (no Arrhenius factor).
        Ea: activation energy [J/mol] (``ElectrodeConstants.Ea_k``).
        T_ref: reference temperature [K].
    """
    c_s = torch.as_tensor(c_s_surf)
    eps = _C_EPS * c_max
    c_s = c_s.clamp(eps, c_max - eps)
    c_e = torch.as_tensor(c_e, dtype=c_s.dtype, device=c_s.device).clamp_min(0.0)
    j0 = k * torch.sqrt(c_e) * torch.sqrt(c_s) * torch.sqrt(c_max - c_s)
    if T is not None:
        j0 = arrhenius(j0, Ea, T, T_ref)
    return j0


def electrode_exchange_current_density(c_s_surf: Tensor, c_e, T, electrode) -> Tensor:
    """:func:`exchange_current_density` with an electrode's c_max, k_ref, Ea_k [A/m2]."""
    return exchange_current_density(c_s_surf, c_e, electrode.c_max, electrode.k_ref, T,
                                    electrode.Ea_k, electrode.T_ref)


def butler_volmer(j0: Tensor, eta: Tensor, T, alpha: float = 0.5) -> Tensor:
    """j = j0 [exp((1 - alpha) F eta / RT) - exp(-alpha F eta / RT)] [A/m2].

    Args:
        j0: exchange current density [A/m2]; eta: overpotential [V]; T: temperature [K];
        alpha: cathodic charge-transfer coefficient [1] (0.5 in OKane2022, which gives
            2 j0 sinh(F eta / 2RT)).
    """
    f = F / (R_GAS * torch.as_tensor(T, dtype=torch.as_tensor(eta).dtype))
    return j0 * (torch.exp((1.0 - alpha) * f * eta) - torch.exp(-alpha * f * eta))


def inverse_butler_volmer(j: Tensor, j0: Tensor, T) -> Tensor:
    """Overpotential of a symmetric (alpha = 0.5) reaction: eta = (2RT/F) asinh(j / (2 j0)) [V].

    Exact inverse of :func:`butler_volmer` at alpha = 0.5, which is OKane2022's value for both
    electrodes (PyBaMM's "Negative/Positive electrode charge transfer coefficient").

    Args:
        j: interfacial current density [A/m2] (positive = de-intercalation); j0 [A/m2] > 0;
        T: temperature [K].
    """
    j = torch.as_tensor(j)
    T = torch.as_tensor(T, dtype=j.dtype, device=j.device)
    return 2.0 * R_GAS * T / F * torch.asinh(j / (2.0 * j0))
