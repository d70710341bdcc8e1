"""One PyBaMM cell model, built once per process and stepped at a given current.

Per-cell variation enters through PyBaMM input parameters, so one built model serves every cell.
Parameters that are functions in the set (diffusivities, exchange-current densities) are scaled by
an input multiplier; their stored "true value" is the function at a reference state
(:data:`REFERENCE_STATE`). Particle radii set the mesh, so they cannot be inputs: a model is built
per distinct pair of radii (0.25 s each; cached per process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np

from packtwin import schema
from packtwin.sim.stored_grid import (StoredGrid, linear_interpolation, stored_radial_grid,
                                      x_map)

# Parameters fixing the geometry/mesh: a change needs a rebuild instead of an input.
GEOMETRIC_KEYS = ("neg_radius", "pos_radius")
REFERENCE_STATE = {"c_e": 1000.0, "sto": 0.5, "T": 298.15}
REFERENCE_NOTE = ("param_* of function-valued parameters (diffusivities, exchange-current "
                  "densities) hold the function at c_e = 1000 mol/m3, stoichiometry 0.5, "
                  "298.15 K, times the cell's multiplier")

CURRENT = "Current function [A]"
# The current ramps linearly inside a step: CURRENT + SLOPE * (t - RAMP_START) (slope 0: constant).
SLOPE = "Current slope [A.s-1]"
RAMP_START = "Current ramp start [s]"
AMBIENT = "Ambient temperature [K]"
INITIAL_T = "Initial temperature [K]"

# Extra PyBaMM outputs the generator needs besides the schema's variables.
STOICHIOMETRY_N = "Average negative particle stoichiometry"
LLI = "Loss of lithium inventory [%]"
# Key prefix of an x-coarsened output's solver-mesh values in CellModel.stored's result.
SOLVER_PREFIX = "_solver:"


def pybamm_outputs() -> dict[str, str]:
    """Stored name -> PyBaMM variable read at every step (schema variables with a PyBaMM name)."""
    out = {n: v.pybamm for n, v in schema.VARIABLES.items()
           if v.pybamm and schema.CELL in v.dims and schema.TIME in v.dims}
    out["_sto_n"] = STOICHIOMETRY_N
    out["_lli"] = LLI
    return out


def scale_input(key: str) -> str:
    return f"{key} multiplier"


@dataclass(frozen=True)
class ModelKey:
    """Hashable description of one built model (cache key)."""

    model: str
    parameter_set: str
    options_json: str
    var_pts_json: str
    submesh_json: str
    overrides_json: str
    varied: tuple[str, ...]
    radii: tuple[float, float]


# var_pts keys -> PyBaMM mesh domains (the keys a ModelConfig.submesh entry may use).
MESH_DOMAINS = {"x_n": "negative electrode", "x_s": "separator", "x_p": "positive electrode",
                "r_n": "negative particle", "r_p": "positive particle"}
SUBMESH_SIDES = ("left", "right", "symmetric")


def submesh_types(model, spec: Mapping[str, Mapping]) -> dict:
    """The model's default submeshes with the non-uniform ones of ``spec`` (ModelConfig.submesh).

    An exponential mesh's nodes scale with the domain, so r / R is the same for every particle
    radius and the store keeps one r coordinate per electrode.
    """
    import pybamm

    types = dict(model.default_submesh_types)
    for key, sub in (spec or {}).items():
        if key not in MESH_DOMAINS:
            raise ValueError(f"model.submesh key {key!r} unknown; expected one of "
                             f"{sorted(MESH_DOMAINS)}")
        kind, side = sub.get("type"), sub.get("side", "symmetric")
        if kind == "uniform":
            continue
        if kind != "exponential" or side not in SUBMESH_SIDES:
            raise ValueError(f"model.submesh[{key!r}] = {dict(sub)}; expected type 'uniform' or "
                             f"'exponential' with side one of {SUBMESH_SIDES}")
        params = {"side": side}
        if sub.get("stretch") is not None:
            params["stretch"] = float(sub["stretch"])
        types[MESH_DOMAINS[key]] = pybamm.MeshGenerator(pybamm.Exponential1DSubMesh, params)
    return types


def model_key(model_cfg, varied: tuple[str, ...], radii: tuple[float, float]) -> ModelKey:
    return ModelKey(model_cfg.model, model_cfg.parameter_set,
                    json.dumps(model_cfg.options, sort_keys=True),
                    json.dumps(model_cfg.var_pts, sort_keys=True),
                    json.dumps(model_cfg.submesh, sort_keys=True),
                    json.dumps(model_cfg.parameter_overrides, sort_keys=True),
                    tuple(varied), (float(radii[0]), float(radii[1])))


def nominal_parameter_values(model_cfg):
    import pybamm

    pv = pybamm.ParameterValues(model_cfg.parameter_set)
    if model_cfg.parameter_overrides:
        pv.update(dict(model_cfg.parameter_overrides), check_already_exists=False)
    return pv


def reference_value(pv, key: str) -> float:
    """Nominal value of a parameter key; function-valued ones at :data:`REFERENCE_STATE`."""
    import pybamm

    name = schema.PARAMETERS[key].pybamm
    val = pv[name]
    if not callable(val):
        return float(val)
    T = pybamm.Scalar(REFERENCE_STATE["T"])
    if "exchange-current" in name:
        side = "negative" if name.startswith("Negative") else "positive"
        c_max = pv[f"Maximum concentration in {side} electrode [mol.m-3]"]
        expr = val(pybamm.Scalar(REFERENCE_STATE["c_e"]),
                   pybamm.Scalar(REFERENCE_STATE["sto"] * c_max), pybamm.Scalar(c_max), T)
    else:  # diffusivity(sto, T)
        expr = val(pybamm.Scalar(REFERENCE_STATE["sto"]), T)
    return float(pv.process_symbol(expr).evaluate())


def nominal_values(model_cfg, keys) -> dict[str, float]:
    pv = nominal_parameter_values(model_cfg)
    return {k: reference_value(pv, k) for k in keys}


class StepTerminated(RuntimeError):
    """A cell step stopped before its end time (a PyBaMM event fired)."""


class CellModel:
    """A built PyBaMM model with a compiled function for every output read per step."""

    def __init__(self, model_cfg, varied: tuple[str, ...], radii: tuple[float, float],
                 extra_outputs: Mapping[str, str] | None = None):
        import casadi
        import pybamm

        self.model_cfg = model_cfg
        self.varied = tuple(varied)
        pv = nominal_parameter_values(model_cfg)
        self.nominal_pv = pv.copy()
        pv.update({schema.PARAMETERS["neg_radius"].pybamm: radii[0],
                   schema.PARAMETERS["pos_radius"].pybamm: radii[1]})
        self.input_names: list[str] = [CURRENT, AMBIENT, INITIAL_T]
        for key in self.varied:
            if key in GEOMETRIC_KEYS:
                continue
            name = schema.PARAMETERS[key].pybamm
            val = pv[name]
            if callable(val):
                pv.update({name: _scaled(val, scale_input(key))})
                self.input_names.append(scale_input(key))
            else:
                pv.update({name: "[input]"})
                self.input_names.append(name)
        self.input_names += [SLOPE, RAMP_START]
        pv.update({CURRENT: _ramp, AMBIENT: "[input]", INITIAL_T: "[input]"})
        # The pack controller enforces the voltage limits on the linearised split; the cell model
        # must not stop a trial step that overshoots slightly.
        pv.update({"Lower voltage cut-off [V]": 0.5, "Upper voltage cut-off [V]": 5.0})
        self.pv = pv
        model_cls = getattr(pybamm.lithium_ion, model_cfg.model)
        model = model_cls(dict(model_cfg.options))
        self.sim = pybamm.Simulation(model, parameter_values=pv, var_pts=dict(model_cfg.var_pts),
                                     submesh_types=submesh_types(model, model_cfg.submesh),
                                     solver=pybamm.IDAKLUSolver())
        self.sim.build()
        self.model = self.sim.built_model
        self.solver = self.sim.solver
        self.outputs = {**pybamm_outputs(), **dict(extra_outputs or {})}
        t = casadi.MX.sym("t")
        y = casadi.MX.sym("y", self.model.len_rhs_and_alg)
        p = casadi.MX.sym("p", len(self.input_names))
        ins = {n: p[i] for i, n in enumerate(self.input_names)}
        exprs, self.slices = [], {}
        start = 0
        for name, pyb in self.outputs.items():
            try:
                sym = self.model.get_processed_variable(pyb)
            except KeyError as exc:
                raise KeyError(f"PyBaMM variable {pyb!r} (for {name!r}) is not in the built "
                               f"{model_cfg.model} model with options {model_cfg.options}") from exc
            e = sym.to_casadi(t, y, inputs=ins)
            exprs.append(casadi.reshape(e, -1, 1))
            self.slices[name] = slice(start, start + e.numel())
            start += e.numel()
        self._fn = casadi.Function("outputs", [t, y, p], [casadi.vertcat(*exprs)])
        mesh = self.sim.mesh
        # x: the solver's cells and the stored ones (coarser uniform cells averaged from the
        # solver's, ModelConfig.stored_x_points); the store's coordinates are the stored nodes
        n_x = getattr(model_cfg, "stored_x_points", None) or {}
        self.grid = StoredGrid({key: x_map(mesh[MESH_DOMAINS[key]].nodes,
                                           mesh[MESH_DOMAINS[key]].edges, n_x.get(key))
                                for key in ("x_n", "x_s", "x_p")})
        self.x_n, self.x_p = self.grid.maps["x_n"].nodes, self.grid.maps["x_p"].nodes
        self.x = self.grid.x
        # r / R of the solver's nodes, and of the stored grid the particle fields are read on
        self.r_n_solver = np.asarray(mesh["negative particle"].nodes, dtype=float) / radii[0]
        self.r_p_solver = np.asarray(mesh["positive particle"].nodes, dtype=float) / radii[1]
        n_store = getattr(model_cfg, "stored_r_points", None)
        self.r_n = self.r_n_solver if n_store is None else stored_radial_grid(n_store)
        self.r_p = self.r_p_solver if n_store is None else stored_radial_grid(n_store)
        self._to_stored = {
            name: linear_interpolation(r_solver, r_store)
            for name, r_solver, r_store in (("c_s_n", self.r_n_solver, self.r_n),
                                            ("c_s_p", self.r_p_solver, self.r_p))
            if name in self.slices and not np.array_equal(r_solver, r_store)}
        self.c_max_n = float(pv["Maximum concentration in negative electrode [mol.m-3]"])
        self.c_max_p = float(pv["Maximum concentration in positive electrode [mol.m-3]"])
        self.capacity_ah = float(pv["Nominal cell capacity [A.h]"])

    def inputs(self, cell_values: Mapping[str, float], nominal: Mapping[str, float],
               current: float, ambient_k: float) -> dict[str, float]:
        """PyBaMM inputs of one cell: true parameter values -> inputs (multipliers where needed)."""
        out = {CURRENT: float(current), AMBIENT: float(ambient_k), INITIAL_T: float(ambient_k),
               SLOPE: 0.0, RAMP_START: 0.0}
        for key in self.varied:
            if key in GEOMETRIC_KEYS:
                continue
            name = schema.PARAMETERS[key].pybamm
            if scale_input(key) in self.input_names:
                out[scale_input(key)] = float(cell_values[key] / nominal[key])
            else:
                out[name] = float(cell_values[key])
        return out

    def step(self, old, inputs: Mapping[str, float], dt: float, n_samples: int = 1,
             lean: bool | None = None):
        """Advance one cell by ``dt`` seconds at the constant current in ``inputs``.

        The solution holds ``n_samples`` states equally spaced over the step (the last one at its
        end) after the starting one. The integrator stops only at the end of the step: the samples
        are interpolated (IDAKLU's Hermite output via ``t_interp``), because an integrator stopped
        at every sample costs as much as a restart at every sample.

        ``lean`` (default :data:`packtwin.sim.lean_step.LEAN_STEP`): after a cell's first step,
        call the set-up IDAKLU solver directly (:mod:`packtwin.sim.lean_step`, bit-identical
        states); False: always PyBaMM's ``solver.step``.
        """
        from packtwin.sim import lean_step

        t_interp = np.linspace(0.0, dt, int(n_samples) + 1)
        if lean_step.LEAN_STEP if lean is None else lean:
            start = lean_step.start_of(old, self.model)
            if start is not None:
                sol = lean_step.step(self.solver, self.model, start, inputs, dt, t_interp)
                if sol is not None:
                    return sol
                # an event or a failure: the full path from the same state says which
                old = self.solution_at(start[0], start[1], inputs)
        sol = self.solver.step(old, self.model, dt, t_eval=np.array([0.0, dt]), t_interp=t_interp,
                               inputs=dict(inputs), save=False)
        t_start = 0.0 if old is None else float(old.t[-1])
        if float(sol.t[-1]) < t_start + dt * (1 - 1e-9):
            # an event (e.g. a particle surface emptying) ended the step early
            raise StepTerminated(f"step ended at an event after {float(sol.t[-1]) - t_start:.3g} "
                                 f"of {dt} s: {sol.termination}")
        return sol

    def end_state(self, sol) -> tuple[float, np.ndarray]:
        """(time [s], state vector) at the end of a step: all :meth:`step` needs to go on."""
        if hasattr(sol, "end"):  # a lean step's solution
            return sol.end()
        last = sol.last_state
        return float(last.t[-1]), np.array(last.all_ys[0], dtype=float).ravel()

    def solution_at(self, t: float, y: np.ndarray, inputs: Mapping[str, float]):
        """A one-point solution at (t, y) that :meth:`step` continues from exactly as from the
        step that ended there (PyBaMM's step reads only the old solution's last time, state,
        termination and model)."""
        import pybamm

        y = np.asarray(y, dtype=float).reshape(-1, 1)
        if y.shape[0] != self.model.len_rhs_and_alg:
            raise ValueError(f"a saved cell state has {y.shape[0]} values, the "
                             f"{self.model_cfg.model} model built here has "
                             f"{self.model.len_rhs_and_alg}")
        return pybamm.Solution([np.array([float(t)])], [y], self.model, dict(inputs),
                               termination="final time")

    def read(self, sol, inputs: Mapping[str, float]) -> dict[str, np.ndarray]:
        """All outputs at the end of a step (stored units not applied yet; PyBaMM units)."""
        return self.read_samples(sol, inputs, 1)[0]

    def read_samples(self, sol, inputs: Mapping[str, float], n: int) -> list[dict[str, np.ndarray]]:
        """All outputs at the last ``n`` states of a step (see :meth:`step`), oldest first."""
        y = sol.y
        y = np.asarray(y.full() if hasattr(y, "full") else y)
        t = np.asarray(sol.t, dtype=float)
        p = np.array([inputs[name] for name in self.input_names], dtype=float)
        out = []
        for k in range(y.shape[1] - int(n), y.shape[1]):
            out.append(self.stored(np.asarray(self._fn(float(t[k]), y[:, k], p)).ravel()))
        return out

    def stored(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """The compiled outputs (one flat vector) -> each output on the stored grid; the
        x-coarsened ones keep their solver-mesh values (stored radial grid) under
        ``SOLVER_PREFIX + name`` for :meth:`stored_grid_errors`."""
        vals = {name: vec[s] for name, s in self.slices.items()}
        for name, w in self._to_stored.items():
            # PyBaMM's particle values are x-major: rows are x nodes, columns the solver's r
            vals[name] = (vals[name].reshape(-1, w.shape[1]) @ w.T).ravel()
        for name in self.grid.names():
            if name in vals:
                vals[SOLVER_PREFIX + name] = vals[name]
                vals[name] = self.grid.restrict(name, vals[name])
        return vals

    def stored_grid_errors(self, vals: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Per x-coarsened output of :meth:`stored`: the stored grid's largest error against the
        solver's mesh (PyBaMM units), at the stored nodes and back at the solver's nodes."""
        out = {}
        for name in self.grid.names():
            if SOLVER_PREFIX + name in vals:
                at_stored, at_solver = self.grid.errors(name, vals[SOLVER_PREFIX + name], vals[name])
                out[f"{name}_at_stored_nodes"] = at_stored
                out[f"{name}_at_solver_nodes"] = at_solver
        return out

    def stoichiometry_limits(self, cell_values: Mapping[str, float]) -> tuple[float, float]:
        """(theta_n at 0 % SOC, theta_n at 100 % SOC) of a fresh cell with these parameters
        (kept per cell: PyBaMM's electrode SOH solve costs ~0.25 s, every scenario asks again)."""
        key = tuple(sorted((k, float(v)) for k, v in cell_values.items()))
        cache = self.__dict__.setdefault("_limits", {})
        if key not in cache:
            cache[key] = self._stoichiometry_limits(cell_values)
        return cache[key]

    def _stoichiometry_limits(self, cell_values: Mapping[str, float]) -> tuple[float, float]:
        import pybamm

        pv = self.nominal_pv.copy()
        for key, val in cell_values.items():
            name = schema.PARAMETERS[key].pybamm
            if not callable(pv[name]):
                pv.update({name: float(val)})
        # SOH options only matter for MSMR electrodes; the model's own options trip it up.
        x0, x100, _, _ = pybamm.lithium_ion.get_min_max_stoichiometries(pv)
        return float(x0), float(x100)


def _ramp(t):
    import pybamm

    return pybamm.InputParameter(CURRENT) + pybamm.InputParameter(SLOPE) * (
        t - pybamm.InputParameter(RAMP_START))


def _scaled(func, input_name: str):
    import pybamm

    def scaled(*args):
        return func(*args) * pybamm.InputParameter(input_name)

    return scaled


@lru_cache(maxsize=64)
def _cached(key: ModelKey, model_cfg_json: str) -> CellModel:
    from packtwin.sim.config import ModelConfig

    return CellModel(ModelConfig(**json.loads(model_cfg_json)), key.varied, key.radii)


def get_model(model_cfg, varied: tuple[str, ...], radii: tuple[float, float]) -> CellModel:
    """The process-wide cached model for this configuration and particle radii."""
    import dataclasses

    key = model_key(model_cfg, varied, radii)
    return _cached(key, json.dumps(dataclasses.asdict(model_cfg), sort_keys=True))


# Overrides in these units are magnitudes: a negative value is never physical (resistance may be 0).
_NON_NEGATIVE_UNITS = ("[Ohm]", "[Ohm.m2]")
_POSITIVE_UNITS = ("[m]", "[m2.s-1]", "[mol.m-3]", "[A.m-2]", "[W.m-2.K-1]", "[J.kg-1.K-1]",
                   "[kg.m-3]", "[K]", "[A.h]", "[m.s-1]", "[W.m-1.K-1]", "[S.m-1]")


def model_config_problems(model_cfg) -> list[str]:
    """Problems of a ModelConfig only PyBaMM can see: unknown parameter set, options or
    ``parameter_overrides`` keys (each with the nearest valid name) and impossible overrides."""
    import math

    import pybamm

    from packtwin.sim.config import nearest

    problems = []
    sets = list(pybamm.parameter_sets.keys())
    if model_cfg.parameter_set not in sets:
        return [f"model.parameter_set {model_cfg.parameter_set!r} is not a PyBaMM parameter set"
                f"{nearest(model_cfg.parameter_set, sets)}"]
    model = None
    cls = getattr(pybamm.lithium_ion, str(model_cfg.model), None)
    if cls is not None:
        try:
            model = cls(dict(model_cfg.options))
        except pybamm.OptionError as exc:
            problems.append(f"model.options: {' '.join(str(exc).split())}")
    valid = set(pybamm.ParameterValues(model_cfg.parameter_set).keys())
    if model is not None:
        valid |= set(model.get_parameter_info())
    for key, val in dict(model_cfg.parameter_overrides).items():
        if key not in valid:
            problems.append(f"model.parameter_overrides key {key!r} is not a parameter of "
                            f"{model_cfg.parameter_set} or the {model_cfg.model} model"
                            f"{nearest(key, valid)}")
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            problems.append(f"model.parameter_overrides[{key!r}] must be a finite number, "
                            f"found {val!r}")
        elif key.endswith(_NON_NEGATIVE_UNITS) and val < 0 or key.endswith(_POSITIVE_UNITS) \
                and val <= 0:
            problems.append(f"model.parameter_overrides[{key!r}] = {val} is not physical "
                            f"(must be {'>= 0' if key.endswith(_NON_NEGATIVE_UNITS) else '> 0'})")
    return problems


def negative_c_max(model_cfg) -> float:
    """Maximum concentration of the negative electrode [mol/m3] (bound of its initial value)."""
    pv = nominal_parameter_values(model_cfg)
    return float(pv["Maximum concentration in negative electrode [mol.m-3]"])
