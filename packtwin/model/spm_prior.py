"""Structural physics: the particle profile a single-particle model predicts from measured I and T.

The three-parameter polynomial approximation of spherical diffusion (Subramanian et al., J.
Electrochem. Soc. 152 (2005) A2002) gives each electrode's radial profile from its volume-average
concentration, its volume-averaged flux q and the surface flux j/F:

    c(rho) = a + b rho^2 + d rho^4,      dq/dt = -30 D/R^2 q - 45/(2 R^2) j/F

Written in stoichiometry theta = c / c_max with G = -j R / (F D c_max) (surface gradient in rho) and
H = q R / c_max:  b = 2H - G,  d = (3G - 4H)/4.  At steady state H = 3G/4 and the profile is the
classic parabola b = G/2, d = 0. The *shape* (b rho^2 + d rho^4 less its volume mean) depends
only on measured current and temperature (through the Arrhenius diffusivity), so the twin adds it
to its output and learns only what this model misses. The mean itself is fixed by the charge passed
(lithium conservation) from an estimated initial state: see ``TwinNet``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from packtwin.physics.constants import F, ElectrodeConstants
from packtwin.physics.conservation import mean_interfacial_current, volume_weights
from packtwin.physics.diffusion import arrhenius


def charge_to_stoichiometry(electrode: ElectrodeConstants, c_max: float) -> float:
    """d(theta_mean)/dQ [1/C] of an electrode: -sign / (F eps_s L A c_max).

    Negative electrode: discharge (Q > 0) lowers its stoichiometry; positive: raises it.
    """
    return -electrode.sign / (F * electrode.eps_s * electrode.L * electrode.A * c_max)


def flux_coefficients(current: Tensor, temperature: Tensor, electrode: ElectrodeConstants,
                      c_max: float) -> tuple[Tensor, Tensor]:
    """G [1] (surface gradient of the polynomial profile) and the flux state's decay rate
    lam = 30 D / R^2 [1/s] for a current [A] and temperature [K] (any equal shapes)."""
    T = temperature.clamp_min(200.0)  # padding may hold 0
    D = arrhenius(electrode.D_ref, electrode.Ea_D, T, electrode.T_ref)
    j = mean_interfacial_current(current, electrode)
    G = -j * electrode.R / (F * D * c_max)
    return G, 30.0 * D / electrode.R ** 2


def flux_step(h: Tensor, G: Tensor, decay: Tensor) -> Tensor:
    """One step of the mean-flux state H: exponential integrator, exact for a piecewise-constant
    input and stable for any step; ``decay`` = exp(-lam dt) of the step ending at this sample
    (current[k] is the current of the step ending at sample k)."""
    h_ss = 0.75 * G
    return h_ss + (h - h_ss) * decay


@torch.no_grad()
def flux_state(current: Tensor, temperature: Tensor, dt: Tensor, electrode: ElectrodeConstants,
               c_max: float) -> tuple[Tensor, Tensor]:
    """G(t) and H(t) [1] of the polynomial approximation along sequences.

    Args:
        current: cell current [A] (discharge > 0), [B, T].
        temperature: cell temperature [K], [B, T] (padding may hold 0: it is clamped).
        dt: step before each sample [s], [T] (dt[0] = 0).
        electrode, c_max: the electrode's constants and the store's maximum concentration.
    Returns:
        (G, H), each [B, T]: surface gradient and mean-flux state in d theta / d rho.
    """
    G, lam = flux_coefficients(current, temperature, electrode, c_max)
    H = torch.zeros_like(G)
    h = torch.zeros_like(G[:, 0])
    decay = torch.exp(-lam * dt.to(lam)[None, :])
    for k in range(1, G.shape[1]):
        h = flux_step(h, G[:, k], decay[:, k])
        H[:, k] = h
    return G, H


def profile_shape(G: Tensor, H: Tensor, rho: Tensor, n_avg: int | None = None,
                  weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Radial shape with zero volume average on the grid ``rho`` and its rho derivatives.

    Each [..., R] for G, H [...]; the average is taken over the first ``n_avg`` nodes (the
    stored grid, when ``rho`` was extended with the surface), with ``weights`` (its
    ``conservation.volume_weights``) when given, so that a graph need not read the grid.
    """
    b = (2.0 * H - G)[..., None]
    d = ((3.0 * G - 4.0 * H) / 4.0)[..., None]
    raw = b * rho ** 2 + d * rho ** 4
    # The discrete volume average on the stored grid (not the exact 3b/5 + 3d/7), so the
    # electrode's lithium computed from the output is exactly the conserved mean.
    n = rho.numel() if n_avg is None else n_avg
    if weights is None:
        weights = volume_weights(rho[:n])
    shape = raw - (raw[..., :n] * weights.to(raw)).sum(-1)[..., None]
    d1 = 2.0 * b * rho + 4.0 * d * rho ** 3
    d2 = 2.0 * b + 12.0 * d * rho ** 2
    return shape, d1, d2
