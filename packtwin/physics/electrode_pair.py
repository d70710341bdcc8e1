"""Both electrodes' reaction-current distributions in one batched Newton solve (the core's hot path).

Same equations, unknowns and iteration as :func:`packtwin.physics.current_distribution.solve_electrode`
(which stays the readable one-electrode reference; a test checks that both agree), with the
particles of the negative and the positive electrode laid side by side, X = Xn + Xp columns, so
that every elementwise operation runs once for both electrodes. Rows of the Newton system:

    0 .. Xn-2        potential differences between neighbouring negative particles
    Xn-1             negative charge balance   sum(a dx j_n) = i_app
    Xn .. X-2        potential differences between neighbouring positive particles
    X-1              positive charge balance   sum(a dx j_p) = -i_app

so the Jacobian is block diagonal; its two blocks are solved in one batched call. Everything
that does not change during a solve (sqrt c_e, the Arrhenius factors, the electrolyte
resistances) is computed once per solve, not once per iteration: this is what made the core
cost ~50 ms per 60 s sample for 100 cells (Python dispatch of small ops, not arithmetic).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.physics.constants import F, R_GAS, T_REF
from packtwin.physics.electrolyte import C_FLOOR, T_PLUS
from packtwin.physics.kinetics import _C_EPS
from packtwin.physics.ocp import ocp_negative, ocp_negative_with_slope, ocp_positive, \
    ocp_positive_with_slope
from packtwin.physics.plating_current import PlatingCurrent, PlatingInput, plating_current


# A Newton step that would carry a particle surface across 0 or c_max goes this fraction of the
# way to the bound instead.
TO_BOUNDARY = 0.9
# An electrode carrying less than (1 - this) of i_app after the iterations cannot carry it.
SHORTFALL_TOL = 1e-10
# Rounds of the configured Newton iterations added while a shortened step leaves it unmet.
EXTRA_ROUNDS = 3
# With plating, a Newton step moves no negative particle's overpotential U + eta by more than
# this many RT/F (the whole cell's step scaled, so its direction is kept). Why: the
# backward-Euler plating current saturates where it strips (at most the plated lithium over the
# step) and grows exponentially where it plates, so an undamped step from the saturated side
# lands deep in the plating branch. At -10 degC near the end of a 1C charge with 10 s steps the
# undamped iteration never settled (6 ... 60 iterations: 3.77 ... 6.54 V for a measured 4.164 V,
# draw 17's check pack); limited, it converges in 4-6 iterations to the 2 s sub-steps' answer.
PLATING_ETA_STEP = 4.0
# A solve goes on past its configured iterations while its last Newton step moved a particle's
# potential difference (linearised) by more than this [V], up to MAX_ROUNDS rounds of them in
# all; and past them, a step whose negative columns turn back against the previous step's is
# shortened to BACK_STEP of itself (Newton alternating about the root: damped, it settles).
# Why: at h = 0 (the measurement) with plated lithium stripping, the plating current's
# exponential made Newton from a uniform start alternate between a held-back and an
# overshooting step; after its 24 iterations it stopped 66 mV off (4.266 V for 4.1996 V) in the
# CV taper after a 3C charge (held-out draw 15, cell 1, identified parameters), and the
# filter's voltage swung by ~90 mV there. Now it settles in 12. Open loop over a check pack's
# cycles, the -10 degC pulses had unsettled solves too, none now, at ~5 % more iterations on
# that cycle and none more elsewhere (scripts/diag_newton_settle.py).
STEP_TOL_V = 1e-6
MAX_ROUNDS = 8
BACK_STEP = 0.5  # the factor of such a step turned back
# Full Newton steps required after the last limited one (in that case 6 iterations from a
# uniform start at 1.5C / -10 degC with the electrolyte nearly drained left 91 mV; 3 more, 0.7)
FREE_AFTER_LIMIT = 3


class PairSolution(NamedTuple):
    j: Tensor  # [B, X] reaction current density [A/m2]
    dphi: Tensor  # [B, X] phi_s - phi_e [V]
    c_surf: Tensor  # [B, X] surface concentration [mol/m3]
    i_e: Tensor  # [B, X] ionic current density at the face after each particle [A/m2]
    plating: PlatingCurrent | None = None  # the negative particles' plating current, if asked


class _Setup(NamedTuple):
    """One solve's inputs and what stays fixed over its iterations."""

    s0: Tensor
    g: Tensor
    T: Tensor
    c_e: Tensor  # clamped at C_FLOOR
    adx: Tensor
    i_app: Tensor
    i_app_c: Tensor  # [B, 1]
    R_film: Tensor
    RT_F: Tensor  # [B, 1]
    k_sqrt_ce: Tensor
    R_e: Tensor
    diffusion: Tensor
    J_const: Tensor
    plating: PlatingInput | None


