"""The lean cell step (a direct IDAKLU call) gives bit-identical states to PyBaMM's solver.step,
also across a step that ends at an event, and really is taken after a cell's first step."""

import numpy as np
import pytest

pytest.importorskip("pybamm")


def _inputs(cell, current, ramp_start):
    from packtwin.sim.cell import CURRENT, RAMP_START, SLOPE, nominal_values

    nom = nominal_values(cell.model_cfg, ["neg_c_init", "neg_j0"])
    ins = cell.inputs({"neg_c_init": nom["neg_c_init"], "neg_j0": nom["neg_j0"]}, nom, current,
                      298.15)
    ins.update({CURRENT: float(current), SLOPE: 0.0, RAMP_START: float(ramp_start)})
    return ins


def _run(cell, lean, plan):
    """Step through ``plan`` [(current, n_samples)]; a step that raises (an event, a failed
    solve) is recorded as its error and the next step starts again from the state before it."""
    sol, record = None, []
    for current, n in plan:
        t0 = 0.0 if sol is None else float(sol.t[-1])
        ins = _inputs(cell, current, t0)
        try:
            new = cell.step(sol, ins, 60.0, n, lean=lean)
        except Exception as exc:  # StepTerminated, PyBaMM's SolverError
            record.append(("error", type(exc).__name__, str(exc)))
            continue
        y = np.asarray(new.y.full() if hasattr(new.y, "full") else new.y)
        vals = cell.read_samples(new, ins, n)
        record.append((type(new).__name__, np.asarray(new.t).copy(), y.copy(),
                       cell.end_state(new), vals))
        sol = new
    return record


# discharge, a three-sample step, rest, charge; then currents beyond the cell: 150 A ends at the
# voltage cut-off event inside the step, 40 A fails in the integrator, 400 A is past the cut-off
# at the start; then steps from the state before them
PLAN = [(5.0, 1), (5.0, 3), (0.0, 1), (-5.0, 2), (5.0, 1), (150.0, 1), (40.0, 1), (400.0, 1),
        (2.0, 1), (2.0, 2)]
ERRORS = {5: "StepTerminated", 6: "SolverError", 7: "SolverError"}


def test_lean_step_is_bit_identical_to_solver_step(tiny_cell):
    full = _run(tiny_cell, False, PLAN)
    lean = _run(tiny_cell, True, PLAN)
    assert len(full) == len(lean) == len(PLAN)
    events = {k: r[1] for k, r in enumerate(full) if r[0] == "error"}
    assert events == ERRORS
    assert "event: Minimum voltage" in full[5][2]
    for k in events:
        assert lean[k] == full[k]  # same error, same message (same event time)
    for k, (f, g) in enumerate(zip(full, lean)):
        if k in events:
            continue
        assert f[0] == "Solution"
        # the first step sets the solver up (PyBaMM's path); every later one is lean
        assert g[0] == ("Solution" if k == 0 else "LeanSolution"), k
        assert np.array_equal(f[1], g[1]), f"sample times differ in step {k}"
        assert np.array_equal(f[2], g[2]), f"states differ in step {k}"
        assert f[3][0] == g[3][0] and np.array_equal(f[3][1], g[3][1])
        for a, b in zip(f[4], g[4]):
            assert a.keys() == b.keys()
            for name in a:
                assert np.array_equal(a[name], b[name]), (k, name)


def test_lean_step_continues_a_restored_state_like_the_full_path(tiny_cell):
    """A checkpoint's one-point solution (CellModel.solution_at) goes on identically."""
    first = tiny_cell.step(None, _inputs(tiny_cell, 3.0, 0.0), 60.0, lean=False)
    t, y = tiny_cell.end_state(first)
    ins = _inputs(tiny_cell, 3.0, t)
    a = tiny_cell.step(tiny_cell.solution_at(t, y, ins), ins, 60.0, lean=False)
    b = tiny_cell.step(tiny_cell.solution_at(t, y, ins), ins, 60.0, lean=True)
    assert type(b).__name__ == "LeanSolution"
    assert np.array_equal(np.asarray(a.y), b.y) and np.array_equal(np.asarray(a.t), b.t)
