"""Charge and lithium conservation: what the measured cell current fixes about the particles.

Sign convention (PyBaMM's): cell current I > 0 is discharge. The x-averaged *total* interfacial
current density of each electrode is then fixed by I alone:

    j_n = + I / (a_n L_n A),   j_p = - I / (a_p L_p A)       (a = 3 eps_s / R)

(positive j = lithium leaving the particles). In the positive electrode all of it is intercalation.
In the negative electrode part of it feeds side reactions (SEI growth, lithium plating), so the
particles receive the total less the side currents. Field notes measured on DFN data: the positive
electrode's mean concentration follows the charge passed with ratio 1.0000, the negative's with
0.988 (0 C) to 0.998 (40 C) because of SEI and plating.
"""

from __future__ import annotations

import torch
from torch import Tensor

from packtwin.physics.constants import F, ElectrodeConstants


def _as_tensor(x) -> Tensor:
    # Python numbers become float64 0-d tensors: they do not upcast float32 tensors they meet.
    return x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=torch.float64)


def mean_interfacial_current(I, electrode: ElectrodeConstants, eps_s=None, R=None) -> Tensor:
    """x-averaged total interfacial current density j = sign * I / (a L A) [A/m2].

    Args:
        I: cell current [A], discharge > 0 (any shape; per-cell tensors broadcast).
        electrode: the electrode's constants; ``sign`` is +1 (negative) or -1 (positive).
        eps_s, R: optional per-cell active-material fraction [1] and particle radius [m]
            overriding the electrode's (tensors broadcastable with ``I``).
    """
    eps_s = electrode.eps_s if eps_s is None else eps_s
    R = electrode.R if R is None else R
    a = 3.0 * eps_s / R
    return electrode.sign * _as_tensor(I) / (a * electrode.L * electrode.A)


def _volume_weights(rho: Tensor, method: str) -> Tensor:
    rho = rho.to(torch.float64)
    if method == "trapezoid":
        if abs(float(rho[0])) > 1e-12 or abs(float(rho[-1]) - 1.0) > 1e-12:
            raise ValueError(f"average_concentration(method='trapezoid') needs a grid from 0 to 1, "
                             f"got rho[0]={float(rho[0]):.6g}, rho[-1]={float(rho[-1]):.6g}; "
                             f"use method='finite_volume' for cell-centre grids")
        h = torch.diff(rho)
        w = torch.zeros_like(rho)
        w[:-1] += h / 2
        w[1:] += h / 2
        w = w * rho ** 2
        # Normalised so that the average of a constant is exact (the raw sum is 1/3 + O(h^2)).
        return w / w.sum()
    if method == "finite_volume":
        # Each node owns the shell between the midpoints to its neighbours (0 and 1 at the ends):
        # exactly PyBaMM's finite-volume average when rho holds its cell centres.
        edges = torch.cat([rho.new_zeros(1), (rho[1:] + rho[:-1]) / 2, rho.new_ones(1)])
        return edges[1:] ** 3 - edges[:-1] ** 3
    raise ValueError(f"unknown averaging method {method!r}; expected 'auto', 'trapezoid' or "
                     f"'finite_volume'")


def average_concentration(c: Tensor, rho: Tensor, method: str = "auto") -> Tensor:
    """Volume average over a sphere, 3 * integral_0^1 c rho^2 drho [units of c].

    Args:
        c: concentration, shape [..., R] (radius last).
        rho: normalised radial grid r / R, shape [R], increasing.
        method: ``"trapezoid"`` (grid includes 0 and 1), ``"finite_volume"`` (nodes are cell
            centres, as PyBaMM's are), or ``"auto"``: trapezoid when the grid spans [0, 1], finite
            volume otherwise.

    Returns:
        shape [...].
    """
    if rho.ndim != 1 or rho.shape[0] != c.shape[-1]:
        raise ValueError(f"average_concentration: rho has shape {tuple(rho.shape)}, expected "
                         f"({c.shape[-1]},) to match c's last axis (c shape {tuple(c.shape)})")
    w = volume_weights(rho, method).to(dtype=c.dtype, device=c.device)
    return (c * w).sum(-1)


def volume_weights(rho: Tensor, method: str = "auto") -> Tensor:
    """The weights [R] (float64, summing to 1) of :func:`average_concentration` on grid ``rho``.

    Reading the grid decides the method (Python floats): a graph that must not depend on the
    grid's values (``torch.export``) computes these once, outside, and applies them itself.
    """
    if method == "auto":
        spans = abs(float(rho[0])) < 1e-12 and abs(float(rho[-1]) - 1.0) < 1e-12
        method = "trapezoid" if spans else "finite_volume"
    return _volume_weights(rho, method)


