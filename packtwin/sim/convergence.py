"""Mesh convergence of the generator's cell model: a mesh against one twice as fine.

One nominal cell is driven through the same current sequence on both meshes, stepped exactly as
the generator steps it (:class:`packtwin.sim.cell.CellModel`, one constant-current step per storage
period), and the stored quantities are compared at every sample: terminal voltage, the particle
surface concentration of both electrodes at every x node, and the x-averaged SEI thickness.

The current sequence is a scenario's own cycle (the protocol code of :mod:`packtwin.sim.scenario`:
the pulse pattern or CC discharge at the scenario's C-rate, rest, CC charge, rest), with each CC
phase cut to ``PHASE_FRACTION`` of its length to the cut-off on a probe mesh. Both meshes then
see identical inputs, so the difference is the discretisation error alone and not a shifted
cut-off time (the steep voltage at a cut-off would otherwise dominate any error measure). The
CV hold is left out: it is a voltage-controlled phase whose current follows the voltage.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from packtwin import schema
from packtwin.sim import config as cfgmod
from packtwin.sim.cell import CellModel, StepTerminated, nominal_values
from packtwin.sim.scenario import _pulse_multiplier

# Extra outputs: surface concentrations, and the particle fields on the solver's own nodes (the
# schema's c_s_n/c_s_p come back on the stored grid).
EXTRA = {"c_surf_n": "Negative particle surface concentration [mol.m-3]",
         "c_surf_p": "Positive particle surface concentration [mol.m-3]",
         "c_solver_n": schema.VARIABLES["c_s_n"].pybamm,
         "c_solver_p": schema.VARIABLES["c_s_p"].pybamm}
PHASE_FRACTION = 0.9
RADIAL_KEYS = ("r_n", "r_p")
THICKNESS_KEYS = ("x_n", "x_s", "x_p")


def refined(model_cfg: cfgmod.ModelConfig, keys, factor: int = 2) -> cfgmod.ModelConfig:
    """A copy of ``model_cfg`` with ``factor`` times the points in the domains ``keys``.

    A non-uniform submesh keeps its type, side and stretch: the same mapping, twice the points.
    """
    out = copy.deepcopy(model_cfg)
    for k in keys:
        out.var_pts[k] = int(model_cfg.var_pts[k]) * factor
    return out


def with_mesh(model_cfg: cfgmod.ModelConfig, var_pts: dict, submesh: dict | None = None):
    out = copy.deepcopy(model_cfg)
    out.var_pts = {**model_cfg.var_pts, **var_pts}
    out.submesh = dict(model_cfg.submesh if submesh is None else submesh)
    return out


@dataclass
class Trace:
    """Stored quantities of one cell at every sample of a current sequence."""

    voltage: np.ndarray  # (n,) V
    c_surf_n: np.ndarray  # (n, x_n) mol/m3
    c_surf_p: np.ndarray  # (n, x_p) mol/m3
    sei_nm: np.ndarray  # (n,) x-averaged SEI thickness
    c_stored_n: np.ndarray  # (n, x_n, r stored) what the store holds
    c_stored_p: np.ndarray
    c_solver_n: np.ndarray  # (n, x_n, r solver)
    c_solver_p: np.ndarray
    x_n: np.ndarray  # through-thickness cell edges [m]
    x_p: np.ndarray
    r_n_solver: np.ndarray
    r_p_solver: np.ndarray
    r_n: np.ndarray  # stored radial grid
    r_p: np.ndarray
    c_max_n: float
    c_max_p: float
    build_s: float
    solve_s: float
    c_e: np.ndarray | None = None  # (n, x) mol/m3
    sei_x_nm: np.ndarray | None = None  # (n, x_n)
    mesh: dict | None = None  # x domain -> (nodes, edges) of the solver [m]
    current: np.ndarray | None = None  # (n,) A, discharge > 0: the step ending at each sample


def build(model_cfg: cfgmod.ModelConfig) -> CellModel:
    """The cell model read on the solver's x nodes (meshes are compared, not stored grids)."""
    radii = nominal_values(model_cfg, ["neg_radius", "pos_radius"])
    model_cfg = dataclasses.replace(model_cfg, stored_x_points=None)
    return CellModel(model_cfg, (), (radii["neg_radius"], radii["pos_radius"]), EXTRA)