class ElectrodePair:
    """Constant layout of the paired Newton system for Xn negative and Xp positive particles.

    Args:
        n_n, n_p: particles through each electrode; dx_n, dx_p: their widths [m].
        c_max_n, c_max_p: [mol/m3]; Ea_k_n, Ea_k_p: exchange-current activation energies [J/mol].
        sigma_eff_n, sigma_eff_p: effective solid conductivities [S/m].
    """

    def __init__(self, n_n: int, n_p: int, dx_n: float, dx_p: float, c_max_n: float,
                 c_max_p: float, Ea_k_n: float, Ea_k_p: float, sigma_eff_n: float,
                 sigma_eff_p: float, dtype: torch.dtype = torch.float64):
        self.n_n, self.n_p = n_n, n_p
        X = n_n + n_p
        self.X = X

        def per_column(vn, vp):
            return torch.cat([torch.full((n_n,), vn, dtype=dtype), torch.full((n_p,), vp, dtype=dtype)])

        self.c_max = per_column(c_max_n, c_max_p)
        self.c_eps = _C_EPS * self.c_max
        self.c_top = self.c_max - self.c_eps  # j0's clamp and the bound the steps keep to
        self.Ea_k = (Ea_k_n, Ea_k_p)
        self.dx = per_column(dx_n, dx_p)
        self.dx_sigma = per_column(dx_n / sigma_eff_n, dx_p / sigma_eff_p)
        k = torch.arange(X)
        is_pos = k >= n_n
        is_charge = (k == n_n - 1) | (k == X - 1)
        self.is_pos = is_pos.to(dtype)
        self.sign = 1.0 - 2.0 * self.is_pos  # +i_app flows into the negative, out of the positive
        self.n_particles = per_column(float(n_n), float(n_p))
        self.is_charge = is_charge
        self.is_charge_n = (k == n_n - 1).to(dtype)
        same = is_pos[:, None] == is_pos[None, :]
        pot = ~is_charge
        # Jacobian patterns: d at (k, k+1) minus d at (k, k) on potential rows; the cumulative
        # coupling on potential rows (same electrode, column <= row); a dx on charge rows.
        sup = (k[None, :] == k[:, None] + 1) & pot[:, None]
        diag = (k[None, :] == k[:, None]) & pot[:, None]
        self.sup_minus_diag = sup.to(dtype) - diag.to(dtype)
        self.tril = ((k[None, :] <= k[:, None]) & same & pot[:, None]).to(dtype)
        self.charge_rows = (is_charge[:, None] & same).to(dtype)
        # Equal electrodes: the same patterns as [2, n, n] diagonal blocks, so the Jacobian is
        # built as blocks (half the memory of [X, X] at 16 particles, no copy before the solve).
        self.blocked = n_n == n_p
        if self.blocked:
            blocks = lambda m: torch.stack([m[:n_n, :n_n], m[n_n:, n_n:]])  # noqa: E731
            self.sup_minus_diag_b = blocks(self.sup_minus_diag)
            self.tril_b = blocks(self.tril)
            self.charge_rows_b = blocks(self.charge_rows)

    def columns(self, neg: Tensor, pos: Tensor) -> Tensor:
        """Per-cell values [B] (or [B, Xn] and [B, Xp]) of each electrode laid out on [B, X]."""
        if neg.dim() == 1:
            neg = neg[:, None].expand(-1, self.n_n)
        if pos.dim() == 1:
            pos = pos[:, None].expand(-1, self.n_p)
        return torch.cat([neg, pos], dim=1)

    def solve(self, s0: Tensor, g: Tensor, k_n: Tensor, k_p: Tensor, T: Tensor, c_e: Tensor,
              kappa_eff: Tensor, adx: Tensor, i_app: Tensor, R_film: Tensor, iterations: int,
              j_init: Tensor | None = None, j_only: bool = False,
              plating: PlatingInput | None = None, implicit_grad: bool = False
              ) -> PairSolution | Tensor | tuple[Tensor, PlatingCurrent]:
        """Newton on both electrodes.

        Args:
            s0, g: c_surf = s0 + g j, [B, X] each.
            k_n, k_p: [B] exchange-current prefactors at T_ref; T: [B] [K].
            c_e, kappa_eff: [B, X] electrolyte concentration and effective conductivity at the
                particles; adx: [B, X] specific area times width per column [1];
            i_app: [B] current density (discharge > 0); R_film: [B, X] film resistance.
            iterations: Newton iterations at least; more follow until the steps settle
                (:data:`STEP_TOL_V`, at most :data:`MAX_ROUNDS` rounds); j_init: [B, X] start
                (default uniform).
            j_only: return j [B, X] alone (a time step needs nothing else), skipping the
                evaluation at the solution; with ``plating``, (j, its PlatingCurrent).
            plating: the negative particles' plated lithium and step
                (:mod:`packtwin.physics.plating_current`). Then j is the intercalation current
                and each negative particle also carries the plating current j_pl(eta), eta =
                U + eta_BV (the film drop taken out): the charge balance, the ionic currents
                and the film drop use j + j_pl, and the Newton columns of the negative
                particles scale by (1 + dj_pl/dj). The returned PairSolution's j is the total.
            implicit_grad: with autograd on, differentiate the solution implicitly (one
                Newton step's graph instead of every iteration's; the same values).

        Bounded Newton: every iterate keeps c_surf inside (0, c_max) where the surface starts
        inside. Where the start violates a bound, that particle's start is moved half-way
        back from s0; a step that would cross a bound is shortened, for that particle, to
        :data:`TO_BOUNDARY` of the way (an interior point method's fraction-to-boundary rule),
        and while the charge balance is left unmet so, up to :data:`EXTRA_ROUNDS` more rounds
        of ``iterations`` follow. All of it acts only at a bound, so ordinary solves are
        unchanged. The equations hold a log barrier there (j0 -> 0, so the overpotential
        grows; j0's concentration is clamped c_eps inside the bounds), so the root lies inside
        whenever the electrode can carry the current. When it cannot (a surface emptied or
        saturated, past the cut-off), both electrodes pass the charge the weaker one carries
        (:meth:`_deliverable`).
        """
        if implicit_grad and torch.is_grad_enabled():
            # Iterate without a graph, then one Newton step from the solution whose change is
            # kept at zero (j* - (step - step.detach())): the values are those of the plain
            # solve, the derivative is the implicit function theorem's -J^-1 dres/dtheta
            # (exact where the iteration has converged; J held constant, its own derivative
            # multiplies a zero residual). Backpropagation then goes through one iteration
            # instead of all of them (the identification's cost, packtwin.physics.identify).
            with torch.no_grad():
                free = self._setup(s0, g, k_n, k_p, T, c_e, kappa_eff, adx, i_app, R_film,
                                   plating)
                j_star, _ = self._iterate(free, iterations, j_init)
            st = self._setup(s0, g, k_n, k_p, T, c_e, kappa_eff, adx, i_app, R_film, plating)
            step = self._newton_step(st, j_star, detach_jacobian=True)[0]
            j, at_j = j_star - (step - step.detach()), None
        else:
            st = self._setup(s0, g, k_n, k_p, T, c_e, kappa_eff, adx, i_app, R_film, plating)
            j, at_j = self._iterate(st, iterations, j_init)
        return self._finish(st, j, at_j, j_only)

    def _setup(self, s0: Tensor, g: Tensor, k_n: Tensor, k_p: Tensor, T: Tensor, c_e: Tensor,
               kappa_eff: Tensor, adx: Tensor, i_app: Tensor, R_film: Tensor,
               plating: PlatingInput | None) -> _Setup:
        """What does not change during one solve (:meth:`solve`'s arguments)."""
        B, X = s0.shape
        n = self.n_n
        RT_F = (R_GAS * T / F)[:, None]  # [B, 1]
        arr_n = torch.exp(self.Ea_k[0] / R_GAS * (1.0 / T_REF - 1.0 / T))
        arr_p = torch.exp(self.Ea_k[1] / R_GAS * (1.0 / T_REF - 1.0 / T))
        c_e = c_e.clamp_min(C_FLOOR)
        k_sqrt_ce = self.columns(k_n * arr_n, k_p * arr_p) * torch.sqrt(c_e)
        half = 0.5 * self.dx / kappa_eff
        zero = torch.zeros(B, 1, dtype=s0.dtype)
        R_e = torch.cat([half[:, :-1] + half[:, 1:], zero], dim=1)  # row k: particle k -> k+1
        ln_ce = torch.log(c_e)
        diffusion = torch.cat([2.0 * (1.0 - T_PLUS) * RT_F * (ln_ce[:, 1:] - ln_ce[:, :-1]), zero],
                              dim=1)
        if self.blocked:  # [B, 2, n, n]: row patterns per electrode block
            c_row = (self.dx_sigma + R_e).view(B, 2, n, 1)
            J_const = adx.view(B, 2, 1, n) * (self.charge_rows_b - self.tril_b * c_row)
        else:
            J_const = adx[:, None, :] * (self.charge_rows
                                         - self.tril * (self.dx_sigma + R_e)[:, :, None])
        return _Setup(s0, g, T, c_e, adx, i_app, i_app[:, None], R_film, RT_F, k_sqrt_ce, R_e,
                      diffusion, J_const, plating)

    def _terms(self, st: _Setup, j: Tensor, with_slope: bool):
        """Everything at currents j [B, X]: (c_surf, j0, x, dphi, i_e, dU, c_cl, room, j_tot,
        PlatingCurrent or None)."""
        n, c_max = self.n_n, self.c_max
        c_surf = st.s0 + st.g * j
        sto = c_surf / c_max
        c_cl = torch.minimum(torch.maximum(c_surf, self.c_eps), self.c_top)
        room = c_max - c_cl
        j0 = st.k_sqrt_ce * torch.sqrt(c_cl) * torch.sqrt(room)
        x = j / (2.0 * j0)
        if with_slope:
            U_n, dU_n = ocp_negative_with_slope(sto[:, :n])
            U_p, dU_p = ocp_positive_with_slope(sto[:, n:])
            U, dU = torch.cat([U_n, U_p], 1), torch.cat([dU_n, dU_p], 1)
        else:
            U, dU = torch.cat([ocp_negative(sto[:, :n]), ocp_positive(sto[:, n:])], 1), None
        eta = 2.0 * st.RT_F * torch.asinh(x)
        if st.plating is None:
            pl, j_tot = None, j
        else:
            pl = plating_current(U[:, :n] + eta[:, :n], st.c_e[:, :n], st.T[:, None],
                                 st.plating)
            j_tot = torch.cat([j[:, :n] + pl.j, j[:, n:]], 1)
        dphi = U + eta + st.R_film * j_tot
        # i_e at the face after particle k: negative columns cumsum(a dx j), positive
        # columns i_app + their own cumsum
        cum = torch.cumsum(st.adx * j_tot, dim=1)
        i_e = cum + self.is_pos * (st.i_app_c - cum[:, n - 1:n])
        return c_surf, j0, x, dphi, i_e, dU, c_cl, room, j_tot, pl

    def _newton_step(self, st: _Setup, j: Tensor, detach_jacobian: bool = False):
        """The Newton step at j (j -> j - step), with c_surf there and, with plating, the
        plating overpotential's slope d(U + eta)/dj [B, Xn] (else None)."""
        B, X = j.shape
        n = self.n_n
        c_surf, j0, x, dphi, i_e, dU, c_cl, room, j_tot, pl = self._terms(st, j, True)
        i_s = st.i_app_c - i_e
        dphi_next = torch.cat([dphi[:, 1:], dphi[:, -1:]], dim=1)
        r_pot = dphi_next - dphi - (-i_s * self.dx_sigma + i_e * st.R_e - st.diffusion)
        res = torch.where(self.is_charge, i_e - self.is_charge_n * st.i_app_c, r_pot)
        # (at the clamp of j0's concentration, as j0 itself: finite next to a bound)
        # (torch.rsub / reciprocal: the kernels of 1 - t and 1 / t without the Python
        # wrappers of Tensor.__rsub__ / __rdiv__: the same numbers, less dispatch)
        dlnj0 = 0.5 * (c_cl.reciprocal() - room.reciprocal()) * st.g
        d = (dU / self.c_max * st.g
             + st.RT_F * torch.rsub(j * dlnj0, 1.0) / (j0 * torch.sqrt(1.0 + x * x)))
        deta_dj = None
        if pl is None:
            d = d + st.R_film
            J_c = st.J_const
        else:  # d j_tot / d j per column: 1 + dj_pl/deta * deta/dj (negative columns)
            deta_dj = d[:, :n]  # of the plating overpotential U + eta
            s_col = torch.cat([1.0 + pl.dj_deta * deta_dj, torch.ones_like(d[:, n:])], 1)
            d = d + st.R_film * s_col
            J_c = st.J_const * (s_col.view(B, 2, 1, n) if self.blocked else s_col[:, None, :])
        if self.blocked:
            J = d.view(B, 2, 1, n) * self.sup_minus_diag_b + J_c
            if detach_jacobian:
                J = J.detach()
            step = torch.linalg.solve(J, res.view(B, 2, n)).reshape(B, X)
        else:
            J = d[:, None, :] * self.sup_minus_diag + J_c
            if detach_jacobian:
                J = J.detach()
            step = torch.cat([torch.linalg.solve(J[:, :n, :n], res[:, :n]),
                              torch.linalg.solve(J[:, n:, n:], res[:, n:])], dim=1)
        return step, c_surf, deta_dj, d

    def _iterate(self, st: _Setup, iterations: int, j_init: Tensor | None):
        """The bounded Newton iteration (:meth:`solve`): j and, where the stopping check made
        them at the final j, its terms (else None)."""
        if j_init is None:
            j = self.sign * st.i_app_c / (st.adx * self.n_particles)
        else:
            j = j_init
        inside = self._inside(st.s0)
        j = self._feasible_start(j, st.s0, st.g, inside)
        at_j = None  # terms(j, False) of the present j, where the check below made them
        free = FREE_AFTER_LIMIT  # full steps since the last one _limit_eta_step held back
        prev = None  # the last step, from `iterations` - 1 on
        moved = None  # [B] the last step's largest potential change [V] (from `iterations` on)
        held = None  # [B] the last step was shortened at a bound
        for k in range(iterations * MAX_ROUNDS):
            # Past the configured iterations it goes on while (1) a step shortened at a bound
            # leaves the charge balance unmet (with plating counted on j + j_pl), for up to
            # EXTRA_ROUNDS more rounds, until it is met or the electrode is stuck at its bound;
            # (2) the last step moved a potential by more than STEP_TOL_V, up to MAX_ROUNDS
            # rounds in all, in cells whose last step was not shortened at a bound (a stuck
            # electrode's steps keep going 0.9 of the way to its bound, never settling);
            # (3) with plating, FREE_AFTER_LIMIT full steps have not yet followed the last step
            # held back by _limit_eta_step (a held-back iterate is still far from the root).
            if k >= iterations and free >= FREE_AFTER_LIMIT:
                if st.plating is not None:
                    at_j = self._terms(st, j, False)
                short = self._shortfall(j if at_j is None else at_j[8], st.adx, st.i_app)[0]
                unsettled = moved > STEP_TOL_V
                go_on = (short | unsettled if k < iterations * (1 + EXTRA_ROUNDS)
                         else unsettled & ~held)
                if not bool(go_on.any()):
                    break
            step, c_surf, deta_dj, d = self._newton_step(st, j)
            if deta_dj is not None:
                step, limited = _limit_eta_step(step, deta_dj, self.n_n, st.RT_F)
                free = 0 if limited else free + 1
            if k >= iterations:  # (STEP_TOL_V's note)
                back = (prev[:, :self.n_n] * step[:, :self.n_n]).sum(1, keepdim=True) < 0.0
                step = torch.where(back, BACK_STEP * step, step)
            if k + 1 >= iterations:
                prev = step
            step, held = self._to_boundary(step, c_surf, st.g, inside)
            if k + 1 >= iterations:
                moved = (d * step).abs().amax(1)
            j = j - step
            at_j = None
        return j, at_j

    def _finish(self, st: _Setup, j: Tensor, at_j, j_only: bool):
        """:meth:`solve`'s answer at the iteration's j (past the cut-off: scaled to what the
        electrodes deliver)."""
        if st.plating is None:
            j = self._deliverable(j, st.adx, st.i_app)
            if j_only:
                return j
            c_surf, _, _, dphi, i_e, _, _, _, _, _ = self._terms(st, j, False)
            return PairSolution(j, dphi, c_surf, i_e)
        # past the cut-off the intercalation current is scaled as without plating (the plating
        # current then follows the scaled state); the evaluation below is the step's own
        out = self._terms(st, j, False) if at_j is None else at_j
        scaled = self._deliverable(j, st.adx, st.i_app, out[8])
        if scaled is not j:  # (the same tensor back where nothing was short)
            j, out = scaled, self._terms(st, scaled, False)
        c_surf, _, _, dphi, i_e, _, _, _, j_tot, pl = out
        if j_only:
            return j, pl
        return PairSolution(j_tot, dphi, c_surf, i_e, pl)

    def _shortfall(self, j: Tensor, adx: Tensor, i_app: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Cells [B] whose electrodes carry less than i_app, the share r in [0, 1] the weaker
        one carries, and each electrode's share (r_n, r_p)."""
        n = self.n_n
        q = adx * j
        safe = torch.where(i_app == 0.0, 1.0, i_app)
        r_n = q[:, :n].sum(1) / safe
        r_p = -q[:, n:].sum(1) / safe
        r = torch.minimum(r_n, r_p).clamp(0.0, 1.0)
        return (i_app != 0.0) & (r < 1.0 - SHORTFALL_TOL), r, r_n, r_p

    def _deliverable(self, j: Tensor, adx: Tensor, i_app: Tensor,
                     j_tot: Tensor | None = None) -> Tensor:
        """Where an electrode stuck at its bound carries less than i_app (past the cut-off),
        both electrodes' currents scaled to the weaker one's charge: the electrolyte's salt and
        the particles' lithium stay balanced, and a lower current only moves each surface
        back towards its start (so it stays inside its bounds). Unchanged elsewhere.
        ``j_tot``: the total current the charge is counted on (with plating), if not j."""
        short, r, r_n, r_p = self._shortfall(j if j_tot is None else j_tot, adx, i_app)
        if not bool(short.any()):
            return j

        def factor(r_x):  # an electrode carrying nothing (or the wrong way) is stopped
            return torch.where(short, torch.where(r_x > 0.0, r / r_x.clamp_min(1e-300), 0.0),
                               1.0)

        scale = self.columns(factor(r_n), factor(r_p))
        return j * scale

    def _inside(self, s0: Tensor) -> Tensor:
        """Columns whose surface starts inside (0, c_max): only those are bounded (a state
        handed in outside is left to the unbounded iteration, as before)."""
        return (s0 > 0.0) & (s0 < self.c_max)

    def _feasible_start(self, j: Tensor, s0: Tensor, g: Tensor, inside: Tensor) -> Tensor:
        """``j`` where it keeps c_surf = s0 + g j inside (0, c_max); elsewhere the current that
        takes c_surf half-way from s0 (its value at j = 0) to the bound it crossed."""
        c_surf = s0 + g * j
        return torch.where(inside & (c_surf <= 0.0), -0.5 * s0 / g,
                           torch.where(inside & (c_surf >= self.c_max),
                                       0.5 * (self.c_max - s0) / g, j))

    def _to_boundary(self, step: Tensor, c_surf: Tensor, g: Tensor, inside: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Newton ``step`` (j -> j - step) from surface concentrations ``c_surf`` [B, X],
        shortened per particle so that no surface goes more than TO_BOUNDARY of its distance
        to its bound (c_eps inside 0 and c_max); and the cells [B] where a step was shortened."""
        dc = g * step  # minus the change of c_surf
        room = torch.where(dc > 0.0, c_surf - self.c_eps, self.c_top - c_surf)
        frac = (TO_BOUNDARY * room.clamp_min(0.0) / dc.abs().clamp_min(1e-300)).clamp(max=1.0)
        frac = torch.where(inside, frac, 1.0)
        return frac * step, (frac < 1.0).any(1)


def _limit_eta_step(step: Tensor, deta_dj: Tensor, n: int, RT_F: Tensor
                    ) -> tuple[Tensor, bool]:
    """Newton ``step`` [B, X] scaled, per cell, so that no negative particle's plating
    overpotential moves by more than :data:`PLATING_ETA_STEP` RT/F (linearised: ``deta_dj``
    [B, n] times the step); and whether any cell's step was scaled."""
    worst = (deta_dj * step[:, :n]).abs().amax(1, keepdim=True)
    cap = PLATING_ETA_STEP * RT_F
    over = worst > cap
    if not bool(over.any()):
        return step, False
    return step * torch.where(over, cap / worst.clamp_min(1e-300), 1.0), True
