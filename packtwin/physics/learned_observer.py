"""A learned observer on the reduced core (issue 9, item 3): one small network shared by all cells
turns the voltage innovation into a bounded, lithium-conserving correction of the core's state.

Each sample: the core predicts (:meth:`ReducedCore.advance`), its voltage is compared with the
measured one (innovation e = V - V_core), and :class:`ObserverNet` reads e, I, T and a few
summaries of the predicted state and returns two corrections per cell:

* ``d_soc``: a shift of every particle of both electrodes along the cell's lithium-inventory
  line (:func:`packtwin.physics.ekf.soc_direction`): the negative gains what the positive loses,
  so the cell's total lithium is unchanged exactly;
* ``d_tilt``: a linear through-thickness tilt of the negative particles
  (:func:`packtwin.physics.ekf.tilt_directions`), zero net lithium in the electrode.

Both are ``bound * tanh(gain(features) * e / 10 mV)``: zero when the innovation is zero, never
larger than ``bound`` per sample. The side-reaction term the issue allows (lithium lost to SEI or
plating) is not corrected here: its bound is 0, i.e. every correction conserves the cell's
lithium exactly (tested). Electrolyte and shell-level shapes are left to the core's dynamics.

Closure (``ObserverNet(closure_v=...)``, off by default): against a DFN the core's voltage is off
by a few mV even from the true state (model form: 6 mV at 3C, 9 mV at -10 degC), and on the
flat graphite OCP the correction would spend the innovation on moving the state to cancel that
error. A second small head reads the same features except the innovation (I, T, the state's
summaries) and adds a bounded voltage term to the core's voltage, ``closure_v *
tanh(head(features))``; the innovation is taken against the closed voltage. It moves no lithium.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from packtwin.physics.core import CoreState, ReducedCore
from packtwin.physics.ekf import flatten, soc_direction, tilt_directions, unflatten
from packtwin.physics.particle_fv import particle_average

N_FEATURES = 8
INNOVATION_SCALE_V = 0.01


class Correction(NamedTuple):
    d_soc: Tensor  # [B] shift along the inventory line, fraction of the SOC window
    d_tilt: Tensor  # [B] negative tilt amplitude (end particles +-), fraction of c_max


class ObserverNet(nn.Module):
    """features [B, N_FEATURES], innovation [B] -> bounded :class:`Correction` (one net, all
    cells).

    Args:
        hidden: width of the two hidden layers.
        max_soc_step: bound on |d_soc| per sample (fraction of the SOC window).
        max_tilt_step: bound on |d_tilt| per sample (fraction of c_max).
    """

    def __init__(self, hidden: int = 32, max_soc_step: float = 0.02,
                 max_tilt_step: float = 0.001, closure_v: float = 0.0):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.Tanh(),
                                 nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.register_buffer("bounds", torch.tensor([max_soc_step, max_tilt_step]))
        # start as the open-loop core (zero gain); training grows the gains
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.closure_v = float(closure_v)
        self.closure = None
        if closure_v > 0:  # sees every feature but the innovation; starts at zero
            self.closure = nn.Sequential(nn.Linear(N_FEATURES - 1, hidden), nn.Tanh(),
                                         nn.Linear(hidden, 1))
            nn.init.zeros_(self.closure[-1].weight)
            nn.init.zeros_(self.closure[-1].bias)

    def closure_voltage(self, features: Tensor) -> Tensor:
        """[B] the voltage closure term [V] (zeros without a closure head); reads
        ``features[:, 1:]`` only, never the innovation."""
        if self.closure is None:
            return torch.zeros(features.shape[0], dtype=features.dtype)
        f = features[:, 1:].to(self.bounds.dtype)
        return self.closure_v * torch.tanh(self.closure(f)[:, 0])

    def forward(self, features: Tensor, innovation: Tensor) -> Correction:
        gain = self.mlp(features.to(self.bounds.dtype))
        z = gain * (innovation.to(gain.dtype) / INNOVATION_SCALE_V)[:, None]
        out = self.bounds * torch.tanh(z)
        return Correction(out[:, 0], out[:, 1])


def features(core: ReducedCore, state: CoreState, I: Tensor, T: Tensor, innovation: Tensor,
             window: Tensor) -> Tensor:
    """[B, N_FEATURES]: innovation, current (per 5 A), temperature, SOC, the negative
    electrode's tilt and surface-minus-mean at both ends, the positive's mean stoichiometry."""
    c = core.design.constants
    avg_n = particle_average(state.c_n, core.sphere) / c.neg.c_max  # [B, Xn]
    avg_p = particle_average(state.c_p, core.sphere) / c.pos.c_max
    surf_n = state.c_n[..., -1] / c.neg.c_max
    return torch.stack([
        innovation / 0.05, I / 5.0, (T - 298.15) / 10.0,
        (avg_n.mean(1) - 0.5) / window.clamp_min(1e-3),
        10.0 * (avg_n[:, -1] - avg_n[:, 0]),
        10.0 * (surf_n[:, -1] - avg_n[:, -1]), 10.0 * (surf_n[:, 0] - avg_n[:, 0]),
        avg_p.mean(1) - 0.5], dim=1)


def apply_correction(core: ReducedCore, state: CoreState, corr: Correction, window: Tensor
                     ) -> CoreState:
    """The state moved by ``corr``: along the inventory line and the negative tilt (no clamp,
    so the cell's lithium is conserved exactly; the bounds keep the steps small)."""
    v = soc_direction(core, window)
    tn, _ = tilt_directions(core)
    # keep both electrodes' mean stoichiometries in [0.02, 0.98]: past it shells leave
    # (0, c_max), where the OCP fits are extrapolations (limiting the step keeps it conservative)
    c = core.design.constants
    m_n = particle_average(state.c_n, core.sphere).mean(1) / c.neg.c_max
    m_p = particle_average(state.c_p, core.sphere).mean(1) / c.pos.c_max
    s_n = window  # negative stoichiometry per unit d_soc
    s_p = -v[:, core.config.n_x_n * core.config.n_r] / c.pos.c_max  # positive's, > 0 downwards
    d_soc = torch.minimum(torch.maximum(corr.d_soc, torch.maximum((0.02 - m_n) / s_n,
                                                                  (m_p - 0.98) / s_p)),
                          torch.minimum((0.98 - m_n) / s_n, (m_p - 0.02) / s_p))
    x = (flatten(state) + d_soc[:, None] * v
         + (corr.d_tilt * core.design.constants.neg.c_max)[:, None] * tn)
    return unflatten(core, x, state.L_sei, state.c_pl)


class LearnedObserver:
    """The core plus :class:`ObserverNet`, stepped like a filter (differentiable in the net)."""

    def __init__(self, core: ReducedCore, net: ObserverNet, window: Tensor):
        self.core, self.net, self.window = core, net, window

    def step(self, state: CoreState, I: Tensor, T: Tensor, V: Tensor, dt: float,
             guess=None):
        """Predict over one sample and correct with V. Returns (state, voltage before the
        correction (closure included), innovation, guess for the next sample's Newton)."""
        pred, guess = self.core.advance(state, I, T, dt, guess)
        v_model = self.core.measure(pred, I, T, guess).voltage
        if self.net.closure is not None:
            f0 = features(self.core, pred, I, T, torch.zeros_like(v_model), self.window)
            v_model = v_model + self.net.closure_voltage(f0)
        e = V - v_model
        corr = self.net(features(self.core, pred, I, T, e, self.window), e)
        return apply_correction(self.core, pred, corr, self.window), v_model, e, guess

    def run(self, state: CoreState, I: Tensor, T: Tensor, V: Tensor, dt: float
            ) -> tuple[list[CoreState], Tensor]:
        """I, T, V [B, K] -> corrected states at samples 1..K and the model voltages [B, K]."""
        states, volts, guess = [], [], None
        for k in range(I.shape[1]):
            same = k > 0 and bool((I[:, k] == I[:, k - 1]).all())
            state, v, _, guess = self.step(state, I[:, k], T[:, k], V[:, k], dt,
                                           guess if same else None)
            states.append(state)
            volts.append(v)
        return states, torch.stack(volts, 1)
