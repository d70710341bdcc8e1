"""One cell's PyBaMM DFN run on a current profile, laid out like a store: the core's reference.

Uses the generator's own cell model (:func:`packtwin.sim.cell.get_model`: same options, parameter
overrides and per-cell inputs) with a mesh of the caller's choice, and reads every output at a
uniform period. Used by ``scripts/bench_core.py`` and the core's PyBaMM tests.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from packtwin import schema
from packtwin.sim.cell import get_model
from packtwin.sim.config import ModelConfig

FIELDS = ("voltage", "temperature", "c_s_n", "c_s_p", "c_e", "plating_margin",
          "sei_thickness_avg", "plated_lithium")


def fine_model_config(r_points: int = 30, x_points: int = 10) -> ModelConfig:
    """The generator's model with a finer mesh (mesh error below the core's, field notes), read
    on the solver's own nodes (no stored-grid interpolation: the core is compared with
    the DFN itself)."""
    return dataclasses.replace(ModelConfig(), var_pts={
        "x_n": x_points, "x_s": max(3, x_points // 2), "x_p": x_points,
        "r_n": r_points, "r_p": r_points}, stored_r_points=None, stored_x_points=None)


def run_profile(cell_values: Mapping[str, float], nominal: Mapping[str, float],
                segments: Sequence[tuple[float, float]], ambient_k: float, period_s: float,
                model_cfg: ModelConfig | None = None) -> dict[str, np.ndarray]:
    """Solve one cell through ``segments`` [(current A, duration s), ...] from the parameter
    set's initial (rested, charged) state at ambient = initial temperature ``ambient_k``.

    Every duration must be a multiple of ``period_s``. Returns arrays over the samples
    0, period, 2 period, ... (sample 0 is the initial state; its current is recorded as 0, but
    its voltage and potentials are PyBaMM's consistent initial values at the first segment's
    current, so compare from sample 1): ``time`` [s], ``current`` [A] (the current over the step
    ending at each sample, the stores' convention), the :data:`FIELDS` in
    stored units and shapes (c_s_n [K, x_n, r_n] ...), and the mesh (``x_n``, ``r_n``, ``x_p``,
    ``r_p``, ``x`` as in a store).

    Raises:
        ValueError: a duration that is not a multiple of the period.
        packtwin.sim.cell.StepTerminated: PyBaMM stopped early (e.g. a particle emptied).
    """
    model_cfg = model_cfg or fine_model_config()
    varied = tuple(sorted(cell_values))
    radii = (float(cell_values.get("neg_radius", nominal["neg_radius"])),
             float(cell_values.get("pos_radius", nominal["pos_radius"])))
    model = get_model(model_cfg, varied, radii)
    shapes = {schema.X_N: len(model.x_n), schema.X_P: len(model.x_p), schema.X: len(model.x),
              schema.R_N: len(model.r_n), schema.R_P: len(model.r_p)}
    rows: list[dict] = []
    currents: list[float] = []
    sol = None
    for current, duration in segments:
        n = int(round(duration / period_s))
        if n < 1 or abs(n * period_s - duration) > 1e-6 * period_s:
            raise ValueError(f"run_profile: segment duration {duration} s is not a positive "
                             f"multiple of the period {period_s} s")
        inputs = model.inputs(cell_values, nominal, current, ambient_k)
        # One solver call per segment with output every period: no restart at every sample.
        sol = model.solver.step(sol, model.model, float(duration), inputs=dict(inputs),
                                save=False, t_interp=np.linspace(0.0, duration, n + 1))
        y = np.asarray(sol.y.full() if hasattr(sol.y, "full") else sol.y)
        t = np.asarray(sol.t)
        if t[-1] < t[0] + duration * (1 - 1e-9):
            from packtwin.sim.cell import StepTerminated
            raise StepTerminated(f"DFN stopped after {t[-1] - t[0]:.4g} of {duration} s: "
                                 f"{sol.termination}")
        p = np.array([inputs[name] for name in model.input_names], dtype=float)
        start = 0 if not rows else 1  # the first column repeats the previous segment's end
        for col in range(start, y.shape[1]):
            rows.append(model.stored(np.asarray(model._fn(float(t[col]), y[:, col], p)).ravel()))
            currents.append(float(current) if len(rows) > 1 else 0.0)
    out: dict[str, np.ndarray] = {}
    for name in FIELDS:
        var = schema.VARIABLES[name]
        shape = tuple(shapes[d] for d in var.dims[4:])
        out[name] = np.stack([np.asarray(r[name], dtype=float).reshape(shape) * var.scale
                              for r in rows])
    out["current"] = np.asarray(currents)
    out["time"] = np.arange(len(rows)) * period_s
    out.update(x_n=model.x_n, x_p=model.x_p, x=model.x, r_n=model.r_n, r_p=model.r_p)
    return out