def drive(model: CellModel, currents, period_s: float, ambient_c: float,
          stop=None) -> tuple[list[dict], int]:
    """Step ``model`` through ``currents`` [A, discharge > 0]; ``stop(voltage, current)`` ends early.

    Returns the outputs after every step and the number of steps taken. With ``stop`` given, a
    step the solver cannot finish (a particle surface emptying past a cut-off) also ends the run.
    """
    import pybamm

    ins = model.inputs({}, {}, 0.0, ambient_c + 273.15)
    sol, out = None, []
    for k, i in enumerate(currents):
        ins["Current function [A]"] = float(i)
        try:
            sol = model.step(sol, ins, period_s)
        except (pybamm.SolverError, StepTerminated):
            if stop is None:
                raise
            return out, k
        vals = model.read(sol, ins)
        out.append(vals)
        if stop is not None and stop(float(vals["voltage"][0]), float(i)):
            return out, k + 1
    return out, len(currents)


def _discharge(cfg, sc, q: float, n: int) -> list[float]:
    p, dt = cfg.protocol, cfg.solver.period_s
    return [sc.discharge_c_rate * q * (_pulse_multiplier(p.pulse_pattern, k * dt)
                                       if sc.protocol == "pulse" else 1.0) for k in range(n)]


def scenario_currents(cfg: cfgmod.GenerateConfig, scenario: int,
                      probe: cfgmod.ModelConfig | None = None) -> np.ndarray:
    """The current of every step of the scenario's cycle, CC phases cut to PHASE_FRACTION.

    Phase lengths are found on ``probe`` (default: the config's own mesh) with the protocol's
    cut-offs; the returned sequence is fixed and runs every mesh through the same inputs.
    """
    sc = cfg.scenarios[scenario]
    p, dt = cfg.protocol, cfg.solver.period_s
    steps = cfgmod.phase_steps(cfg, sc)
    model = build(probe or cfg.model)
    q = model.capacity_ah
    _, n_dis = drive(model, _discharge(cfg, sc, q, steps["discharge"]), dt, sc.ambient_temperature,
                     stop=lambda v, i: v < p.v_min)
    n_dis = max(1, int(PHASE_FRACTION * n_dis))
    rest = [0.0] * steps["rest"]
    head = _discharge(cfg, sc, q, n_dis) + rest
    charge = [-sc.charge_c_rate * q] * steps["cc"]
    _, n_all = drive(model, head + charge, dt, sc.ambient_temperature,
                     stop=lambda v, i: i < 0 and v > p.v_max)
    n_cc = max(1, int(PHASE_FRACTION * (n_all - len(head))))
    return np.asarray(head + charge[:n_cc] + rest, dtype=float)


def trace(model_cfg: cfgmod.ModelConfig, currents, period_s: float, ambient_c: float) -> Trace:
    t0 = time.perf_counter()
    model = build(model_cfg)
    t1 = time.perf_counter()
    out, _ = drive(model, currents, period_s, ambient_c)
    t2 = time.perf_counter()
    def stack(name, n_r=None):
        a = np.stack([np.asarray(o[name], dtype=float) for o in out])
        return a if n_r is None else a.reshape(len(out), -1, n_r)

    mesh = model.sim.mesh
    return Trace(voltage=stack("voltage")[:, 0], c_surf_n=stack("c_surf_n"),
                 c_surf_p=stack("c_surf_p"), sei_nm=stack("sei_thickness_avg")[:, 0] * 1e9,
                 c_stored_n=stack("c_s_n", len(model.r_n)), c_stored_p=stack("c_s_p", len(model.r_p)),
                 c_solver_n=stack("c_solver_n", len(model.r_n_solver)),
                 c_solver_p=stack("c_solver_p", len(model.r_p_solver)),
                 x_n=np.asarray(mesh["negative electrode"].edges, dtype=float),
                 x_p=np.asarray(mesh["positive electrode"].edges, dtype=float),
                 r_n_solver=model.r_n_solver, r_p_solver=model.r_p_solver, r_n=model.r_n,
                 r_p=model.r_p, c_max_n=model.c_max_n, c_max_p=model.c_max_p,
                 build_s=t1 - t0, solve_s=t2 - t1, c_e=stack("c_e"),
                 sei_x_nm=stack("sei_thickness") * 1e9,
                 mesh={k: (m.solver_nodes, m.solver_edges) for k, m in model.grid.maps.items()},
                 current=np.asarray(currents[:len(out)], dtype=float))


