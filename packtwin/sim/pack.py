"""Pack coupling: series strings carry one current; parallel cells share their terminal voltage.

Each pack step of ``dt`` holds every cell at a constant current. The end-of-step voltage of cell j
is linearised as ``V_j(I_j) = a_j - R_j I_j`` (a Newton/secant model refined by trial steps: R_j
from two trials of the same step, a_j from the latest trial), the split that equalises the group
voltage is solved in closed form (:func:`split_current`), the cells are re-stepped from the same
old state, until every parallel group's voltage spread is below ``voltage_tol``. Currents sum to
the group current to rounding error by construction (:func:`split_current` corrects the sum).
With ``fewer_trials`` (SolverConfig.fewer_trials) a group already within the tolerance keeps its
trial while the pack current stays (no limit binds) and only the other groups are re-stepped; off,
every trial re-steps every cell (the stepping of stores made before the option).

Voltage limits (v_min/v_max of any cell) are held the same way: when the requested pack current
would take a cell past a limit, the pack current of the step is solved so that the limiting cell
ends the step exactly at the limit (this is the CV phase, and the last step of a discharge).

Coupling steps longer than the storage period (:meth:`PackStepper.advance`, used by the
generator): a step may span up to ``max_periods`` storage periods. Inside it each cell's current
ramps linearly (start and end currents; group sums held at both ends, so at every instant), and
the cells are sampled at every period. The ramps are solved like the constant split above, on
intercepts fitted by a straight line in time through every sample (``V_jk = a_j(t_k) - R_j
I_j(t_k)``); in the CV hold the limiting group's ramp keeps it on v_max. A step is accepted only if
every group's voltage spread is <= ``voltage_tol`` at EVERY sample (and the CV group within it of
v_max) and no cell leaves [v_min, v_max] at any sample; otherwise it is halved (also where the
fitted intercepts leave a straight line by more than the tolerance: no ramp can follow them).
After an accepted step the length doubles where the residual of the straight-line fit allows a
doubled step. Steps end at every change of the request (the caller's segments); near a limit,
where a limit starts binding and after a request change of a parallel group, steps are one period
long and solved exactly as above, so a discharge still ends with the limiting cell on v_min. A
series string (one cell per group) has no split to solve: each step takes one trial, as long as
its limits allow.

Cut-offs off the grid (:meth:`PackStepper.advance` with ``then``, used by the generator for the
end of a discharge and of a CC charge): a cycler detects a cut-off within milliseconds, so the
period in which a cell reaches it is split at the crossing. The pack runs at the requested
current for tau (the root of the limiting group's voltage minus the limit, found by safeguarded
regula falsi on the step length, each trial a converged pack step) and then in the next mode
(rest after a discharge, CV after a CC charge) for the rest of the period; the period's sample is
the state at its end and its current the mean over it, so the charge counted is the charge up to
the crossing. Holding the limit with a reduced current for the whole period instead (what a
limited step does) gave a charge that depended on where the crossing fell on the grid: up to
0.1 Ah (0.6 % of capacity) between neighbouring cycles of a 2p group at 1C.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

SECANT_MIN_DV = 5e-5  # V
# A cut-off's crossing time is found to CUTOFF_DT * period, or to CUTOFF_DV * voltage_tol in the
# limiting group's voltage: at 1C that is <= 0.06 s of a 60 s period, ~1e-3 of one period's charge.
CUTOFF_DT, CUTOFF_DV, CUTOFF_TRIALS = 1e-3, 1e-2, 30
# Secant resistances outside [r_init / 10, r_init * 30] are noise, not a cell (5 Ah cell ~ 30 mOhm).
R_LOW, R_HIGH = 0.1, 30.0


def split_current(a: np.ndarray, R: np.ndarray, i_group: float) -> tuple[np.ndarray, float]:
    """Currents of parallel cells with ``V = a_j - R_j I_j`` equal and ``sum I_j = i_group``."""
    g = 1.0 / np.asarray(R, dtype=float)
    v = (float(np.dot(a, g)) - i_group) / float(g.sum())
    i = (np.asarray(a, dtype=float) - v) * g
    i += (i_group - i.sum()) * g / g.sum()  # remove the rounding residue of the sum
    return i, v


def group_line(a: np.ndarray, R: np.ndarray) -> tuple[float, float]:
    """A group's voltage as ``A - Rg I_group`` (Thevenin equivalent of its linearised cells)."""
    g = 1.0 / np.asarray(R, dtype=float)
    return float(np.dot(a, g) / g.sum()), float(1.0 / g.sum())


