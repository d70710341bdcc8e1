"""The reduced electrochemical core: a small DFN in pure torch, batched over cells.

State (:class:`CoreState`), per cell:
  * ``c_n`` [B, Xn, Nr], ``c_p`` [B, Xp, Nr]: particle shells of Xn / Xp particles through each
    electrode's thickness (finite volumes in r, :mod:`packtwin.physics.particle_fv`);
  * ``c_e`` [B, Xn + Xs + Xp]: electrolyte concentration (:mod:`packtwin.physics.electrolyte`);
  * ``L_sei`` [B]: SEI thickness (film resistance; grows by :func:`packtwin.physics.sei`).

One step at constant current I [B] (discharge > 0) and measured temperature T [B] over dt:
sub-steps of at most ``max_substep_s``, each backward Euler in the particles with the reaction
current distribution solved together with them (:mod:`packtwin.physics.electrode_pair`, the
equations of :mod:`packtwin.physics.current_distribution`),
then backward Euler in the electrolyte with that source. Lithium is conserved exactly: each
electrode's particles change by the charge passed / F, the electrolyte's salt not at all.

What it leaves out against PyBaMM's DFN (generator options): the lithium consumed by SEI growth,
the plating/stripping side reaction unless ``CoreConfig.plating`` (then the state carries the
plated lithium ``c_pl`` and each negative particle the plating current,
:mod:`packtwin.physics.plating_current`; dead lithium is left out), the thermal model (T is an
input), and resolution: 8 particles per electrode leave 6.5 mV and 0.37 % of c_max at 3C, 9 mV
at -10 degC against a converged DFN
(``scripts/bench_core.py``), most of it the through-thickness discretisation (12 particles:
3.5 mV). A single backward-Euler step of 60 s at 2C can empty the particle next to the
separator (c < 0): keep ``max_substep_s`` at ~10 s.

Where a surface empties or saturates, or the cold drains the electrolyte (the end of a cold
discharge, or a state estimate far off): the current-distribution Newton keeps every surface
inside (0, c_max) and, where an electrode stuck at its bound cannot carry the current, passes
what it can with both electrodes balanced (:mod:`packtwin.physics.electrode_pair`); the
electrolyte step keeps c_e >= ``electrolyte.C_MIN`` with its salt conserved
(:func:`packtwin.physics.electrolyte.keep_positive`). The voltage then falls below the cut-off
and stays finite (tested), instead of running to -kV with c < 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F
from packtwin.physics.core_grid import SphereGrid, ThicknessGrid, interp_linear
from packtwin.physics.core_params import CellDesign, CoreParams, okane2022_design
from packtwin.physics.current_distribution import (NEWTON_ITERATIONS, WARM_ITERATIONS,
                                                   ElectrodeSolution, terminal_voltage)
from packtwin.physics.diffusion import arrhenius
from packtwin.physics.electrode_pair import ElectrodePair
from packtwin.physics.electrolyte import C_MIN, electrolyte_conductivity, electrolyte_step
from packtwin.physics.particle_fv import particle_average, particle_operators
from packtwin.physics.plating_current import PlatingInput
from packtwin.physics.sei import sei_growth_rate


class CoreState(NamedTuple):
    c_n: Tensor
    c_p: Tensor
    c_e: Tensor
    L_sei: Tensor
    c_pl: Tensor | None = None  # [B, Xn] plated lithium [mol/m3] (CoreConfig.plating), else None


def map_state(fn, *states: CoreState) -> CoreState:
    """``fn`` over the fields of ``states`` field by field (a field None in the first, plated
    lithium without ``CoreConfig.plating``, stays None)."""
    return CoreState(*(None if fields[0] is None else fn(*fields) for fields in zip(*states)))


class CoreOutputs(NamedTuple):
    """What the core gives at one instant, per cell [B] (or [B, X])."""

    voltage: Tensor  # terminal voltage [V]
    c_n_surf: Tensor  # [B, Xn] surface concentrations [mol/m3]
    c_p_surf: Tensor  # [B, Xp]
    c_n_avg: Tensor  # electrode-mean particle concentration [mol/m3]
    c_p_avg: Tensor
    plating_margin: Tensor  # phi_s - phi_e of the negative electrode at the separator [V]
    j_n: Tensor  # [B, Xn] reaction current densities [A/m2]
    j_p: Tensor  # [B, Xp]
    dphi_n: Tensor  # [B, Xn] phi_s - phi_e at each negative particle [V] (plating's driver)
    # [B, Xn] plating current density [A/m2] (> 0 stripping; 0 without CoreConfig.plating):
    # j_n is the intercalation current, the particle's interface carries j_n + j_pl_n
    j_pl_n: Tensor


@dataclass(frozen=True)
class CoreConfig:
    """Resolution of the core."""

    # 8 particles per electrode: at 3C 5 leave 19 mV and 0.68 % of c_max (negative), 8 leave
    # 6.5 mV and 0.37 %, 12 leave 3.5 mV and 0.22 % (reports/bench_core.json).
    n_x_n: int = 8  # particles through the negative electrode
    n_x_s: int = 3  # electrolyte cells in the separator
    n_x_p: int = 8  # particles through the positive electrode
    n_r: int = 12  # shells per particle
    r_stretch: float = 2.0  # > 1: thinner shells towards the surface
    max_substep_s: float = 10.0  # backward-Euler sub-step [s]
    newton_iterations: int = NEWTON_ITERATIONS  # from a uniform guess
    warm_iterations: int = WARM_ITERATIONS  # from the last solution at the same current
    # Lithium plating and stripping as a side reaction of the negative particles
    # (packtwin.physics.plating_current): the state carries the plated lithium c_pl.
    plating: bool = False
    # Differentiate each current-distribution solve implicitly (one Newton step's graph, not
    # every iteration's: the same values, the gradient exact at convergence); for fits that
    # backpropagate through whole logs (packtwin.physics.identify)
    implicit_grad: bool = False


class ReducedCore:
    """The core for a batch of cells with per-cell :class:`CoreParams` (plain object, no state).

    Every method is a pure function of its arguments, differentiable with autograd and
    ``torch.func`` (no in-place writes).
    """

    def __init__(self, params: CoreParams, config: CoreConfig = CoreConfig(),
                 design: CellDesign | None = None):
        self.params = params
        self.config = config
        self.design = design or okane2022_design()
        c = self.design.constants
        self.dtype = params.c_n_init.dtype
        self.grid_x = ThicknessGrid(config.n_x_n, config.n_x_s, config.n_x_p,
                                    c.neg.L, self.design.L_s, c.pos.L)
        self.sphere = SphereGrid.make(config.n_r, config.r_stretch).tensors(self.dtype)
        self.dx = self.grid_x.dx(self.dtype)
        d = self.design
        self.eps_e = self.grid_x.domain_values(d.eps_e_n, d.eps_e_s, d.eps_e_p, self.dtype)
        self.tortuosity = self.eps_e ** d.brug
        self.pair = ElectrodePair(config.n_x_n, config.n_x_p, self.grid_x.dx_n, self.grid_x.dx_p,
                                  c.neg.c_max, c.pos.c_max, c.neg.Ea_k, c.pos.Ea_k,
                                  d.sigma_eff("n"), d.sigma_eff("p"), self.dtype)

    # -- parameters at a temperature -----------------------------------------------------------
    @property
    def a_n(self) -> Tensor:
        return 3.0 * self.params.eps_s_n / self.params.R_n

    @property
    def a_p(self) -> Tensor:
        return 3.0 * self.params.eps_s_p / self.params.R_p

    def diffusivities(self, T: Tensor) -> tuple[Tensor, Tensor]:
        c = self.design.constants
        return (arrhenius(self.params.D_n, c.neg.Ea_D, T, c.T_ref),
                arrhenius(self.params.D_p, c.pos.Ea_D, T, c.T_ref))

    def film_resistance(self, L_sei: Tensor) -> Tensor:
        return self.design.constants.sei.resistivity * L_sei

    # -- state --------------------------------------------------------------------------------
    def initial_state(self, c_n: Tensor | None = None, c_p: Tensor | None = None) -> CoreState:
        """Rest state: uniform particles (the parameters' initial values unless given [B]) and
        uniform electrolyte at its reference concentration."""
        p, cfg = self.params, self.config
        B = p.n_cells
        c_n = p.c_n_init if c_n is None else c_n
        c_p = torch.full((B,), self.design.c_p_init, dtype=self.dtype) if c_p is None else c_p
        return CoreState(
            c_n[:, None, None].expand(B, cfg.n_x_n, cfg.n_r).clone(),
            c_p[:, None, None].expand(B, cfg.n_x_p, cfg.n_r).clone(),
            torch.full((B, self.grid_x.n), self.design.c_e0, dtype=self.dtype),
            p.L_sei.clone(),
            torch.zeros(B, cfg.n_x_n, dtype=self.dtype) if cfg.plating else None)

    def lithium(self, state: CoreState) -> tuple[Tensor, Tensor, Tensor]:
        """Moles of lithium [B] in the negative particles, positive particles, electrolyte."""
        c = self.design.constants
        g = self.grid_x
        n = (self.params.eps_s_n * c.neg.A * g.dx_n
             * particle_average(state.c_n, self.sphere).sum(1))
        p = (self.params.eps_s_p * c.pos.A * g.dx_p
             * particle_average(state.c_p, self.sphere).sum(1))
        e = (state.c_e * self.eps_e * self.dx).sum(1) * c.neg.A
        return n, p, e

    def plated_lithium(self, state: CoreState) -> Tensor:
        """Moles of plated lithium [B] (0 without plating)."""
        if state.c_pl is None:
            return torch.zeros(self.params.n_cells, dtype=self.dtype)
        return state.c_pl.sum(1) * self.grid_x.dx_n * self.design.constants.neg.A

    def _plating_input(self, c_pl: Tensor | None, h: float) -> PlatingInput | None:
        """The solve's plating input for plated lithium ``c_pl`` over a step ``h`` [s] (None
        without plating; a state without c_pl starts with none plated)."""
        if not self.config.plating:
            return None
        if c_pl is None:
            c_pl = torch.zeros(self.params.n_cells, self.config.n_x_n, dtype=self.dtype)
        pc = self.design.constants.plating
        return PlatingInput(c_pl, self.a_n[:, None], pc.k, pc.alpha, h)

    # -- the algebraic part -------------------------------------------------------------------
    def _kappa_eff(self, c_e: Tensor, T: Tensor) -> Tensor:
        return electrolyte_conductivity(c_e, T[:, None]) * self.tortuosity

    def _solve(self, s0_n, g_n, s0_p, g_p, c_e, T, i_app, L_sei, guess=None, j_only=False,
               plating: PlatingInput | None = None):
        """Both electrodes' current distributions (one paired Newton solve,
        :mod:`packtwin.physics.electrode_pair`); ``guess``: (j_n, j_p) to warm-start from;
        ``j_only``: return (j_n, j_p) alone (with ``plating``: (j_n, j_p, PlatingCurrent),
        j_n the intercalation current); otherwise (neg, pos, kappa, PlatingCurrent or None),
        neg.j the total current."""
        g, p, pair = self.grid_x, self.params, self.pair
        kappa = self._kappa_eff(c_e, T)
        n0, p0 = g.n_n, g.n_n + g.n_s
        if guess is None:
            it, j_init = self.config.newton_iterations, None
        else:
            it, j_init = self.config.warm_iterations, torch.cat(guess, dim=1)
            if plating is not None:
                # the plated lithium moves the split between sub-steps: at -10 degC after a
                # charge 3 warm iterations left 0.3 mV against 30, 4 leave 0.01 mV
                it += 1
        if bool((c_e <= C_MIN).any()):
            # a drained electrolyte (held at its floor by keep_positive) makes the solve stiff:
            # at 3C / 25 degC 3 warm iterations left 1.6 mV, 6 left 0.13 mV against 24
            it = 2 * self.config.newton_iterations
        adx = pair.columns(self.a_n * g.dx_n, self.a_p * g.dx_p)
        R_film = pair.columns(self.film_resistance(L_sei), torch.zeros_like(L_sei))
        sol = pair.solve(pair.columns(s0_n, s0_p), pair.columns(g_n, g_p), p.k_n, p.k_p, T,
                         torch.cat([c_e[:, :n0], c_e[:, p0:]], 1),
                         torch.cat([kappa[:, :n0], kappa[:, p0:]], 1), adx, i_app, R_film, it,
                         j_init, j_only, plating, self.config.implicit_grad)
        n, X = g.n_n, pair.X
        if j_only:
            if plating is None:
                return sol[:, :n], sol[:, n:]
            j, pl = sol
            return j[:, :n], j[:, n:], pl
        neg = ElectrodeSolution(sol.j[:, :n], sol.dphi[:, :n], sol.c_surf[:, :n],
                                sol.i_e[:, :n - 1])
        pos = ElectrodeSolution(sol.j[:, n:], sol.dphi[:, n:], sol.c_surf[:, n:],
                                sol.i_e[:, n:X - 1])
        return neg, pos, kappa, sol.plating

    def measure(self, state: CoreState, I: Tensor, T: Tensor,
                guess: tuple[Tensor, Tensor] | None = None) -> CoreOutputs:
        """Outputs of a state at current I [B] and temperature T [B] (the measurement model).

        ``guess``: reaction currents (j_n, j_p) close to the answer (e.g. the step's own), so
        that ``config.warm_iterations`` Newton iterations suffice instead of
        ``config.newton_iterations``."""
        c, d, g, p = self.design.constants, self.design, self.grid_x, self.params
        I = torch.as_tensor(I, dtype=self.dtype)
        T = torch.as_tensor(T, dtype=self.dtype)
        D_n, D_p = self.diffusivities(T)
        rho = self.sphere["centres"][-1]
        gain_n = -(1.0 - rho) * p.R_n / (F * D_n)
        gain_p = -(1.0 - rho) * p.R_p / (F * D_p)
        i_app = I / c.neg.A
        neg, pos, kappa, pl = self._solve(state.c_n[..., -1], gain_n, state.c_p[..., -1], gain_p,
                                         state.c_e, T, i_app, state.L_sei, guess,
                                         plating=self._plating_input(state.c_pl, 0.0))
        V = terminal_voltage(neg, pos, i_app, I, T, state.c_e, kappa, self.dx, g.n_n, g.n_s,
                             d.sigma_eff("n"), d.sigma_eff("p"), self.a_n, self.a_p,
                             p.R_contact)
        if g.n_n > 1:  # linear extrapolation to the separator face, as PyBaMM's boundary value
            margin = 1.5 * neg.dphi[:, -1] - 0.5 * neg.dphi[:, -2]
        else:
            margin = neg.dphi[:, -1]
        j_pl = torch.zeros_like(neg.j) if pl is None else pl.j
        return CoreOutputs(V, neg.c_surf, pos.c_surf,
                           particle_average(state.c_n, self.sphere).mean(1),
                           particle_average(state.c_p, self.sphere).mean(1),
                           margin, neg.j - j_pl, pos.j, neg.dphi, j_pl)

    # -- time stepping -------------------------------------------------------------------------
    def step(self, state: CoreState, I: Tensor, T: Tensor, dt: float) -> CoreState:
        """Advance by ``dt`` [s] at constant current I [B] [A] and temperature T [B] [K]."""
        return self.advance(state, I, T, dt)[0]

    def advance(self, state: CoreState, I: Tensor, T: Tensor, dt: float,
                guess: tuple[Tensor, Tensor] | None = None
                ) -> tuple[CoreState, tuple[Tensor, Tensor]]:
        """:meth:`step` that also returns the last sub-step's reaction currents (j_n, j_p) and
        takes a ``guess`` of them (valid when the current has not changed since)."""
        if not dt > 0:
            raise ValueError(f"ReducedCore.step: dt must be > 0 s, got {dt}")
        c, p = self.design.constants, self.params
        I = torch.as_tensor(I, dtype=self.dtype).expand(p.n_cells)
        T = torch.as_tensor(T, dtype=self.dtype).expand(p.n_cells)
        n_sub = max(1, math.ceil(dt / self.config.max_substep_s - 1e-9))
        h = dt / n_sub
        D_n, D_p = self.diffusivities(T)
        ops_n = particle_operators(self.sphere, D_n, p.R_n, h)
        ops_p = particle_operators(self.sphere, D_p, p.R_p, h)
        i_app = I / c.neg.A
        zeros_s = torch.zeros(p.n_cells, self.grid_x.n_s, dtype=self.dtype)
        # Fixed over the sample (T and I are): the surface response to j and the shells' share
        # of each sub-step's flux.
        g_n = ops_n.q[:, -1] * ops_n.flux_scale + ops_n.surf_gain
        g_p = ops_p.q[:, -1] * ops_p.flux_scale + ops_p.surf_gain
        qf_n = (ops_n.q * ops_n.flux_scale[:, None])[:, None, :]  # [B, 1, Nr]
        qf_p = (ops_p.q * ops_p.flux_scale[:, None])[:, None, :]
        a_n, a_p = self.a_n[:, None], self.a_p[:, None]
        c_n, c_p, c_e, L_sei, c_pl = state
        plating = self._plating_input(c_pl, h)
        if plating is not None:
            c_pl = plating.c_pl
        sei_rate = sei_growth_rate(torch.ones_like(L_sei), T, c.sei, p.D_sol)  # x 1 / L_sei
        for _ in range(n_sub):
            Pc_n = torch.einsum("bij,bxj->bxi", ops_n.P, c_n)
            Pc_p = torch.einsum("bij,bxj->bxi", ops_p.P, c_p)
            if plating is None:
                j_n, j_p = guess = self._solve(Pc_n[..., -1], g_n, Pc_p[..., -1], g_p, c_e, T,
                                               i_app, L_sei, guess, j_only=True)
                j_tot_n = j_n
            else:
                j_n, j_p, pl = self._solve(Pc_n[..., -1], g_n, Pc_p[..., -1], g_p, c_e, T,
                                           i_app, L_sei, guess, j_only=True,
                                           plating=plating._replace(c_pl=c_pl))
                guess, c_pl, j_tot_n = (j_n, j_p), pl.c_pl, j_n + pl.j
            c_n = Pc_n + qf_n * j_n[..., None]
            c_p = Pc_p + qf_p * j_p[..., None]
            source = torch.cat([a_n * j_tot_n, zeros_s, a_p * j_p], dim=1)
            c_e = electrolyte_step(c_e, source, T, self.eps_e, self.tortuosity, self.dx, h)
            # solvent-diffusion-limited growth: rate proportional to 1 / L_sei
            L_sei = L_sei + h * sei_rate / L_sei
        return CoreState(c_n, c_p, c_e, L_sei, c_pl), guess

    def simulate(self, state: CoreState, I: Tensor, T: Tensor, dt: float,
                 I_end: Tensor | None = None) -> tuple[CoreState, dict[str, Tensor]]:
        """Run a log: I, T [B, K] (the value over the step ending at sample k, the stores'
        convention) from ``state`` at sample 0; outputs at samples 1..K stacked on dim 1.

        ``I_end`` [B, K]: the current at each sample's instant, where the outputs are measured
        (the stores' ``current_end``; None: I). It differs from the step's mean where the
        current switched inside the step (a cut-off, CC to CV): the voltage read there is
        the new current's, which no state at the mean current gives."""
        I = torch.as_tensor(I, dtype=self.dtype)
        T = torch.as_tensor(T, dtype=self.dtype)
        I_end = I if I_end is None else torch.as_tensor(I_end, dtype=self.dtype)
        if I_end.shape != I.shape:
            raise ValueError(f"ReducedCore.simulate: I_end has shape {tuple(I_end.shape)}, "
                             f"expected I's {tuple(I.shape)}")
        outs: list[CoreOutputs] = []
        states: list[CoreState] = []
        guess = None
        for k in range(I.shape[1]):
            # warm-start Newton only where nothing changed (a current step moves j everywhere)
            same = k > 0 and bool((I[:, k] == I[:, k - 1]).all())
            state, guess = self.advance(state, I[:, k], T[:, k], dt, guess if same else None)
            # the step's reaction currents start the measurement's Newton where the instant
            # current is the mean's to 1e-3 (a stored float32 current differs in its last
            # bits); after a switch it starts cold (the solve settles either way)
            near = I_end is I or bool(((I_end[:, k] - I[:, k]).abs()
                                       <= 1e-3 * (1.0 + I[:, k].abs())).all())
            outs.append(self.measure(state, I_end[:, k], T[:, k], guess if near else None))
            states.append(state)
        stacked = {name: torch.stack([getattr(o, name) for o in outs], 1)
                   for name in CoreOutputs._fields}
        for name in CoreState._fields:
            if getattr(state, name) is not None:
                stacked[name] = torch.stack([getattr(s, name) for s in states], 1)
        return state, stacked

    # -- fields on another grid ----------------------------------------------------------------
    def particle_field(self, c: Tensor, c_surf: Tensor, x_core: Tensor, x_new: Tensor,
                       r_new: Tensor) -> Tensor:
        """c [..., X, Nr] with surface values [..., X] -> [..., len(x_new), len(r_new)]:
        linear in r through the shell centres and the surface (rho = 1), then linear in x."""
        rho = torch.cat([self.sphere["centres"], torch.ones(1, dtype=self.dtype)])
        prof = torch.cat([c, c_surf[..., None]], dim=-1)
        in_r = interp_linear(torch.as_tensor(r_new, dtype=self.dtype), rho, prof)  # [.., X, R']
        moved = in_r.transpose(-1, -2)  # [..., R', X]
        return interp_linear(torch.as_tensor(x_new, dtype=self.dtype), x_core,
                             moved).transpose(-1, -2)
