"""Single-particle-model terminal voltage: the voltage-consistency physics term.

    V = U_p(c_p,surf / c_max,p) - U_n(c_n,surf / c_max,n) + eta_p - eta_n - I R_ohm

with eta from the inverse Butler-Volmer law at the x-averaged interfacial current that the cell
current fixes (:func:`packtwin.physics.conservation.mean_interfacial_current`). Electrolyte
polarisation and SEI film resistance are not modelled except through ``R_ohm``; on a DFN cell this
is therefore a consistency term with a known bias, exact for PyBaMM's SPM (tested).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import CellConstants
from packtwin.physics.conservation import mean_interfacial_current
from packtwin.physics.kinetics import exchange_current_density, inverse_butler_volmer
from packtwin.physics.ocp import ocp_negative, ocp_positive


class SPMVoltage(NamedTuple):
    """Terms of the SPM voltage [V], each shaped like the broadcast inputs."""

    V: Tensor
    U_n: Tensor
    U_p: Tensor
    eta_n: Tensor
    eta_p: Tensor


def spm_voltage_terms(c_n_surf: Tensor, c_p_surf: Tensor, I, T, constants: CellConstants,
                      c_e=None, R_ohm=0.0, *, k_n=None, k_p=None, eps_s_n=None, eps_s_p=None,
                      R_n=None, R_p=None) -> SPMVoltage:
    """:func:`spm_terminal_voltage` with its OCP and overpotential terms kept apart."""
    c_e = constants.c_e_ref if c_e is None else c_e
    neg, pos = constants.neg, constants.pos
    c_n_surf = torch.as_tensor(c_n_surf)
    c_p_surf = torch.as_tensor(c_p_surf, dtype=c_n_surf.dtype)
    I = torch.as_tensor(I, dtype=c_n_surf.dtype)
    U_n = ocp_negative(c_n_surf / neg.c_max)
    U_p = ocp_positive(c_p_surf / pos.c_max)
    j_n = mean_interfacial_current(I, neg, eps_s=eps_s_n, R=R_n)
    j_p = mean_interfacial_current(I, pos, eps_s=eps_s_p, R=R_p)
    j0_n = exchange_current_density(c_n_surf, c_e, neg.c_max, neg.k_ref if k_n is None else k_n,
                                    T, neg.Ea_k, neg.T_ref)
    j0_p = exchange_current_density(c_p_surf, c_e, pos.c_max, pos.k_ref if k_p is None else k_p,
                                    T, pos.Ea_k, pos.T_ref)
    eta_n = inverse_butler_volmer(j_n, j0_n, T)
    eta_p = inverse_butler_volmer(j_p, j0_p, T)
    V = U_p - U_n + eta_p - eta_n - I * R_ohm
    return SPMVoltage(V, U_n, U_p, eta_n, eta_p)


def spm_terminal_voltage(c_n_surf: Tensor, c_p_surf: Tensor, I, T, constants: CellConstants,
                         c_e=None, R_ohm=0.0, *, k_n=None, k_p=None, eps_s_n=None,
                         eps_s_p=None, R_n=None, R_p=None) -> Tensor:
    """SPM terminal voltage [V].

    Args:
        c_n_surf, c_p_surf: x-averaged particle surface concentrations [mol/m3], broadcastable.
        I: cell current [A], discharge > 0.
        T: temperature [K].
        constants: cell constants (``okane2022()``).
        c_e: electrolyte concentration [mol/m3]; default ``constants.c_e_ref``.
        R_ohm: lumped ohmic resistance [Ohm] (contact, SEI film, electrolyte); a tensor
            per cell broadcasts. On OKane2022 DFN output at 1C/35 C, R_ohm = 0 leaves the SPM
            voltage ~51 mV above the DFN's (electrolyte and film losses): fit it, don't assume 0.
        k_n, k_p, eps_s_n, eps_s_p, R_n, R_p: optional per-cell overrides of the exchange-current
            prefactors [A/m2 (m3/mol)^1.5], active-material fractions [1] and particle radii [m]
            (tensors broadcastable with the concentrations).
    """
    return spm_voltage_terms(c_n_surf, c_p_surf, I, T, constants, c_e, R_ohm, k_n=k_n, k_p=k_p,
                             eps_s_n=eps_s_n, eps_s_p=eps_s_p, R_n=R_n, R_p=R_p).V