def limited_pack_current(lines: Sequence[tuple[float, float]], i_request: float,
                         v_min: float, v_max: float) -> tuple[float, str | None]:
    """Pack current closest to ``i_request`` keeping every group within [v_min, v_max].

    Returns the current and which limit binds ('v_min', 'v_max' or None).
    """
    # V_g = A_g - R_g I <= v_max  <=>  I >= (A_g - v_max) / R_g ; V_g >= v_min <=> I <= (A_g - v_min)/R_g
    i_lo = max((A - v_max) / Rg for A, Rg in lines)
    i_hi = min((A - v_min) / Rg for A, Rg in lines)
    # A limit only cuts the current back towards zero; it never reverses it (a charge limit
    # cannot demand a discharge), which also keeps a poor linear model from wild trials.
    if i_request < i_lo:
        return min(i_lo, 0.0), "v_max"
    if i_request > i_hi:
        return max(i_hi, 0.0), "v_min"
    return i_request, None


def limit_is_pinned(lines: Sequence[tuple[float, float]], i_pack: float, limit: str | None,
                    v_min: float, v_max: float) -> bool:
    """Whether the limiting group sits exactly on its limit at ``i_pack`` (not clipped)."""
    if limit is None:
        return False
    v = [A - Rg * i_pack for A, Rg in lines]
    return abs((max(v) - v_max) if limit == "v_max" else (min(v) - v_min)) < 1e-9


@dataclass
class StepResult:
    i_pack: float
    cell_currents: np.ndarray  # (n_cells,)
    voltages: np.ndarray  # (n_cells,) end of step
    limit: str | None  # limit that bound this step
    iterations: int
    solutions: list = field(default_factory=list)
    n_periods: int = 1  # storage periods this step spans
    sample_voltages: np.ndarray | None = None  # (n_periods, n_cells) at each period's end
    period_currents: np.ndarray | None = None  # (n_periods, n_cells) mean over each period
    sample_currents: np.ndarray | None = None  # (n_periods, n_cells) at each period's end

    def samples(self) -> np.ndarray:
        """Cell voltages at every storage period of the step, (n_periods, n_cells)."""
        return self.voltages[None] if self.sample_voltages is None else self.sample_voltages

    def currents(self) -> np.ndarray:
        """Cell currents averaged over every storage period of the step, (n_periods, n_cells)
        (inside a step of several periods the currents ramp linearly)."""
        return self.cell_currents[None] if self.period_currents is None else self.period_currents

    def end_currents(self) -> np.ndarray:
        """Cell currents at every storage period's end, (n_periods, n_cells): the instant its
        voltage is read (after a cut-off inside the period, the next mode's current)."""
        return self.cell_currents[None] if self.sample_currents is None else self.sample_currents


