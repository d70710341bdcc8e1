"""One coupling step of a cell by a direct call of its IDAKLU solver (no ``solver.step``).

PyBaMM's ``BaseSolver.step`` re-does per call what a pack step of an already set-up cell does
not need: argument and sensitivity checks, the extrapolation check (every event expression
evaluated in Python), termination bookkeeping and a ``pybamm.Solution`` built twice (the step and
its ``last_state``). This module makes exactly the calls of that path that set the integrator's
input (the same input-parameter vector, the same initial state, the same ``ydot0`` from the
solver's own consistent initialisation, the same shifted start time and interpolation times) and
calls the compiled solver once, so the states it returns are bit-identical to the old path's
(tests/unit/test_sim_lean_step.py compares both over several steps).

Anything but a step that reaches its end time (an event, a failure) is handed back to the full
path from the same start: the event, its message and the error are then PyBaMM's own, at the
price of one repeated solve in such a (rare) step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

# Module switch: the pack stepping uses the lean step unless a caller passes lean=False (the
# bench's old path, the bit-identity test).
LEAN_STEP = True
IDA_ROOT_RETURN = 2  # pybamm.solvers.idaklu_solver._IDA_ROOT_RETURN


@dataclass
class LeanSolution:
    """What the stepping reads of a step: sample times ``t`` (n,), states ``y`` (n_states, n).

    ``termination`` is PyBaMM's value for a step that reached its end time, so code written for
    a ``pybamm.Solution`` (``sol.t[-1]``, ``sol.y``, ``sol.termination``) reads it unchanged."""

    t: np.ndarray
    y: np.ndarray
    termination: str = "final time"

    def end(self) -> tuple[float, np.ndarray]:
        """(time, state) at the end of the step."""
        return float(self.t[-1]), self.y[:, -1].copy()


def start_of(old, model) -> tuple[float, np.ndarray] | None:
    """(time, state) a step continues from, or None where only the full path may continue
    (no previous step, an event that ended it, a solution of another model)."""
    if isinstance(old, LeanSolution):
        return float(old.t[-1]), old.y[:, -1]
    if old is None or getattr(old, "termination", None) != "final time" \
            or old.all_models[-1] is not model:
        return None
    last = old.last_state
    return float(old.t[-1]), np.asarray(last.all_ys[0], dtype=float).ravel()


def rhs_ydot0(model, t0: float, y0: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``ydot0`` as IdakluSolver._set_consistent_initialization makes it for a semi-explicit
    DAE whose y0 IDAKLU initialises itself: rhs(y0) on the differential states, 0 elsewhere
    (``p``: the flattened inputs, one vector instead of a casadi vertcat of every float)."""
    import casadi

    rhs0 = model.rhs_eval(t0, y0, casadi.DM(p))
    ydot0 = np.zeros_like(y0)
    ydot0[: model.len_rhs] = np.asarray(rhs0.full() if hasattr(rhs0, "full") else rhs0,
                                        dtype=float).ravel()
    return ydot0


def step(solver, model, start: tuple[float, np.ndarray], inputs: Mapping[str, float], dt: float,
         t_interp: np.ndarray) -> LeanSolution | None:
    """Integrate ``model`` from ``start`` = (t, y) by ``dt`` seconds, sampled at ``t_interp``
    (relative to the start, from 0 to dt), as ``solver.step(..., t_eval=[0, dt], save=False)``
    would; None where the integrator stopped before ``dt`` (the caller takes the full path)."""
    from pybamm.solvers.base_solver import flatten_inputs

    if model not in solver._model_set_up:
        return None  # set-up is the full path's (first step of this model in this process)
    t_start, y0 = start
    t_eval = t_start + np.array([0.0, dt])
    t_int = t_start + np.asarray(t_interp, dtype=float)
    t0 = t_start
    if t_start != 0:
        # as BaseSolver.step: the step starts one float after the previous one ended
        t0 = np.nextafter(t_start, np.inf)
        t_eval[0] = t0
        if t_int.size > 0 and t_int[0] == t_start:
            t_int[0] = t0
    model_inputs = solver._set_up_model_inputs(model, dict(inputs))
    p = flatten_inputs(model_inputs)
    y0 = np.asarray(y0, dtype=float).ravel()
    if model.uses_stacked_inputs and model.is_standard_form_dae and model.len_rhs > 0 \
            and solver.root_method is None:
        y0s, ydot0s = y0[None, :], rhs_ydot0(model, t0, y0, p)[None, :]
    else:  # the solver's own initialisation
        model.y0_list = [y0.reshape(-1, 1)]
        solver._set_consistent_initialization(model, t0, [model_inputs])
        y0s, ydot0s = np.vstack(model.y0full), np.vstack(model.ydot0full)
    try:
        soln = solver._setup["solver"].solve(t_eval, t_int, y0s, ydot0s, p[None, :],
                                             logger=None, pbar=np.empty((0, 0)))[0]
    except ValueError:  # PyBaMM's path raises it as its SolverError
        return None
    # IDA's flags: < 0 a failure, 2 a root (an event); 0 / 1 the end (or tstop) reached
    if soln.flag < 0 or soln.flag == IDA_ROOT_RETURN or float(soln.t[-1]) != float(t_eval[-1]):
        return None  # an event or a failure: PyBaMM's path says which
    n = soln.t.size
    return LeanSolution(np.asarray(soln.t, dtype=float),
                        np.asarray(soln.y).reshape((n, model.len_rhs_and_alg)).T)
