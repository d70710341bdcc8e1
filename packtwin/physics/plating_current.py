"""Lithium plating and stripping as a current in the negative electrode (the core's side reaction).

PyBaMM's partially reversible plating (OKane2022), per negative particle, at the plating
overpotential eta = phi_s - phi_e - j_tot R_film (the film drop removed, as PyBaMM's
``eta_stripping = delta_phi + eta_sei``):

    j_pl = F k (c_pl exp((1 - alpha) f eta) - c_e exp(-alpha f eta)),   f = F / (R T)
    dc_pl/dt = -a j_pl / F

(j_pl > 0 strips, < 0 plates; c_pl [mol/m3 of electrode] is the plated lithium). Backward Euler
over a step h, with the exponentials at the step's end, is linear in c_pl and gives

    c_pl' = (c_pl + h a k c_e E_p) / D,   j_pl = F k (c_pl E_s - c_e E_p) / D,
    D = 1 + h a k E_s,   E_s = exp((1 - alpha) f eta),   E_p = exp(-alpha f eta),

which keeps c_pl' >= 0 at any h (fast stripping at rest stays stable) and is exactly the
plated lithium's change h a j_pl / F, so lithium is conserved. h = 0 is the instantaneous
current of a state (the measurement model).

Why it matters: after a cold charge the DFN's plated lithium strips back into the graphite at
rest, a local cell whose intercalation needs a cathodic overpotential (tens of mV at -10 degC):
the rest voltage sits above the open-circuit voltage. A core without it reads that as SOC.
Left out: PyBaMM's decay of plated to dead lithium (1e-6 1/s x L_0 / L_sei: under 0.4 % of
the plated lithium per hour).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F, R_GAS

# exponents capped: beyond this the rates are negligible or instantaneous anyway
MAX_EXPONENT = 60.0


class PlatingInput(NamedTuple):
    """What the current-distribution solve needs for the plating current of Xn particles."""

    c_pl: Tensor  # [B, Xn] plated lithium at the step's start [mol/m3]
    a: Tensor  # [B, 1] surface area density of the negative electrode [1/m]
    k: float  # rate constant [m/s] (PyBaMM "Lithium plating kinetic rate constant [m.s-1]")
    alpha: float  # plating transfer coefficient; stripping 1 - alpha
    h: float  # step [s]; 0: the instantaneous current of the state


class PlatingCurrent(NamedTuple):
    j: Tensor  # [B, Xn] plating current density [A/m2] (> 0 stripping)
    dj_deta: Tensor  # [B, Xn] its derivative by the plating overpotential [A/m2/V]
    c_pl: Tensor  # [B, Xn] plated lithium at the step's end [mol/m3]


def plating_current(eta: Tensor, c_e: Tensor, T: Tensor, inp: PlatingInput) -> PlatingCurrent:
    """Backward-Euler plating current at overpotential ``eta`` [B, Xn] [V], electrolyte ``c_e``
    [B, Xn] [mol/m3], temperature ``T`` [B, 1] [K] (module docstring)."""
    f = F / (R_GAS * T)
    e_s = torch.exp(torch.clamp((1.0 - inp.alpha) * f * eta, max=MAX_EXPONENT))
    e_p = torch.exp(torch.clamp(-inp.alpha * f * eta, max=MAX_EXPONENT))
    c_e = c_e.clamp_min(0.0)
    A = inp.h * inp.a * inp.k
    D = 1.0 + A * e_s
    num = inp.c_pl * e_s - c_e * e_p
    de_s, de_p = (1.0 - inp.alpha) * f * e_s, -inp.alpha * f * e_p
    dnum = inp.c_pl * de_s - c_e * de_p
    Fk = F * inp.k
    j = Fk * num / D
    dj = Fk * (dnum * D - num * A * de_s) / (D * D)
    c_new = (inp.c_pl + A * c_e * e_p) / D
    return PlatingCurrent(j, dj, c_new)