def restrict(field: np.ndarray, fine_edges: np.ndarray, coarse_edges: np.ndarray) -> np.ndarray:
    """Finite-volume values on fine cells -> the coarse cells (x on axis 1) by the width-weighted
    mean of the fine cells inside each coarse cell; the meshes must nest (a refined copy does)."""
    if len(fine_edges) == len(coarse_edges) and np.allclose(fine_edges, coarse_edges):
        return field
    idx = np.searchsorted(fine_edges, coarse_edges)
    if not np.allclose(fine_edges[np.minimum(idx, len(fine_edges) - 1)], coarse_edges,
                       rtol=0, atol=1e-9 * float(np.ptp(coarse_edges))):
        raise ValueError("restrict: the fine mesh does not nest the coarse one (every coarse edge "
                         "must be a fine edge)")
    w = np.diff(fine_edges)
    shape = (1, -1) + (1,) * (field.ndim - 2)
    cells = [slice(a, b) for a, b in zip(idx[:-1], idx[1:])]
    return np.stack([(field[:, c] * w[c].reshape(shape)).sum(1) / w[c].sum() for c in cells],
                    axis=1)


def linear_vs_cubic(c_solver: np.ndarray, r_solver: np.ndarray, r_store: np.ndarray) -> float:
    """Largest difference between linear (what the store holds) and cubic-spline interpolation
    of the solver's radial profiles onto the stored grid: the linear interpolation error to
    leading order [mol/m3]."""
    from scipy.interpolate import CubicSpline

    if np.array_equal(r_solver, r_store):
        return 0.0
    flat = c_solver.reshape(-1, len(r_solver))
    r = np.clip(r_store, r_solver[0], r_solver[-1])  # both held flat beyond the outer nodes
    cubic = CubicSpline(r_solver, flat, axis=1)(r)
    linear = np.stack([np.interp(r, r_solver, row) for row in flat])
    return float(np.max(np.abs(cubic - linear)))