class PackStepper:
    """Steps ``n_series x n_parallel`` cells through one ``dt`` at a time.

    ``step_cell(j, old_solution, current, dt) -> (solution, end_voltage)`` advances one cell;
    ``step_cell(j, old_solution, (i_start, i_end), dt, n) -> (solution, voltages)`` advances it by
    ``dt`` with the current ramping linearly from i_start to i_end and returns the voltages at the
    ``n`` equally spaced samples of the step (used by :meth:`advance`). The stepper never sees PyBaMM, so the coupling can be tested with analytic
    cells.
    """

    def __init__(self, n_series: int, n_parallel: int, step_cell: Callable, voltage_tol: float,
                 max_iterations: int, r_init: float = 0.03, max_periods: int = 1,
                 fewer_trials: bool = False):
        self.ns, self.np_ = n_series, n_parallel
        self.n = n_series * n_parallel
        self.step_cell = step_cell
        self.tol = voltage_tol
        self.max_iter = max_iterations
        self.r_init = r_init
        self.R = np.full(self.n, r_init)
        self.a: np.ndarray | None = None  # last accepted linear model intercepts
        self.a_prev: np.ndarray | None = None
        self.i_prev_request: float | None = None
        self.solutions: list = [None] * self.n
        self.cur_hist: list[np.ndarray] = []  # accepted splits of the last two steps
        self._pinned = False
        self.trace: list | None = None  # set to [] to record every trial (debugging)
        self.max_periods = max(1, int(max_periods))
        self.m = 1  # length of the next coupling step tried by advance() [periods]
        self.drift: np.ndarray | None = None  # intercept change per period under this request
        self.rejected = 0  # multi-period trials given up (shortened)
        self.rescues = 0  # steps saved by the whole-step secant (see step())
        self.prev_hold: str | None = None
        self.curvature = 0.0  # spread a straight-line split leaves over the last long step [V]
        # keep a converged group's trial while other groups of the step still iterate
        # (SolverConfig.fewer_trials; False: every trial re-steps every cell)
        self.fewer_trials = bool(fewer_trials)

    def groups(self):
        return [slice(g * self.np_, (g + 1) * self.np_) for g in range(self.ns)]

    # Everything that changes the next step besides the cells' own states (a checkpoint of a
    # life run restores it, so a resumed run takes exactly the steps an uninterrupted one takes).
    ADAPTIVE_STATE = ("R", "a", "a_prev", "i_prev_request", "cur_hist", "_pinned", "m", "drift",
                      "rejected", "prev_hold", "curvature")

    def state(self) -> dict:
        """The adaptive state (resistances, intercepts, drift, step length, ...), copied; the
        cells' solutions are the caller's (the stepper never sees PyBaMM)."""
        out = {}
        for name in self.ADAPTIVE_STATE:
            val = getattr(self, name)
            if name == "cur_hist":
                val = np.array(val, dtype=float).reshape(len(val), self.n)
            out[name] = val.copy() if isinstance(val, np.ndarray) else val
        return out

    def restore(self, state: dict) -> None:
        """Set the adaptive state saved by :meth:`state` (for a stepper of the same pack)."""
        missing = sorted(set(self.ADAPTIVE_STATE) - set(state))
        if missing:
            raise ValueError(f"pack stepper state lacks {missing}")
        if np.shape(state["R"]) != (self.n,):
            raise ValueError(f"pack stepper state is for {np.size(state['R'])} cells, this pack "
                             f"has {self.n}")
        for name in self.ADAPTIVE_STATE:
            val = state[name]
            if name == "cur_hist":
                val = [np.array(row, dtype=float) for row in np.asarray(val, dtype=float)]
            elif isinstance(val, np.ndarray):
                val = val.astype(float).copy()
            setattr(self, name, val)

    def _plan(self, a: np.ndarray, i_request: float | None, v_min: float, v_max: float,
              hold: str | None):
        lines = [group_line(a[s], self.R[s]) for s in self.groups()]
        if hold == "v_max":  # CV: the limiting group sits at v_max, charging at most i_request
            i_pack = max((A - v_max) / Rg for A, Rg in lines)
            if i_request is not None:
                i_pack = min(max(i_pack, i_request), 0.0)
            limit = "v_max"
        else:
            i_pack, limit = limited_pack_current(lines, i_request, v_min, v_max)
        cur = np.empty(self.n)
        for s in self.groups():
            cur[s], _ = split_current(a[s], self.R[s], i_pack)
        self._pinned = limit_is_pinned(lines, i_pack, limit, v_min, v_max)
        return i_pack, cur, limit

    def step(self, dt: float, i_request: float | None, v_min: float, v_max: float,
             hold: str | None = None) -> StepResult:
        """One pack step at ``i_request`` (A, discharge > 0) or, with hold='v_max', in CV
        (then ``i_request`` is the largest charge current allowed, or None).

        A trial that PyBaMM cannot finish (a particle surface empties within the step, i.e. the
        cell would pass its cut-off during it) is retried at half the current and the step is
        reported as limited, which ends a discharge as a cut-off would. Bisecting towards the
        largest carryable current was tried and rejected: it leaves a cell so close to empty
        that the next step (even a rest) cannot be solved.
        """
        forced = None
        if self.a is None:
            # No model yet: trial with an equal split to get intercepts.
            cur = np.full(self.n, (i_request if i_request is not None else 0.0) / self.np_)
            i_pack, limit = float(cur[: self.np_].sum()), None
        else:
            a_pred = self.a.copy()
            if self.a_prev is not None and i_request == self.i_prev_request and hold is None:
                a_pred += self.a - self.a_prev  # the OCV drifts steadily under a steady current
            i_pack, cur, limit = self._plan(a_pred, i_request, v_min, v_max, hold)
            if (limit is None and hold is None and len(self.cur_hist) == 2
                    and i_request == self.i_prev_request):
                # Under a steady request the split drifts smoothly: extrapolate it (sums are kept).
                cur = 2.0 * self.cur_hist[1] - self.cur_hist[0]
        pinned = self._pinned if self.a is not None else False
        prev_cur, prev_v, failure, spread = None, None, None, float("nan")
        a_last, v_last = None, np.full(self.n, np.nan)  # model and voltages of the last full trial
        it, n_failed = 0, 0
        keep, kept = np.zeros(self.n, dtype=bool), None  # cells whose last trial is reused
        first, rescued = None, False  # the step's first complete trial; rescue used
        while it < self.max_iter * (2 if forced else 1) + (self.max_iter if rescued else 0):
            it += 1
            sols, volts = [], np.empty(self.n)
            try:
                for j in range(self.n):
                    if keep[j]:
                        sol, v = kept[0][j], kept[1][j]
                    else:
                        sol, v = self.step_cell(j, self.solutions[j], float(cur[j]), dt)
                    sols.append(sol)
                    volts[j] = v
            except Exception as exc:  # a trial beyond what the cell can carry
                failure = exc
                keep[:] = False
                n_failed += 1
                if not np.any(cur):
                    raise
                forced = "v_min" if i_pack > 0 else "v_max"
                i_request, hold = 0.5 * i_pack, None
                a_model = a_last if a_last is not None else self.a
                if a_model is None or (a_last is None and n_failed >= 3):
                    # Halving the pack current does not help where the intercepts alone decide
                    # the split (a spread far beyond R I): share the current equally instead.
                    cur = np.full(self.n, i_request / self.np_)
                    i_pack, limit, pinned = i_request, None, False
                else:
                    i_pack, cur, limit = self._plan(a_model, i_request, v_min, v_max, None)
                    pinned = self._pinned
                prev_cur, prev_v, first = None, None, None
                continue
            if prev_cur is not None:
                self._secant(cur - prev_cur, volts - prev_v)
            a = volts + self.R * cur
            a_last, v_last = a, volts
            if self.trace is not None:
                self.trace.append((it, i_pack, cur.copy(), volts.copy(), limit, self.R.copy()))
            spread = max(float(np.ptp(volts[s])) for s in self.groups())
            # Accept when the group voltages agree and the limits hold (within tolerance); a
            # limit is held exactly only where the current was not clipped (see _plan).
            pinned_trial = pinned
            i_new, cur_new, limit_new = self._plan(a, i_request, v_min, v_max, hold)
            pinned = self._pinned
            limit_ok = (volts.max() <= v_max + self.tol and volts.min() >= v_min - self.tol)
            if limit is not None and pinned_trial:
                lim_v = v_max if limit == "v_max" else v_min
                gv = [volts[s].mean() for s in self.groups()]
                edge = max(gv) if limit == "v_max" else min(gv)
                limit_ok = limit_ok and abs(edge - lim_v) <= self.tol
            converged = spread <= self.tol and limit_ok and (limit is None or limit_new is not None)
            if converged:
                same = i_request == self.i_prev_request
                self.drift = (a - self.a) if same and self.a is not None else None
                self.a_prev = self.a if same else None
                self.a = a
                self.i_prev_request = i_request
                self.solutions = sols
                self.cur_hist = [self.cur_hist[-1], cur.copy()] if self.cur_hist and same \
                    else [cur.copy()]
                return StepResult(i_pack, cur.copy(), volts, limit or forced, it, sols)
            keep[:] = False
            if self.fewer_trials and hold is None and limit is None and limit_new is None \
                    and i_new == i_pack:
                # The pack current stays, so a group already within tolerance needs no new
                # trial: keep its currents and its solved trial (its secant is skipped: di = 0).
                for g in self.groups():
                    if float(np.ptp(volts[g])) <= self.tol:
                        keep[g], cur_new[g] = True, cur[g]
                kept = (sols, volts)
            if first is None:
                first = (cur.copy(), volts.copy())
            elif (not rescued and not keep.any()
                  and it == self.max_iter * (2 if forced else 1)):
                # Out of iterations while creeping: the trials' voltage changes stayed under
                # SECANT_MIN_DV, so a stale resistance (0.78 Ohm left by a knee, against ~0.03
                # Ohm) kept each correction ~30x too small (seed 16's 2C end of discharge at
                # 45 C: 1.59 -> 1.07 mV in 12 trials). The secant over the whole step is large
                # enough to trust: take it and allow max_iter more trials, once. Only steps
                # that would have failed reach this, so converged stores are unchanged.
                rescued = True
                self.rescues += 1
                self._secant(cur - first[0], volts - first[1])
                i_new, cur_new, limit_new = self._plan(volts + self.R * cur, i_request, v_min,
                                                       v_max, hold)
                pinned = self._pinned
            prev_cur, prev_v = cur, volts
            i_pack, cur, limit = i_new, cur_new, limit_new
        raise RuntimeError(
            f"pack step did not converge in {self.max_iter} iterations: group voltage spread "
            f"{spread * 1e3:.3f} mV (tolerance {self.tol * 1e3:.3f} mV), cell voltages of the last "
            f"complete trial {np.round(v_last, 4).tolist()}; last trial error: {failure}")

    # -----------------------------------------------------------------------------------------
    # coupling steps of several storage periods
    # -----------------------------------------------------------------------------------------
    def advance(self, dt: float, n_max: int, i_request: float | None, v_min: float, v_max: float,
                hold: str | None = None, i_floor: float = 0.0,
                then: tuple[float | None, str | None] | None = None) -> StepResult:
        """One coupling step of 1..``n_max`` storage periods ``dt`` (the caller's segment of
        constant request ends after ``n_max``); its length adapts (see the module docstring).
        A step longer than one period never ends with ``|i_pack| < i_floor`` (the CV cut-off):
        the period where the current falls below it is reached by one-period steps.

        ``then = (request, hold)``: what follows a cut-off of this (unheld) request, e.g.
        ``(0.0, None)`` after a discharge, ``(i, "v_max")`` after a CC charge. The period in
        which a limit is reached is then split at the crossing (:meth:`cut_off`) instead of
        holding the limit at a reduced current for the whole period."""
        if (i_request, hold) != (self.i_prev_request, self.prev_hold) and self.np_ > 1:
            self.m = 1  # the split moves fastest right after a change of the request
        m = min(self.m, int(n_max), self.max_periods)
        grow = 2
        while m > 1 and self.a is not None:
            res = self._multi(dt, m, i_request, v_min, v_max, hold, i_floor)
            if res is not None:
                # After a shortened step keep the accepted length (do not retry the rejected
                # one). The spread a perfect ramp would leave grows ~ length^2: double only where
                # it stays inside the tolerance.
                if 4.0 * self.curvature > 0.8 * self.tol:
                    grow = 1
                self.m = min(grow * m, self.max_periods)
                return res
            self.rejected += 1
            m, grow = m // 2, 1
        base = self._snapshot() if then is not None and hold is None and i_request else None
        res = self.step(dt, i_request, v_min, v_max, hold)
        self.prev_hold = hold
        if base is not None:
            # the limit, or the request itself taken past it within the tolerance of a step
            limit = "v_min" if i_request > 0 else "v_max"
            g = [float(res.voltages[s].mean()) for s in self.groups()]
            if res.limit is not None or (min(g) < v_min if i_request > 0 else max(g) > v_max):
                self._rewind(base)
                res = self.cut_off(dt, i_request, v_min, v_max, res.limit or limit, then)
        bound = res.limit is not None and hold is None
        self.m = 1 if bound else min(2 * max(m, 1), self.max_periods)
        return res

    def _snapshot(self):
        return self.state(), list(self.solutions)

    def _rewind(self, snap) -> None:
        self.restore(snap[0])
        self.solutions = list(snap[1])

    def cut_off(self, dt: float, i_request: float, v_min: float, v_max: float, limit: str,
                then: tuple[float | None, str | None]) -> StepResult:
        """One period ``dt`` that runs at ``i_request`` until the limiting group reaches
        ``limit`` (tau) and as ``then = (request, hold)`` after it; returns the period with its
        mean currents (``limit`` set) or, where the request does not reach the limit within
        ``dt`` after all, the plain step at the request (``limit`` None)."""
        lim_v = v_min if limit == "v_min" else v_max
        edge = min if limit == "v_min" else max
        base = self._snapshot()

        def trial(tau: float):
            """Distance to the limit (> 0 before it) after tau s at the request, or -inf where
            the cells cannot carry it that long (a solve fails, e.g. a surface empties)."""
            self._rewind(base)
            try:
                r = self.step(tau, i_request, -np.inf, np.inf)  # the request, no limit applied
            except RuntimeError:
                return None, -np.inf
            if r.limit is not None:  # only a failed trial reports a limit here
                return r, -np.inf
            g = edge(float(r.voltages[s].mean()) for s in self.groups())
            return r, (g - lim_v) if limit == "v_min" else (lim_v - g)

        # at tau = 0: the linear model of the last accepted state at the requested current
        f_lo = np.inf
        if self.a is not None:
            cur = np.concatenate([split_current(self.a[s], self.R[s], i_request)[0]
                                  for s in self.groups()])
            g = edge(float((self.a[s] - self.R[s] * cur[s]).mean()) for s in self.groups())
            f_lo = (g - lim_v) if limit == "v_min" else (lim_v - g)
        lo, hi, iters = 0.0, dt, 0
        tau, res = 0.0, None  # the cut: the pack's state is res's (None: the period's start)
        if f_lo > 0.0:
            res, f = trial(dt)
            iters += res.iterations if res is not None else 0
            if f > 0.0:  # the request holds for the whole period: a plain step
                return res
            tau, w_lo, w_hi, side = dt, f_lo, f, 0  # Illinois weights, side of the last trial
            for _ in range(CUTOFF_TRIALS):
                if hi - lo <= CUTOFF_DT * dt or abs(f) <= CUTOFF_DV * self.tol:
                    break
                if np.isfinite(w_lo) and np.isfinite(w_hi):
                    tau = hi - w_hi * (hi - lo) / (w_hi - w_lo)
                    tau = min(max(tau, lo + 0.05 * (hi - lo)), hi - 0.05 * (hi - lo))
                else:  # no voltage beyond a failed solve: bisect
                    tau = 0.5 * (lo + hi)
                res, f = trial(tau)
                iters += res.iterations if res is not None else 0
                if f > 0.0:
                    lo, w_lo = tau, f
                    w_hi, side = (0.5 * w_hi if side == 1 else w_hi), 1
                else:
                    hi, w_hi = tau, f
                    w_lo, side = (0.5 * w_lo if side == -1 else w_lo), -1
            if res is None or not (f > 0.0 or abs(f) <= CUTOFF_DV * self.tol):
                # the last trial passed the limit (or failed): end just before the crossing
                tau = lo
                res = trial(lo)[0] if lo > 0.0 else None
                iters += res.iterations if res is not None else 0
        if res is None:
            tau = 0.0
            self._rewind(base)
        i_then, hold_then = then
        rest = dt - tau
        if rest <= 1e-9 * dt:
            r2 = None
        else:
            r2 = self.step(rest, i_then, v_min, v_max, hold_then)
            iters += r2.iterations
        self.prev_hold = hold_then if r2 is not None else None
        w = tau / dt
        c1 = res.cell_currents if res is not None else np.zeros(self.n)
        end = r2 if r2 is not None else res
        mean = w * c1 + ((1.0 - w) * r2.cell_currents if r2 is not None else 0.0)
        return StepResult(float(end.i_pack), end.cell_currents.copy(), end.voltages, limit,
                          iters, end.solutions, period_currents=mean[None].copy())

    def _ramp_plan(self, a0: np.ndarray, a1: np.ndarray, i_request, v_min, v_max, hold):
        """Cell currents at the start and end of a step whose intercepts move from a0 to a1, or
        None where a limit starts or stops binding inside it (one-period steps handle that)."""
        plans = []
        for a in (a0, a1):
            i_pack, cur, limit = self._plan(a, i_request, v_min, v_max, hold)
            if limit != hold or (hold is not None and not self._pinned):
                return None
            plans.append((i_pack, cur))
        return plans

    def _multi(self, dt: float, m: int, i_request: float | None, v_min: float, v_max: float,
               hold: str | None, i_floor: float) -> StepResult | None:
        """A coupling step of ``m`` periods with linearly ramped cell currents, or None where it
        cannot be accepted (the caller shortens it)."""
        same = (i_request, hold) == (self.i_prev_request, self.prev_hold)
        drift = self.drift if (self.drift is not None and same) else np.zeros(self.n)
        plans = self._ramp_plan(self.a, self.a + drift * m, i_request, v_min, v_max, hold)
        if plans is None:
            return None
        t = np.arange(1, m + 1) / m  # sample times as a fraction of the step
        tm = (np.arange(m) + 0.5) / m  # middle of every period
        prev = None
        for it in range(1, self.max_iter + 1):
            (p0, c0), (p1, c1) = plans
            if hold is not None and min(abs(p0), abs(p1)) < i_floor:
                return None
            sols, volts = [], np.empty((self.n, m))
            try:
                for j in range(self.n):
                    sol, v = self.step_cell(j, self.solutions[j], (float(c0[j]), float(c1[j])),
                                            dt * m, m)
                    sols.append(sol)
                    volts[j] = v
            except Exception:  # e.g. a particle surface empties inside the step: shorten it
                return None
            cur_t = c0[:, None] + (c1 - c0)[:, None] * t  # (n_cells, m) at the samples
            if hold is None and (volts.max() > v_max or volts.min() < v_min):
                return None  # a limit is crossed inside the step: shorten towards it
            if prev is not None:  # secant over the step: what a ramp change really does
                self._secant((cur_t - prev[0]).mean(axis=1), (volts - prev[1]).mean(axis=1))
            prev = (cur_t, volts)
            a = volts + self.R[:, None] * cur_t  # intercepts at every sample
            if self.trace is not None:
                self.trace.append((it, p1, c1.copy(), volts.copy(), "multi", self.R.copy()))
            if self._within(volts, v_max, hold):
                fit = np.polynomial.polynomial.polyfit(t, a.T, 1)  # (2, n_cells)
                self.curvature = self._max_spread(a - (fit[0][:, None] + fit[1][:, None] * t))
                self.drift = (a[:, -1] - a[:, 0]) / (m - 1)
                self.a_prev, self.a = a[:, -2], a[:, -1]
                self.i_prev_request, self.prev_hold = i_request, hold
                self.solutions = sols
                self.cur_hist = [c1.copy()]
                period = c0[:, None] + (c1 - c0)[:, None] * tm
                return StepResult(float(p1), c1.copy(), volts[:, -1].copy(), hold, it, sols,
                                  n_periods=m, sample_voltages=volts.T.copy(),
                                  period_currents=period.T.copy(),
                                  sample_currents=cur_t.T.copy())
            # Straight lines through each cell's intercepts: the ramp that would equalise them.
            fit = np.polynomial.polynomial.polyfit(t, a.T, 1)  # (2, n_cells)
            a0, a1 = fit[0], fit[0] + fit[1]
            new = self._ramp_plan(a0, a1, i_request, v_min, v_max, hold)
            if new is None:
                return None
            (_, n0), (_, n1) = new
            pred = a - self.R[:, None] * (n0[:, None] + (n1 - n0)[:, None] * t)
            # Intercepts that leave a straight line by more than the tolerance cannot be
            # followed by a ramp: the step is too long.
            if not self._within(pred, v_max, hold):
                return None
            plans = new
        return None

    def _within(self, volts: np.ndarray, v_max: float, hold: str | None) -> bool:
        """Every group's spread <= tol at every sample (and the CV group on v_max within tol)."""
        if self._max_spread(volts) > self.tol:
            return False
        if hold is None:
            return True
        edge = np.max([volts[s].mean(axis=0) for s in self.groups()], axis=0)
        return bool(np.abs(edge - v_max).max() <= self.tol and volts.max() <= v_max + self.tol)

    def _secant(self, di: np.ndarray, dv: np.ndarray) -> None:
        """Update each cell's resistance from a current change ``di`` and its voltage change
        ``dv`` between two trials of the same step."""
        # A secant is only trusted where the voltage change is well above the solver's noise
        # (~1e-6 relative, i.e. a few microvolts).
        # A voltage that moves WITH the current change (a negative secant) is the cell's own
        # dynamics inside the step, not its resistance: such a secant is skipped, since clipping
        # it to the lower bound made the next split wildly uneven (a 2p group near the knee of a
        # discharge then stopped converging).
        with np.errstate(divide="ignore", invalid="ignore"):
            r_new = -dv / di
        ok = (np.abs(di) > 1e-4) & (np.abs(dv) > SECANT_MIN_DV) & np.isfinite(r_new) & (r_new > 0)
        r_old = self.R.copy()
        self.R[ok] = np.clip(r_new[ok], R_LOW * self.r_init, R_HIGH * self.r_init)
        self._keep_accepted_voltages(self.R - r_old)

    def _keep_accepted_voltages(self, dR: np.ndarray) -> None:
        """Move the stored intercepts with a resistance change so that the linear model still
        gives the voltages of the accepted states (V = a - R I at the currents they were taken at).

        Without this a secant from a rejected trial left the intercepts of a resistance it
        replaced: after a knee of a 2C discharge a cell's intercept of 11.8 V (made with a clipped
        0.85 Ohm) met a new 0.06 Ohm, the split sent it 99 A of a 30 A pack, and no trial could
        be solved again (the reference preset's 2C scenario failed in cycle 1)."""
        if self.a is None or not np.any(dR) or not self.cur_hist:
            return
        self.a = self.a + dR * self.cur_hist[-1]  # self.a was taken at the last accepted split
        if self.a_prev is not None:
            # taken at the split before (one-period steps) or one period earlier on the ramp
            # that ended at cur_hist[-1] (long steps): the same current to within one period
            self.a_prev = self.a_prev + dR * self.cur_hist[0]

    def _max_spread(self, volts: np.ndarray) -> float:
        """Largest voltage spread of any group at any sample, volts (n_cells, n_samples)."""
        return max(float(np.ptp(volts[s], axis=0).max()) for s in self.groups())