def lithium_moles(c_avg: Tensor, electrode: ElectrodeConstants, eps_s=None) -> Tensor:
    """Lithium in an electrode's particles, c_avg * eps_s * L * A [mol]."""
    eps_s = electrode.eps_s if eps_s is None else eps_s
    return c_avg * eps_s * electrode.L * electrode.A


def expected_concentration_change(charge_passed_C, electrode: ElectrodeConstants,
                                  side_charge_C=0.0, eps_s=None) -> Tensor:
    """Change of an electrode's mean particle concentration [mol/m3] after a charge has passed.

        delta c = (-sign * Q - Q_side) / (F eps_s L A)

    Args:
        charge_passed_C: Q = integral of I dt [C], discharge > 0.
        electrode: constants (sign +1 negative, -1 positive).
        side_charge_C: charge of the lithium that side reactions took out of this electrode's
            particles' supply [C], >= 0 (SEI growth and plating in the negative electrode;
            PyBaMM's "Loss of capacity to negative SEI [A.h]" x 3600 for SEI). 0 for the positive.
        eps_s: optional per-cell active-material fraction.
    """
    eps_s = electrode.eps_s if eps_s is None else eps_s
    Q = _as_tensor(charge_passed_C)
    return (-electrode.sign * Q - side_charge_C) / (F * eps_s * electrode.L * electrode.A)


def lithium_balance_residual(c_avg_t: Tensor, c_avg_0: Tensor, charge_passed_C,
                             electrode: ElectrodeConstants, side_charge_C=0.0,
                             eps_s=None) -> Tensor:
    """c_avg(t) - c_avg(0) - delta c expected from the charge passed [mol/m3].

    The electrode's lithium changes by the charge passed less the side reactions (see
    :func:`expected_concentration_change` for signs); 0 for exact data. Divide by c_max for a
    dimensionless residual.

    Args:
        c_avg_t, c_avg_0: volume-averaged particle concentration (x-averaged over the electrode)
            at t and at the start [mol/m3] (:func:`average_concentration`).
        charge_passed_C: integral of I dt from the start [C], discharge > 0.
        electrode: constants; side_charge_C: [C] >= 0; eps_s: optional per-cell fraction.
    """
    return c_avg_t - c_avg_0 - expected_concentration_change(charge_passed_C, electrode,
                                                             side_charge_C, eps_s)


def sei_side_charge(L_sei: Tensor, L_sei_0, electrode: ElectrodeConstants, sei, eps_s=None,
                    R=None) -> Tensor:
    """Charge [C] of the lithium locked into SEI grown from ``L_sei_0`` to ``L_sei``.

        Q_sei = F z (L - L_0) a L A / V_bar      (a = 3 eps_s / R)

    PyBaMM's "Loss of capacity to negative SEI [A.h]" x 3600 for x-uniform SEI (solvent-diffusion
    limited SEI is uniform in x; pass the x-averaged thickness). It ties a predicted SEI thickness
    to the negative electrode's lithium balance (``side_charge_C``).

    Args:
        L_sei, L_sei_0: SEI thickness now and at the start [m]; electrode: the negative
            electrode's constants; sei: :class:`~packtwin.physics.constants.SEIConstants`;
        eps_s, R: optional per-cell overrides.
    """
    eps_s = electrode.eps_s if eps_s is None else eps_s
    R = electrode.R if R is None else R
    a = 3.0 * eps_s / R
    return F * sei.z * (_as_tensor(L_sei) - L_sei_0) * a * electrode.L * electrode.A / sei.V_bar


def plating_side_charge(c_plated: Tensor, electrode: ElectrodeConstants, c_dead=0.0,
                        c_plated_0=0.0) -> Tensor:
    """Charge [C] of the lithium plated (reversible plus dead) in an electrode.

        Q_pl = F (c_plated + c_dead - c_plated_0) L A

    with the x-averaged plated and dead lithium concentrations [mol/m3 of electrode] (PyBaMM's
    "X-averaged negative lithium plating concentration [mol.m-3]", schema ``plated_lithium``, and
    "X-averaged negative dead lithium concentration [mol.m-3]"); equals PyBaMM's "Loss of capacity
    to negative lithium plating [A.h]" x 3600 when c_plated_0 = 0 (OKane2022's value).
    """
    return F * (_as_tensor(c_plated) + c_dead - c_plated_0) * electrode.L * electrode.A