def errors(coarse: Trace, fine: Trace) -> dict:
    """Errors of ``coarse`` against ``fine`` over every sample. Fine x-resolved fields are
    restricted to coarse's x cells (width-weighted means) when the through-thickness meshes
    differ. ``stored_*``: the particle fields on the stored radial grid, as the store holds
    them; ``interp_*``: linear interpolation error of coarse's stored grid (see
    :func:`linear_vs_cubic`)."""
    dv = (coarse.voltage - fine.voltage) * 1e3
    out = {"voltage_rmse_mv": float(np.sqrt(np.mean(dv ** 2))),
           "voltage_max_mv": float(np.max(np.abs(dv))),
           "voltage_max_at_sample": int(np.argmax(np.abs(dv)))}
    for side, c_max in (("n", coarse.c_max_n), ("p", coarse.c_max_p)):
        c = getattr(coarse, f"c_surf_{side}")
        fx, cx = getattr(fine, f"x_{side}"), getattr(coarse, f"x_{side}")
        f = restrict(getattr(fine, f"c_surf_{side}"), fx, cx)
        d = np.abs(c - f) / c_max * 100.0
        out[f"c_surf_{side}_max_pct"] = float(np.max(d))
        out[f"c_surf_{side}_max_at"] = locate(d, cx, side, coarse.current, c / c_max)
        if np.array_equal(getattr(fine, f"r_{side}"), getattr(coarse, f"r_{side}")):
            fs = restrict(getattr(fine, f"c_stored_{side}"), fx, cx)
            out[f"stored_c_s_{side}_max_pct"] = float(
                np.max(np.abs(getattr(coarse, f"c_stored_{side}") - fs)) / c_max * 100.0)
        out[f"interp_c_s_{side}_max_pct"] = linear_vs_cubic(
            getattr(coarse, f"c_solver_{side}"), getattr(coarse, f"r_{side}_solver"),
            getattr(coarse, f"r_{side}")) / c_max * 100.0
    if coarse.current is not None and (coarse.current < 0).any():
        # The first charge step is where a 5C cycle departs (data/README.md): the errors up to it
        k = int(np.argmax(coarse.current < 0))
        out["before_charge"] = {"samples": k, "voltage_max_mv": float(np.max(np.abs(dv[:k])))}
        for side, c_max in (("n", coarse.c_max_n), ("p", coarse.c_max_p)):
            cx, fx = getattr(coarse, f"x_{side}"), getattr(fine, f"x_{side}")
            d = getattr(coarse, f"c_surf_{side}")[:k] - restrict(
                getattr(fine, f"c_surf_{side}")[:k], fx, cx)
            out["before_charge"][f"c_surf_{side}_max_pct"] = float(np.max(np.abs(d)) / c_max
                                                                   * 100.0)
    if coarse.c_e is not None:  # electrolyte depletion concentrates the reaction (5C charge)
        out["c_e_min_mol_per_m3"] = float(coarse.c_e.min())
        k, i = np.unravel_index(np.argmin(coarse.c_e), coarse.c_e.shape)
        out["c_e_min_at"] = {"sample": int(k), "x_index": int(i), "x_points": int(
            coarse.c_e.shape[1]), **_phase_of(coarse.current, k)}
    ds = coarse.sei_nm - fine.sei_nm
    out["sei_max_nm"] = float(np.max(np.abs(ds)))
    out["sei_max_pct"] = float(np.max(np.abs(ds) / np.abs(fine.sei_nm)) * 100.0)
    return out


def _phase_of(current, k: int) -> dict:
    """The phase of sample ``k`` (its step's current: discharge > 0, rest, charge < 0) and its
    step in that phase (1 = the phase's first step)."""
    if current is None:
        return {}
    sign = np.sign(np.asarray(current, dtype=float))
    first = k
    while first > 0 and sign[first - 1] == sign[k]:
        first -= 1
    return {"phase": {1.0: "discharge", 0.0: "rest", -1.0: "charge"}[float(sign[k])],
            "step_in_phase": int(k - first + 1)}


def locate(d: np.ndarray, edges: np.ndarray, side: str, current=None, sto=None) -> dict:
    """Where the largest of ``d`` (samples x cells, % of c_max) sits: its sample, phase, and
    cell centre as a fraction of the electrode from its current collector (1 = the separator);
    with the same error as RMS over every sample and cell, its 99th percentile, the RMS over x
    at the worst sample, and the largest in each phase (is it one sample or everywhere?).
    ``sto``: the field there as a fraction of c_max (where on the OCP curve it sits)."""
    k, i = np.unravel_index(np.argmax(d), d.shape)
    centre = (edges[i] + edges[i + 1]) / 2
    frac = (centre - edges[0]) / (edges[-1] - edges[0])
    out = {"sample": int(k), "from_collector": float(frac if side == "n" else 1.0 - frac),
           **_phase_of(current, k), "rms_pct": float(np.sqrt(np.mean(d ** 2))),
           "p99_pct": float(np.percentile(d, 99)),
           "rms_over_x_at_max_sample_pct": float(np.sqrt(np.mean(d[k] ** 2)))}
    if sto is not None:
        out["stoichiometry"] = float(sto[k, i])
    if current is not None:
        sign = np.sign(np.asarray(current, dtype=float)[:len(d)])
        out["max_by_phase_pct"] = {name: float(d[sign == s].max()) for s, name in
                                   ((1, "discharge"), (0, "rest"), (-1, "charge"))
                                   if (sign == s).any()}
    return out


