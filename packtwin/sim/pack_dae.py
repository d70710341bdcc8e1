"""A whole pack as ONE PyBaMM DAE: no coupling steps, no solver restarts inside a phase.

The stepped pack (:mod:`packtwin.sim.pack`) holds every cell at a current for a coupling step and
solves the split between steps; every step restarts IDA for every cell, and the restarts are most
of its cost (issue #10: 1.75 s per DFN cell-cycle against 0.20 s for one uninterrupted solve).
Here the cells' discretised models are joined into one system instead, with the circuit as
algebraic equations (Kirchhoff, not a fitted split):

- every cell's current ``I_c`` and the pack current ``I_pack`` are algebraic states;
- each series group carries the pack current: ``sum_j I_gj - I_pack = 0``;
- the cells of a parallel group share their terminal voltage: ``V_g0 - V_gj = 0``;
- one control equation: ``mode (I_pack - I_request) + (1 - mode) (V_hold_group - V_hold) = 0``
  (``mode`` 1: constant current; 0: the hold group's voltage held, the CV phase).

Each cell keeps its own built model (:class:`packtwin.sim.cell.CellModel`, the generator's
equations, mesh and radii): its discretised equations are copied with its state indices moved to
the joint state vector, its current input replaced by its current state and its other inputs
renamed per cell (``name [cell c]``), so one joint model serves every ambient temperature and
parameter draw of the same radii. IDA then solves the pack with one Jacobian; a phase (CC until
the first cell reaches a limit, rest, CV until the current falls below the cut-off) is one
integration, its end found by IDA's root finding on termination events.

:class:`DAEStepper` gives it the stepped pack's interface, so the generator
(:mod:`packtwin.sim.scenario`, ``solver.coupling: dae``) runs its protocols, storage grid,
cut-offs inside a period and checkpoints on it. A failing joint solve names no cell (the stepped
pack names the cell whose own solve failed). ``scripts/bench_pack_dae.py`` measures its cost and
its agreement with the stepped pack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from packtwin.sim.cell import CURRENT, RAMP_START, SLOPE, CellModel
from packtwin.sim.lean_step import LeanSolution

PACK_CURRENT = "Pack current request [A]"
HOLD_VOLTAGE = "Hold voltage [V]"
MODE = "Control mode"  # 1: current control, 0: voltage hold
V_MIN, V_MAX = "Lower cut-off [V]", "Upper cut-off [V]"
I_CUT = "CV cut-off current [A]"
# Event switches (1: the event may end the phase).
ON_V_MIN, ON_V_MAX, ON_I_CUT = "Stop at lower cut-off", "Stop at upper cut-off", "Stop at CV cut-off"
OFF = 1e3  # added to a switched-off event's expression: it cannot cross zero
AT_START = "non-positive at initial conditions"  # PyBaMM's error for an event active at once


def cell_input(name: str, c: int) -> str:
    """The joint model's name of cell ``c``'s input ``name``."""
    return f"{name} [cell {c}]"


def _copier(model, shift_rhs: int, shift_alg: int, n_rhs_total: int, replace: Mapping):
    """A function copying expressions of one cell's discretised ``model`` into the joint model:
    its differential states move by ``shift_rhs``, its algebraic ones to ``n_rhs_total +
    shift_alg + (index - len_rhs)``; input parameters are replaced by ``replace[name]``.

    PyBaMM's discretised trees do not always carry domains their children would give
    (discretisation builds them directly), so every copy keeps its original's domains and is
    built without simplification (a NumpyConcatenation is only copied with it)."""
    import pybamm

    n_rhs = model.len_rhs
    memo: dict[int, object] = {}

    def moved(s: slice) -> slice:
        if s.stop <= n_rhs:
            return slice(s.start + shift_rhs, s.stop + shift_rhs)
        if s.start < n_rhs:
            raise ValueError(f"a state slice {s} spans differential and algebraic states")
        d = n_rhs_total + shift_alg - n_rhs
        return slice(s.start + d, s.stop + d)

    def copy(sym):
        key = id(sym)
        if key in memo:
            return memo[key]
        if isinstance(sym, pybamm.StateVectorDot):
            raise NotImplementedError("time derivatives of states in a cell's equations")
        if isinstance(sym, pybamm.StateVector):
            slices = [moved(s) for s in sym.y_slices]
            shifts = {n.start - s.start for n, s in zip(slices, sym.y_slices)}
            if len(shifts) != 1:
                raise ValueError(f"state vector {sym.name} spans differential and algebraic "
                                 f"states")
            d = shifts.pop()
            ev = list(sym.evaluation_array)
            ev = [False] * d + ev if d >= 0 else ev[-d:]
            out = pybamm.StateVector(*slices, name=sym.name, domains=sym.domains,
                                     evaluation_array=ev)
        elif isinstance(sym, pybamm.InputParameter):
            out = replace[sym.name]
        elif not sym.children:
            out = sym
        else:
            out = sym.create_copy(new_children=[copy(c) for c in sym.children],
                                  perform_simplifications=isinstance(sym, pybamm.NumpyConcatenation))
            object.__setattr__(out, "_domains", sym._domains)
            out._id = None
        memo[key] = out
        return out

    return copy


@dataclass
class PhaseResult:
    """One phase: sample times ``t`` (n,), joint states ``y`` (n_states, n), cell currents
    (n, cells), pack current (n,), why it ended ('final time' or the event's name); ``voltage``
    (n, cells) is evaluated when first read."""

    t: np.ndarray
    y: np.ndarray
    current: np.ndarray
    pack_current: np.ndarray
    termination: str
    _pack: "PackDAE"
    _inputs: Mapping[str, float]
    _voltage: np.ndarray | None = None

    @property
    def voltage(self) -> np.ndarray:
        if self._voltage is None:
            self._voltage = self._pack.voltages(self.t, self.y, self._inputs)
        return self._voltage


class _Joint:
    """The joined model of a pack (see the module docstring) and its solver."""

    def __init__(self, models: Sequence[CellModel], n_series: int, n_parallel: int):
        import pybamm
        from scipy import sparse

        n = n_series * n_parallel
        n_rhs = [m.model.len_rhs for m in models]
        n_alg = [m.model.len_alg for m in models]
        R, A = sum(n_rhs), sum(n_alg)
        self.n_rhs_total, self.n_states = R, R + A + n + 1
        i_cell = [pybamm.StateVector(slice(R + A + c, R + A + c + 1), name=f"I [cell {c}]")
                  for c in range(n)]
        i_pack = pybamm.StateVector(slice(R + A + n, R + A + n + 1), name="I_pack")
        self.index: list[np.ndarray] = []  # cell c's states in the joint vector, in its order
        rhs, alg, volts, events, lo_r, lo_a, hi_r, hi_a = [], [], [], [], [], [], [], []
        charges = []
        self.cell_input_names: list[list[str]] = []
        off_r = off_a = 0
        for c, m in enumerate(models):
            bm = m.model
            replace = {CURRENT: i_cell[c], SLOPE: pybamm.Scalar(0.0),
                       RAMP_START: pybamm.Scalar(0.0)}
            names = [x for x in m.input_names if x not in replace]
            replace.update({x: pybamm.InputParameter(cell_input(x, c)) for x in names})
            self.cell_input_names.append(names)
            copy = _copier(bm, off_r, off_a, R, replace)
            rhs.append(copy(bm.concatenated_rhs))
            alg.append(copy(bm.concatenated_algebraic))
            volts.append(copy(bm.get_processed_variable("Voltage [V]")))
            charges.append(copy(bm.get_processed_variable("Discharge capacity [A.h]")))
            for ev in bm.events:
                if ev.event_type == pybamm.EventType.TERMINATION:
                    events.append(pybamm.Event(f"{ev.name} [cell {c}]", copy(ev.expression),
                                               ev.event_type))
            lo, hi = bm.bounds
            lo_r.append(lo[:bm.len_rhs]), lo_a.append(lo[bm.len_rhs:])
            hi_r.append(hi[:bm.len_rhs]), hi_a.append(hi[bm.len_rhs:])
            self.index.append(np.concatenate([np.arange(off_r, off_r + bm.len_rhs),
                                              R + off_a + np.arange(bm.len_alg)]))
            off_r += bm.len_rhs
            off_a += bm.len_alg
        self.i_cell_index = R + A + np.arange(n)
        self.i_pack_index = R + A + n
        P = pybamm.InputParameter
        mode = P(MODE)
        hold_v = sum((P(f"Hold weight [group {g}]") * volts[g * n_parallel] for g in range(n_series)),
                     pybamm.Scalar(0.0))
        circuit = [mode * (i_pack - P(PACK_CURRENT)) + (1 - mode) * (hold_v - P(HOLD_VOLTAGE))]
        for g in range(n_series):
            cells = range(g * n_parallel, (g + 1) * n_parallel)
            circuit.append(sum((i_cell[c] for c in cells), pybamm.Scalar(0.0)) - i_pack)
            circuit += [volts[c] - volts[c + 1] for c in list(cells)[:-1]]
        for c, v in enumerate(volts):
            events.append(pybamm.Event(f"lower cut-off [cell {c}]",
                                       v - P(V_MIN) + (1 - P(ON_V_MIN)) * OFF,
                                       pybamm.EventType.TERMINATION))
            events.append(pybamm.Event(f"upper cut-off [cell {c}]",
                                       P(V_MAX) - v + (1 - P(ON_V_MAX)) * OFF,
                                       pybamm.EventType.TERMINATION))
        # charge is negative: |I_pack| below the cut-off ends a CV hold
        events.append(pybamm.Event("CV cut-off", -i_pack - P(I_CUT) + (1 - P(ON_I_CUT)) * OFF,
                                   pybamm.EventType.TERMINATION))

        joint = models[0].model.new_copy()
        joint.name = f"{n_series}s{n_parallel}p pack DAE"
        joint.concatenated_rhs = pybamm.numpy_concatenation(*rhs)
        joint.concatenated_algebraic = pybamm.numpy_concatenation(*alg, *circuit)
        joint.len_rhs, joint.len_alg = R, A + n + 1
        joint.len_rhs_and_alg = self.n_states
        joint.bounds = (np.concatenate(lo_r + lo_a + [np.full(n + 1, -np.inf)]),
                        np.concatenate(hi_r + hi_a + [np.full(n + 1, np.inf)]))
        joint.mass_matrix = pybamm.Matrix(sparse.block_diag(
            [sparse.eye(R), sparse.csr_matrix((A + n + 1, A + n + 1))], format="csr"))
        joint.mass_matrix_inv = None
        # never integrated from: every phase goes on from a solution (PackDAE.resume_from)
        joint.concatenated_initial_conditions = pybamm.Vector(np.zeros(self.n_states))
        joint.events = events
        # the dictionaries PyBaMM reads for the inputs a model needs and whether it is a DAE
        joint._rhs = {pybamm.Variable("pack rhs"): joint.concatenated_rhs}
        joint._algebraic = {pybamm.Variable("pack algebraic"): joint.concatenated_algebraic}
        joint._initial_conditions, joint._boundary_conditions = {}, {}
        joint._variables_processed = {}
        joint.variables = pybamm.FuzzyDict({"I_pack": i_pack})
        # cell 0's inputs as its parameter values declared them: the joint model's are renamed
        joint.fixed_input_parameters = set()
        joint._required_input_parameters = joint._input_parameters = None
        joint._is_standard_form_dae = None
        self.model = joint
        self.volts, self.charges = volts, charges
        self.solver = pybamm.IDAKLUSolver()



_JOINED: dict[tuple, tuple[list, _Joint]] = {}


class PackDAE:
    """``n_series`` groups of ``n_parallel`` cells (numbered group by group, as the generator's
    packs) in one PyBaMM model, solved by IDAKLU."""

    def __init__(self, models: Sequence[CellModel], n_series: int, n_parallel: int,
                 y0: Sequence[np.ndarray] | None = None,
                 cell_inputs: Sequence[Mapping[str, float]] | None = None):
        n = n_series * n_parallel
        if len(models) != n:
            raise ValueError(f"a {n_series}s{n_parallel}p pack needs {n} cell models, "
                             f"found {len(models)}")
        self.models, self.ns, self.np_ = list(models), n_series, n_parallel
        # The joint model and its set-up solver are kept per process for the same cell models
        # (the generator's models are cached per radii): a second scenario of the same pack
        # (another temperature or rate: inputs only) skips joining and compiling.
        key = (tuple(id(m) for m in models), n_series, n_parallel)
        if key not in _JOINED:
            _JOINED[key] = (list(models), _Joint(self.models, n_series, n_parallel))
        j = _JOINED[key][1]
        self._j = j
        self.model, self.solver, self.volts, self.charges = j.model, j.solver, j.volts, j.charges
        self.index, self.cell_input_names = j.index, j.cell_input_names
        self.i_cell_index, self.i_pack_index = j.i_cell_index, j.i_pack_index
        self.n_states, self.n_rhs_total = j.n_states, j.n_rhs_total
        self._last = None
        if y0 is not None:
            self.set_state(y0)
        elif cell_inputs is not None:
            self.set_state([np.asarray(m.model.concatenated_initial_conditions.evaluate(
                inputs=dict(ci)), dtype=float).ravel() for m, ci in zip(models, cell_inputs)])

    # ------------------------------------------------------------------ state
    def set_state(self, cell_states: Sequence[np.ndarray], currents: Sequence[float] | None = None
                  ) -> None:
        """Start from each cell's own state vector (currents: a first guess of the split)."""
        import pybamm

        y = np.zeros(self.n_states)
        for idx, s in zip(self.index, cell_states):
            y[idx] = np.asarray(s, dtype=float).ravel()
        if currents is not None:
            y[self.i_cell_index] = currents
            y[self.i_pack_index] = float(np.sum(currents)) / self.ns
        # a one-point solution to go on from, not the model's initial conditions: the joint
        # model is shared, and its solver compiles those once
        self.resume_from(0.0, y)

    def current_state(self) -> np.ndarray:
        """The joint state the next phase starts from."""
        return self.end()[1]

    def end(self) -> tuple[float, np.ndarray]:
        """(time, joint state) the next phase starts from."""
        if self._last is None:
            raise RuntimeError("the pack DAE has no state yet: pass y0 or cell_inputs, or call "
                               "set_state")
        y = self._last.y
        return float(self._last.t[-1]), np.asarray(y.full() if hasattr(y, "full") else y)[:, -1].copy()

    def resume_from(self, t: float, y: np.ndarray) -> None:
        """Go on from a saved :meth:`end` exactly as from the phase that ended there."""
        import pybamm

        y = np.asarray(y, dtype=float).ravel()
        if y.size != self.n_states:
            raise ValueError(f"a saved pack state has {y.size} values, this {self.ns}s{self.np_}p "
                             f"pack DAE has {self.n_states}")
        self._last = pybamm.Solution([np.array([float(t)])], [y[:, None]], self.model, {},
                                     termination="final time")

    def cell_state(self, y: np.ndarray, c: int) -> np.ndarray:
        """Cell ``c``'s state vector (its own model's layout) from a joint state."""
        return np.asarray(y, dtype=float)[self.index[c]]

    def inputs(self, cell_inputs: Sequence[Mapping[str, float]], *, current: float = 0.0,
               hold_voltage: float | None = None, hold_group: int = 0, v_min: float = 0.0,
               v_max: float = 10.0, i_cut: float = 0.0, stop: Sequence[str] = ()) -> dict:
        """The joint model's inputs: every cell's own (``CellModel.inputs``), the control
        (``current`` [A], discharge > 0, or ``hold_voltage`` on ``hold_group``) and which events
        end the phase (``stop``: any of 'v_min', 'v_max', 'i_cut')."""
        out = {}
        for c, (names, ci) in enumerate(zip(self.cell_input_names, cell_inputs)):
            out.update({cell_input(x, c): float(ci[x]) for x in names})
        hold = hold_voltage is not None
        out.update({MODE: 0.0 if hold else 1.0, PACK_CURRENT: float(current),
                    HOLD_VOLTAGE: float(hold_voltage) if hold else 0.0,
                    V_MIN: v_min, V_MAX: v_max, I_CUT: i_cut,
                    ON_V_MIN: float("v_min" in stop), ON_V_MAX: float("v_max" in stop),
                    ON_I_CUT: float("i_cut" in stop)})
        out.update({f"Hold weight [group {g}]": float(g == hold_group) for g in range(self.ns)})
        return out

    # ------------------------------------------------------------------ phases
    def phase(self, inputs: Mapping[str, float], duration: float, period: float) -> PhaseResult:
        """Run one phase for at most ``duration`` seconds from the current state, sampled every
        ``period`` seconds (and at its end); it ends early at a switched-on event."""
        t_interp = np.arange(0.0, duration, period)
        t_interp = np.append(t_interp, duration)
        sol = self.solver.step(self._last, self.model, duration, t_interp=t_interp,
                               inputs=dict(inputs), save=False)
        y = np.asarray(sol.y.full() if hasattr(sol.y, "full") else sol.y)
        t = np.asarray(sol.t, dtype=float)
        # PyBaMM's step does not go on from a solution an event ended: the next phase starts
        # from a one-point solution at this one's end
        self.resume_from(float(t[-1]), y[:, -1])
        term = sol.termination
        if term.startswith("event: "):
            term = term[len("event: "):]
        return PhaseResult(t, y, y[self.i_cell_index].T.copy(), y[self.i_pack_index].copy(),
                           term, self, dict(inputs))

    def voltages(self, t: np.ndarray, y: np.ndarray, inputs: Mapping[str, float]) -> np.ndarray:
        """Every cell's terminal voltage [V] at joint states ``y`` (n_states, n): (n, cells)."""
        return self._evaluate(t, y, inputs)[:, :len(self.volts)]

    def charge(self, t: np.ndarray, y: np.ndarray, inputs: Mapping[str, float]) -> np.ndarray:
        """Every cell's discharge capacity state [A.h] (charge passed since the start): (n, cells)."""
        return self._evaluate(t, y, inputs)[:, len(self.volts):]

    def _evaluate(self, t: np.ndarray, y: np.ndarray, inputs: Mapping[str, float]) -> np.ndarray:
        import casadi

        j = self._j
        if not hasattr(j, "_v_fn"):
            ts = casadi.MX.sym("t")
            ys = casadi.MX.sym("y", self.n_states)
            names = sorted({p.name for p in self.model.required_input_parameters})
            ps = casadi.MX.sym("p", len(names))
            ins = {n: ps[i] for i, n in enumerate(names)}
            j._v_names = names
            j._v_fn = casadi.Function("v", [ts, ys, ps], [casadi.vertcat(
                *[v.to_casadi(ts, ys, inputs=ins) for v in self.volts + self.charges])])
        p = np.array([inputs[n] for n in j._v_names], dtype=float)
        t = np.atleast_1d(t)
        return np.array([np.asarray(j._v_fn(float(tk), y[:, k], p)).ravel()
                         for k, tk in enumerate(t)]).reshape(len(t), -1)

    def read(self, c: int, t: float, y: np.ndarray, cell_inputs: Mapping[str, float],
             current: float) -> dict[str, np.ndarray]:
        """Cell ``c``'s generator outputs (``CellModel.stored``) at one joint state."""
        m = self.models[c]
        ins = dict(cell_inputs)
        ins.update({CURRENT: float(current), SLOPE: 0.0, RAMP_START: 0.0})
        p = np.array([ins[n] for n in m.input_names], dtype=float)
        return m.stored(np.asarray(m._fn(float(t), self.cell_state(y, c), p)).ravel())


class PackDAEError(RuntimeError):
    """The joint solve failed or a cell's own event (not a cut-off) ended a phase; ``cell``: the
    cell found to fail alone (:meth:`DAEStepper.blame`), or None."""

    def __init__(self, message: str, cell: int | None = None):
        super().__init__(message)
        self.cell = cell


def _short(exc: BaseException) -> str:
    # PyBaMM's message lists every input value after "with inputs": not the problem
    msg = " ".join(str(exc).split()).split(" with inputs")[0]
    return f"{type(exc).__name__}: {msg}"


class DAEStepper:
    """:class:`packtwin.sim.pack.PackStepper`'s interface on a :class:`PackDAE`, for the
    generator (``solver.coupling: dae``): :meth:`advance` runs 1..n_max storage periods at one
    request as ONE integration and returns a :class:`packtwin.sim.pack.StepResult` sampled at
    every period's end.

    - A cut-off (the first cell at v_min in a discharge, at v_max in a CC charge) is the
      integrator's root: the period holding it runs as ``then`` (rest, or the CV hold) for the
      rest of the period, and the step ends there with ``limit`` set, as the stepped pack's
      :meth:`~packtwin.sim.pack.PackStepper.cut_off` does.
    - In the CV hold (``hold='v_max'``, on the group highest at its start) the step ends at the
      end of the period in which ``|I_pack|`` falls below ``i_floor``.
    - Each period's current is the mean over it (each cell's charge passed / period), the sample
      currents the instant ones.

    ``solutions`` holds per cell ``(LeanSolution(t, y), values at every sample)``; a checkpoint
    restore that replaces it re-seeds the joint state from the cells' own states."""

    def __init__(self, pack: PackDAE, cell_inputs: Sequence[Mapping[str, float]]):
        self.pack, self.models = pack, pack.models
        self.cell_inputs = [dict(c) for c in cell_inputs]
        self.ns, self.np_ = pack.ns, pack.np_
        self.n = self.ns * self.np_
        self.rescues = 0  # the stepped pack's split rescues: none here
        self.joint_solves = 0
        self.solve_cpu_s = 0.0  # CPU time in the joint integrations (the rest: outputs, recording)
        self.solutions: list = [None] * self.n
        self._seeded = self.solutions
        self.i_last = np.zeros(self.n)

    def state(self) -> dict:
        """What a checkpoint keeps: the joint state (with the algebraic currents) and its time,
        so a resumed run takes exactly the integrations an uninterrupted one takes."""
        t, y = self.pack.end()
        return {"joint_solves": self.joint_solves, "joint_t": t, "joint_y": y}

    def restore(self, state: Mapping) -> None:
        self.joint_solves = int(state.get("joint_solves", 0))
        self.pack.resume_from(float(state["joint_t"]), np.asarray(state["joint_y"], dtype=float))
        self._restored = True

    def _seed(self) -> None:
        """The joint state from the cells' own states where ``solutions`` was replaced (not
        after :meth:`restore`, which set the joint state itself)."""
        if self.solutions is self._seeded:
            return
        if getattr(self, "_restored", False):
            self._restored, self._seeded = False, self.solutions
            return
        ends = [m.end_state(s[0]) for m, s in zip(self.models, self.solutions)]
        self.pack.set_state([y for _, y in ends], currents=self.i_last)
        self._t0 = float(ends[0][0])
        self._seeded = self.solutions

    def _run(self, duration: float, dt: float, **kw):
        import time

        self.joint_solves += 1
        c0 = time.process_time()
        try:
            return self.pack.phase(self.pack.inputs(self.cell_inputs, **kw), duration, dt)
        except Exception as exc:  # PyBaMM's SolverError and friends
            msg = _short(exc)
            req = ", ".join(f"{k}={v:.6g}" for k, v in kw.items() if k != "stop")
            text = f"the pack DAE failed ({req}): {msg}"
            if AT_START in msg:  # a cut-off active at once: the caller's case, not a failure
                raise PackDAEError(text) from exc
            cell, why = self.blame(duration, dt, kw)
            raise PackDAEError(f"{text}; {why}", cell) from exc
        finally:
            self.solve_cpu_s += time.process_time() - c0

    def blame(self, duration: float, dt: float, kw: Mapping) -> tuple[int | None, str]:
        """After a failed joint phase: which cell fails alone. The phase is re-run one period at
        a time from its start to the last period it completes; from there each cell's own model
        (:meth:`CellModel.step`, no coupling) steps that period at the cell's own current. The
        first cell that fails (or ends at one of its own events) is named; None where every cell
        steps alone (the coupling itself failed) or the re-run does not fail. Costs a phase's
        re-run, only after a failure; the pack's state is left where the phase started."""
        from packtwin.sim.cell import CURRENT

        start_t, start_y = self.pack.end()
        inputs = self.pack.inputs(self.cell_inputs, **kw)
        t_done, found = 0.0, None
        try:
            while t_done < duration - 1e-9 * dt:
                t, y = self.pack.end()
                step = min(dt, duration - t_done)
                try:
                    res = self.pack.phase(inputs, step, step)
                except Exception:  # noqa: BLE001 - any failure marks the period
                    found = (t, y)
                    break
                t_done += step
                if res.termination != "final time":
                    break
            if found is None:
                return None, "the failure did not recur when the phase was re-run period by period"
            t, y = found
            for c, m in enumerate(self.models):
                i_c = float(y[self.pack.i_cell_index[c]])
                ins = dict(self.cell_inputs[c], **{CURRENT: i_c})
                try:
                    m.step(m.solution_at(t, self.pack.cell_state(y, c), ins), ins, dt, lean=False)
                except Exception as exc:  # noqa: BLE001 - PyBaMM's errors and StepTerminated
                    return c, (f"cell {c} (series group {c // self.np_}, parallel position "
                               f"{c % self.np_}) fails alone at its current {i_c:.4g} A from "
                               f"{t - start_t:.0f} s into the phase: {_short(exc)}")
            return None, (f"every cell steps alone at its current from {t - start_t:.0f} s into "
                          f"the phase: the coupled system failed, no one cell")
        finally:
            self.pack.resume_from(start_t, start_y)

    def advance(self, dt: float, n_max: int, i_request: float | None, v_min: float, v_max: float,
                hold: str | None = None, i_floor: float = 0.0,
                then: tuple[float | None, str | None] | None = None):
        from packtwin.sim.pack import StepResult

        self._seed()
        n_max = max(1, int(n_max))
        start_y = self.pack.current_state()
        start_q = self.pack.charge(np.array([0.0]), start_y[:, None], self._joint_inputs())[0]
        limit = None
        if hold == "v_max":
            g = self._highest_group()
            kw = dict(hold_voltage=v_max, hold_group=g, i_cut=i_floor,
                      stop=("i_cut",) if i_floor > 0 else ())
        elif hold is None:
            kw = dict(current=float(i_request or 0.0))
            if kw["current"] > 0:
                kw.update(v_min=v_min, stop=("v_min",))
            elif kw["current"] < 0:
                kw.update(v_max=v_max, stop=("v_max",))
        else:
            raise ValueError(f"hold must be None or 'v_max', found {hold!r}")
        try:
            res = self._run(n_max * dt, dt, **kw)
        except PackDAEError as exc:
            # the request takes a cell past its cut-off at once (e.g. a pulse's current step):
            # the crossing is the period's start, as the stepped pack's cut_off at tau = 0
            if not (kw.get("stop") and hold is None and AT_START in str(exc)):
                raise
            res = None
        if res is None:
            ys, ts, k_end, t_cut = [], [], 1, 0.0
            termination = "lower cut-off" if kw["current"] > 0 else "upper cut-off"
        else:
            t_rel = res.t - res.t[0]
            termination = res.termination
            t_cut = float(t_rel[-1]) if termination != "final time" else None
            if t_cut is not None and not (termination.startswith(("lower cut-off", "upper cut-off"))
                                          or termination == "CV cut-off"):
                raise PackDAEError(f"a cell's own event ended the phase: {termination} after "
                                   f"{t_cut:.1f} s")
            k_end = n_max if t_cut is None else min(n_max, max(1, int(np.ceil(t_cut / dt - 1e-9))))
            ys, ts = [], []
            for k in range(1, k_end + 1):
                i = int(np.argmin(np.abs(t_rel - k * dt)))
                if abs(t_rel[i] - k * dt) <= 1e-6 * dt:
                    ys.append(res.y[:, i])
                    ts.append(k * dt)
        if t_cut is not None:
            rest = k_end * dt - t_cut
            if termination == "CV cut-off":
                after = dict(kw, stop=())
            else:
                if then is None:
                    raise PackDAEError("a cut-off inside a period needs then=(request, hold): "
                                       "solver.coupling 'dae' needs solver.cutoff 'crossing'")
                limit = "v_min" if termination.startswith("lower") else "v_max"
                i_then, hold_then = then
                after = (dict(hold_voltage=v_max, hold_group=self._highest_group()) if hold_then
                         else dict(current=float(i_then or 0.0)))
            if rest > 1e-9 * dt:
                ys.append(self._run(rest, dt, **after).y[:, -1])
            else:
                ys.append(res.y[:, -1])
            ts.append(k_end * dt)
        y = np.array(ys).T  # (n_states, n_periods)
        ins = self._joint_inputs()
        t_abs = np.array(ts)
        volts = self.pack.voltages(t_abs, y, ins)
        q = self.pack.charge(t_abs, y, ins)
        mean = np.diff(np.vstack([start_q, q]), axis=0) * 3600.0 / dt
        inst = y[self.pack.i_cell_index].T
        sols = []
        for c, m in enumerate(self.models):
            vals = [self.pack.read(c, t_abs[k], y[:, k], self.cell_inputs[c], inst[k, c])
                    for k in range(y.shape[1])]
            sols.append((LeanSolution(t_abs[-1:].copy(), self.pack.cell_state(y[:, -1:], c)), vals))
        self.solutions = self._seeded = sols
        self.i_last = inst[-1].copy()
        return StepResult(float(y[self.pack.i_pack_index, -1]), inst[-1].copy(), volts[-1].copy(),
                          limit, 0, sols, n_periods=y.shape[1], sample_voltages=volts,
                          period_currents=mean, sample_currents=inst)

    def _joint_inputs(self) -> dict:
        return self.pack.inputs(self.cell_inputs)

    def _highest_group(self) -> int:
        y = self.pack.current_state()
        v = self.pack.voltages(np.array([0.0]), y[:, None], self._joint_inputs())[0]
        return int(np.argmax(v)) // self.np_
