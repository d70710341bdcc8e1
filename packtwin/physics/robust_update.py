"""Guards of a Kalman update on the reduced core, shared by the filters (pure functions).

Why: both filters linearise the core's voltage around their prediction. Where that model is
not to be trusted (a drained electrolyte, a voltage far outside what the covariance expects,
a correction that leaves the particles' physical range) a plain update moves the state by tens
of % of c_max and the filter can run away (the EKF's seed 15 -10 degC sample at 626.6 V).
"""

from __future__ import annotations

import torch
from torch import Tensor


def huber_noise(innovation: Tensor, S0: Tensor, R0: float | Tensor, gate_sigma: float
                ) -> Tensor:
    """[B] measurement noise variance: R0 inflated where the normalised innovation
    |e| / sqrt(S0) exceeds ``gate_sigma`` (a Huber-like weight), so that such a sample moves the
    state as far as one at the gate would instead of in proportion to its size.

    Args:
        innovation: [B] measured minus modelled voltage [V].
        S0: [B] innovation variance with R0 [V^2].
    """
    return R0 * torch.clamp((innovation ** 2 / S0).sqrt() / gate_sigma, min=1.0)


def scaled_step(x: Tensor, dx: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """x + a dx [B, n], a in [0, 1] per row the largest that keeps every component in [lo, hi]
    [n] (a = 1 where the whole step stays inside). Scaling keeps the step's direction, so a
    lithium-neutral step stays lithium-neutral; a clamp would break that."""
    new = x + dx
    room_up = torch.where(dx > 0, (hi - x) / dx, torch.full_like(x, float("inf")))
    room_dn = torch.where(dx < 0, (lo - x) / dx, torch.full_like(x, float("inf")))
    alpha = torch.minimum(room_up, room_dn).clamp(0.0, 1.0).min(1).values
    return torch.where((new > hi).any(1, keepdim=True) | (new < lo).any(1, keepdim=True),
                       x + alpha[:, None] * dx, new)


def shell_bounds(c_max: Tensor, margin: float = 0.005) -> tuple[Tensor, Tensor]:
    """[n] lower and upper bounds of a flattened core state whose particle entries have the
    finite ``c_max`` [n] (the electrolyte's entries are not finite: [0, inf))."""
    finite = torch.isfinite(c_max)
    hi = torch.where(finite, (1 - margin) * c_max, torch.full_like(c_max, float("inf")))
    lo = torch.where(finite, margin * c_max, torch.zeros_like(c_max))
    return lo, hi


# The strip guard's window where the filter's core has no plating (SubspaceConfig / EKFConfig
# strip_guard_s None): the DFN's plated lithium at -10 degC fell by only a fifth in the first
# 5 min of the rest after a charge, so its stripping lasts tens of minutes (not fitted: the
# check logs' rests after a charge end within 5 min).
STRIP_GUARD_S = 1800.0


def strip_window(configured: float | None, core_plates: bool) -> float:
    """The strip guard's window [s]: ``configured``, or where it is None, :data:`STRIP_GUARD_S`
    for a core without plating and 0 (off) for one with it (``CoreConfig.plating``: the core's
    own plated lithium strips and holds the voltage up, so the rest's voltage is information;
    on held-out draws 15-17 the subspace filter with plating did as well or better without the
    guard on every split: 0 degC from 600 s 0.61 +- 0.01 % of c_max without, 0.76 +- 0.25
    with)."""
    if configured is not None:
        return configured
    return 0.0 if core_plates else STRIP_GUARD_S


def since_charge(previous: Tensor, I: Tensor, dt: float, charge_a: float) -> Tensor:
    """[B] seconds since each cell's last charging sample (current below -``charge_a`` [A],
    discharge > 0): 0 on such a sample, inf on a discharging one (above ``charge_a``: a
    discharge strips the plated lithium first, and the rest after it is a rest after a
    discharge), ``previous`` + dt otherwise (inf: no charge since the last discharge)."""
    inf = torch.full_like(previous, float("inf"))
    return torch.where(I < -charge_a, torch.zeros_like(previous),
                       torch.where(I > charge_a, inf, previous + dt))


def stripping_rest(since: Tensor, I: Tensor, rest_a: float, window_s: float) -> Tensor:
    """[B] bool: the cell rests (|I| <= ``rest_a``) within ``window_s`` of a charge.

    Why: a core without lithium plating (``CoreConfig.plating`` off). After a charge,
    reversibly plated lithium strips back
    into the graphite at rest; the graphite then takes a current with no current at the
    terminals, and its intercalation overpotential holds the cell's voltage above the core's.
    The core from the DFN's true state was 20-43 mV (0 degC) and 31-55 mV (-10 degC) below the
    measured voltage through the first 5 min of the rest after a CC-CV charge (check pack,
    seeds 15 and 17; scripts/diag_core_from_truth.py), within -2..+11 mV after discharge
    pulses; a filter that reads those rest samples moves its SOC by 2-6 points to explain them
    (README, the strip guard)."""
    return (I.abs() <= rest_a) & (since <= window_s)
