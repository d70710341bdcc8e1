"""Does one batched IDAKLU call for all cells of a coupling step make the pack stepping cheaper?

    python scripts/bench_batched_step.py --out reports/bench_batched_step.json

Issue #10 item 1 asks for "one batched IDAKLU call per coupling step with each cell's inputs and
state". The generator cannot do it as built: each cell's particle radii set its mesh, so every
cell has its own model (``packtwin/sim/cell.py``). PyBaMM >= 25.1 can take the radii as input
parameters on a ``pybamm.SymbolicUniform1DSubMesh`` (uniform in r / R only; the generator's
particle meshes are surface-refined). This bench builds that model once (the life mesh's point
counts, x 5/3/5, r 8, uniform in r / R), solves ``--cells`` cells with different radii to a common
time, then steps them ``--steps`` coupling periods of ``--period-s`` seconds three ways from the
same states, each as the lean step calls the compiled solver (``packtwin/sim/lean_step.py``:
``ydot0`` from the model's rhs, no ``solver.step`` bookkeeping):

- ``separate``: one call per cell and period (what the pack stepping does today);
- ``batched``: one call per period with every cell's state and inputs stacked (the issue's plan);
- ``continuous``: one call per cell over all periods (no coupling restarts: the floor).

CPU time of the process, each way run ``--repeats`` times interleaved, the cheapest kept. The
JSON also holds the largest state difference between ``separate`` and ``batched`` (the same
integrations: 0 expected).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RADII = ("Negative particle radius [m]", "Positive particle radius [m]")
CURRENT = "Current function [A]"


def build(var_pts: dict):
    """(simulation, nominal radii) of the generator's DFN with the radii and current as inputs."""
    import pybamm

    from packtwin.sim.cell import nominal_parameter_values
    from packtwin.sim.config import ModelConfig

    mc = ModelConfig(var_pts=dict(var_pts), submesh={})
    pv = nominal_parameter_values(mc)
    radii = tuple(float(pv[n]) for n in RADII)
    pv.update({RADII[0]: "[input]", RADII[1]: "[input]", CURRENT: "[input]",
               "Lower voltage cut-off [V]": 0.5, "Upper voltage cut-off [V]": 5.0})
    model = pybamm.lithium_ion.DFN(dict(mc.options))
    sub = dict(model.default_submesh_types)
    for dom in ("negative particle", "positive particle"):
        sub[dom] = pybamm.MeshGenerator(pybamm.SymbolicUniform1DSubMesh)
    sim = pybamm.Simulation(model, parameter_values=pv, var_pts=dict(var_pts),
                            submesh_types=sub, solver=pybamm.IDAKLUSolver())
    return sim, radii


def main(argv: list[str] | None = None) -> int:
    from pybamm.solvers.base_solver import flatten_inputs

    from packtwin.sim.lean_step import rhs_ydot0

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--period-s", type=float, default=60.0)
    ap.add_argument("--current-a", type=float, default=5.0, help="per cell (1C of the LG M50)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="reports/bench_batched_step.json")
    args = ap.parse_args(argv)

    var_pts = {"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}
    sim, (Rn, Rp) = build(var_pts)
    rng = np.random.default_rng(0)
    inputs = [{RADII[0]: Rn * f[0], RADII[1]: Rp * f[1], CURRENT: args.current_a}
              for f in 1.0 + 0.05 * rng.uniform(-1, 1, size=(args.cells, 2))]
    t_start = 600.0
    sols = sim.solve([0.0, t_start], inputs=inputs)
    solver, model = sim.solver, sim.built_model
    ps = [flatten_inputs(solver._set_up_model_inputs(model, d)) for d in inputs]
    y_start = [np.asarray(s.y[:, -1], dtype=float).ravel() for s in sols]
    compiled = solver._setup["solver"]
    none = np.empty((0, 0))

    def last(soln) -> np.ndarray:
        return np.asarray(soln.y).reshape(soln.t.size, -1)[-1].copy()

    def coupled(batched: bool) -> tuple[float, list[np.ndarray]]:
        y, t0 = [v.copy() for v in y_start], t_start
        tic = time.process_time()
        for _ in range(args.steps):
            te = np.array([np.nextafter(t0, np.inf), t0 + args.period_s])
            yd = [rhs_ydot0(model, te[0], v, p) for v, p in zip(y, ps)]
            if batched:
                out = compiled.solve(te, te.copy(), np.vstack(y), np.vstack(yd), np.vstack(ps),
                                     logger=None, pbar=none)
            else:
                out = [compiled.solve(te, te.copy(), y[i][None], yd[i][None], ps[i][None],
                                      logger=None, pbar=none)[0] for i in range(len(y))]
            if any(o.flag < 0 for o in out):
                raise SystemExit("bench_batched_step: a step failed")
            y = [last(o) for o in out]
            t0 += args.period_s
        return time.process_time() - tic, y

    def continuous() -> float:
        tic = time.process_time()
        te = np.array([np.nextafter(t_start, np.inf), t_start + args.steps * args.period_s])
        for v, p in zip(y_start, ps):
            compiled.solve(te, te.copy(), v[None], rhs_ydot0(model, te[0], v, p)[None], p[None],
                           logger=None, pbar=none)
        return time.process_time() - tic

    times = {"separate": [], "batched": [], "continuous": []}
    diff = 0.0
    for _ in range(args.repeats):
        ta, ya = coupled(False)
        tb, yb = coupled(True)
        times["separate"].append(ta)
        times["batched"].append(tb)
        times["continuous"].append(continuous())
        diff = max(diff, max(float(np.max(np.abs(a - b))) for a, b in zip(ya, yb)))
    n_cell_steps = args.cells * args.steps
    best = {k: min(v) for k, v in times.items()}
    result = {
        "command": "python scripts/bench_batched_step.py " + " ".join(argv or sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": "one (IDAKLU num_threads 1; run with OMP_NUM_THREADS=1)",
        "model": "DFN, generator options (OKane2022, SEI, plating, lumped thermal), radii as "
                 "inputs on SymbolicUniform1DSubMesh",
        "var_pts": var_pts, "cells": args.cells, "steps": args.steps,
        "period_s": args.period_s, "current_a": args.current_a,
        "cpu_s": times, "best_cpu_s": best,
        "ms_per_cell_step": {k: 1e3 * v / n_cell_steps for k, v in best.items()},
        "batched_over_separate": best["batched"] / best["separate"],
        "separate_over_continuous": best["separate"] / best["continuous"],
        "max_state_difference_separate_vs_batched": diff,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("ms_per_cell_step", "batched_over_separate",
                                             "separate_over_continuous",
                                             "max_state_difference_separate_vs_batched")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