def observed_order(diffs, target: float, factor: int = 2) -> dict:
    """Convergence order from the differences of successive meshes of one family, each
    ``factor`` times as fine as the one before (``diffs[k]``: mesh k against mesh k + 1), and
    how many times the last mesh's points a mesh needs for its difference to reach ``target``
    (at the last observed order; None where the differences do not fall)."""
    d = [float(v) for v in diffs]
    orders = [float(np.log(a / b) / np.log(factor)) if a > 0 and b > 0 else None
              for a, b in zip(d[:-1], d[1:])]
    p = orders[-1] if orders else None
    if d and d[-1] <= target:
        scale = 1.0
    elif p is not None and p > 0:
        scale = float((d[-1] / target) ** (1.0 / p))
    else:
        scale = None
    return {"differences": d, "orders": orders, "points_factor_for_target": scale}


def converged(err: dict, voltage_mv: float = 1.0, c_surf_pct: float = 0.05) -> bool:
    """The issue's targets: voltage and surface c_s of both electrodes within these bounds."""
    return (err["voltage_max_mv"] <= voltage_mv and err["c_surf_n_max_pct"] <= c_surf_pct
            and err["c_surf_p_max_pct"] <= c_surf_pct)


def stored_grid_errors(tr: Trace, stored_x_points: dict | None) -> dict:
    """Errors of storing ``tr``'s solver-mesh fields on the x grid ``stored_x_points``
    (ModelConfig.stored_x_points), largest over every sample: at the stored nodes (the stored
    cell mean against the solver field interpolated there), back at the solver's nodes (the
    stored field interpolated there) and of each domain's mean (conservation; round-off). c_s on
    the stored radial grid and the true surface value, in % of c_max; c_e mol/m3; SEI nm."""
    from packtwin.sim.stored_grid import X_DOMAINS, StoredGrid, x_map

    grid = StoredGrid({k: x_map(*tr.mesh[k], (stored_x_points or {}).get(k)) for k in X_DOMAINS})
    out = {"stored_x_points": {k: len(m.nodes) for k, m in grid.maps.items()},
           "solver_x_points": {k: len(m.solver_nodes) for k, m in grid.maps.items()}}
    fields = (("c_s_n", tr.c_stored_n, 100.0 / tr.c_max_n, "pct_c_max"),
              ("c_s_p", tr.c_stored_p, 100.0 / tr.c_max_p, "pct_c_max"),
              ("c_surf_n", tr.c_surf_n, 100.0 / tr.c_max_n, "pct_c_max"),
              ("c_surf_p", tr.c_surf_p, 100.0 / tr.c_max_p, "pct_c_max"),
              ("c_e", tr.c_e, 1.0, "mol_per_m3"), ("sei_thickness", tr.sei_x_nm, 1.0, "nm"))
    from packtwin.sim.stored_grid import x_dim

    dims = {"c_surf_n": schema.X_N, "c_surf_p": schema.X_P}
    for name, arr, scale, unit in fields:
        dim = dims.get(name) or x_dim(name)
        if arr is None or not any(m.coarsened for m in grid.domains(dim)):
            continue  # stored on the solver's nodes: no error
        worst = np.zeros(3)
        for sample in arr:
            flat = np.asarray(sample, dtype=float).ravel()
            st = grid.restrict(dim, flat)
            worst = np.maximum(worst, [*grid.errors(dim, flat, st),
                                       grid.integral_change(dim, flat, st)])
        out[f"{name}_at_stored_nodes_{unit}"] = float(worst[0] * scale)
        out[f"{name}_at_solver_nodes_{unit}"] = float(worst[1] * scale)
        out[f"{name}_domain_mean_change_{unit}"] = float(worst[2] * scale)
    return out
