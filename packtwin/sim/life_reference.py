"""One cell aged through many CCCV cycles with PyBaMM directly: life data without the pack stepper.

Each cycle is: CC charge at ``charge_c_rate`` to v_max, CV hold to C/20, rest, CC discharge at
``discharge_c_rate`` to v_min, rest (charge first, so that every discharge starts from a CV-full
cell and its capacity is comparable from cycle 1). The cell is one of the generator's draws
(:func:`packtwin.sim.generate.draw_cells`) under the generator's model options (OKane2022,
solvent-diffusion-limited SEI, partially reversible plating, lumped thermal), on a coarse mesh:
SEI growth is a reaction at the particle surface driven only by temperature, and it barely
depends on the mesh (``scripts/bench_life.py --mesh-check`` measures it; README "Over life").

Long lives are solved in chunks of cycles, each started from the last state of the previous one,
because one long ``Simulation.solve`` keeps every step in memory (field notes: ~35 MB per cycle).

The result is an xarray Dataset on the schema's ``cycle`` dim (scenario and cell of size 1, so
runs concatenate along them): the schema's per-cycle summaries (``capacity``, ``lli``,
``sei_thickness_end``, ``plated_lithium_end``, ``temperature_max``) plus the measured V/I/T of
every cycle on a padded per-cycle sample axis (``life_voltage``, ``life_current``,
``life_temperature``) and the voltage step at the start of each discharge as a resistance
(``life_resistance``; ``life_*`` in :data:`packtwin.schema.LIFE_VARIABLES`).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from packtwin import schema
from packtwin.sim.cell import LLI, _scaled, nominal_parameter_values
from packtwin.sim.config import ModelConfig

T_CELL = "Volume-averaged cell temperature [K]"
SEI_AVG = "X-averaged negative SEI thickness [m]"
PLATED = "X-averaged negative lithium plating concentration [mol.m-3]"
OUTPUTS = ("Time [s]", "Current [A]", "Voltage [V]", T_CELL, LLI, SEI_AVG, PLATED,
           "Discharge capacity [A.h]")


def coarse_model_config(x_points: int = 5, r_points: int = 8) -> ModelConfig:
    """The generator's model (options, overrides, radial surface refinement) on a coarse mesh."""
    return dataclasses.replace(ModelConfig(), var_pts={
        "x_n": x_points, "x_s": max(3, x_points // 2 + 1), "x_p": x_points,
        "r_n": r_points, "r_p": r_points})


def cell_parameter_values(model_cfg: ModelConfig, cell_values: Mapping[str, float],
                          nominal: Mapping[str, float]):
    """The set's ParameterValues with one cell's true values (function-valued ones scaled)."""
    pv = nominal_parameter_values(model_cfg)
    for key, val in cell_values.items():
        name = schema.PARAMETERS[key].pybamm
        if callable(pv[name]):
            pv.update({name: _scaled_by(pv[name], float(val) / float(nominal[key]))})
        else:
            pv.update({name: float(val)})
    return pv


def _scaled_by(func, factor: float):
    def scaled(*args):
        return func(*args) * factor

    return scaled


def experiment(n_cycles: int, charge_c_rate: float, discharge_c_rate: float, v_min: float = 2.5,
               v_max: float = 4.2, rest_min: float = 10.0, period_s: float = 30.0):
    import pybamm

    cycle = (f"Charge at {charge_c_rate}C until {v_max} V",
             f"Hold at {v_max} V until C/20",
             f"Rest for {rest_min} minutes",
             f"Discharge at {discharge_c_rate}C until {v_min} V",
             f"Rest for {rest_min} minutes")
    return pybamm.Experiment([cycle] * int(n_cycles), period=f"{period_s} seconds")


def run_life(cell_values: Mapping[str, float], nominal: Mapping[str, float], n_cycles: int,
             ambient_c: float, charge_c_rate: float = 1.0, discharge_c_rate: float = 1.0,
             model_cfg: ModelConfig | None = None, period_s: float = 30.0, chunk: int = 25,
             cell: int = 0):
    """Age one cell ``n_cycles`` cycles at ``ambient_c`` and return its per-cycle Dataset.

    ``cell_values`` are the cell's true parameter values keyed like ``packtwin.schema.PARAMETERS``
    (one entry of ``draw_cells``), ``nominal`` the values they vary around.

    Raises:
        RuntimeError: PyBaMM stopped before ``n_cycles`` cycles (the message names the cycle and
            PyBaMM's termination reason; the finished cycles are in ``exc.partial``).
    """
    if n_cycles < 1 or chunk < 1:
        raise ValueError(f"run_life: n_cycles and chunk must be >= 1, got {n_cycles}, {chunk}")
    unknown = sorted(set(cell_values) - set(schema.PARAMETERS))
    if unknown:
        raise ValueError(f"run_life: unknown cell parameter keys {unknown}; expected keys of "
                         f"packtwin.schema.PARAMETERS")
    import pybamm

    model_cfg = model_cfg or coarse_model_config()
    pv = cell_parameter_values(model_cfg, cell_values, nominal)
    ambient_k = ambient_c + 273.15
    pv.update({"Ambient temperature [K]": ambient_k, "Initial temperature [K]": ambient_k})
    model = getattr(pybamm.lithium_ion, model_cfg.model)(dict(model_cfg.options))
    from packtwin.sim.cell import submesh_types

    rows: list[dict] = []
    start = None
    done = 0
    sim = None
    while done < n_cycles:
        k = min(chunk, n_cycles - done)
        sim = pybamm.Simulation(model, parameter_values=pv, var_pts=dict(model_cfg.var_pts),
                                submesh_types=submesh_types(model, model_cfg.submesh),
                                experiment=experiment(k, charge_c_rate, discharge_c_rate,
                                                      period_s=period_s),
                                solver=pybamm.IDAKLUSolver(output_variables=list(OUTPUTS)))
        sol = sim.solve(starting_solution=start, initial_soc=None)
        cycles = sol.cycles[-k:] if start is not None else sol.cycles
        finished = [c for c in cycles if c is not None and len(c.steps) == 5]
        for c in finished:
            rows.append(_cycle_row(c, period_s))
        done += len(finished)
        if len(finished) < k:
            err = RuntimeError(f"run_life: PyBaMM stopped in cycle {done + 1} of {n_cycles} "
                               f"(ambient {ambient_c} degC, cell {cell}): {sol.termination}")
            err.partial = _dataset(rows, ambient_c, charge_c_rate, discharge_c_rate, period_s,
                                   cell, cell_values)
            raise err
        start = sol.last_state
    return _dataset(rows, ambient_c, charge_c_rate, discharge_c_rate, period_s, cell, cell_values)


def _cycle_row(c, period_s: float) -> dict:
    t = np.asarray(c["Time [s]"].entries, dtype=float)
    i = np.asarray(c["Current [A]"].entries, dtype=float)
    v = np.asarray(c["Voltage [V]"].entries, dtype=float)
    temp = np.asarray(c[T_CELL].entries, dtype=float)
    # Resample on a uniform grid from the cycle start: the store's sample convention.
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) / period_s)) + 1) * period_s
    rest, dis = c.steps[2], c.steps[3]
    q = np.asarray(dis["Discharge capacity [A.h]"].entries, dtype=float)
    # A cycler logs at every step change: the voltage step when the discharge current starts
    # (the DAE's consistent start is the instantaneous response: ohmic + charge transfer + film).
    v_rest = float(np.asarray(rest["Voltage [V]"].entries)[-1])
    v_on = float(np.asarray(dis["Voltage [V]"].entries)[0])
    i_on = float(np.asarray(dis["Current [A]"].entries)[0])
    return {
        "voltage": np.interp(grid, t, v), "current": np.interp(grid, t, i),
        "temperature": np.interp(grid, t, temp),
        "capacity": float(q[-1] - q[0]),
        "lli": float(np.asarray(c[LLI].entries)[-1]),
        "sei": float(np.asarray(c[SEI_AVG].entries)[-1]) * 1e9,
        "plated": float(np.asarray(c[PLATED].entries)[-1]),
        "tmax": float(temp.max()),
        "resistance": (v_rest - v_on) / i_on,
    }


def _dataset(rows, ambient_c, charge_c_rate, discharge_c_rate, period_s, cell, cell_values):
    import xarray as xr

    n = len(rows)
    n_t = max((len(r["voltage"]) for r in rows), default=1)
    pad = np.full((1, 1, n, n_t), np.nan)
    series = {}
    for src, name in (("voltage", "life_voltage"), ("current", "life_current"),
                      ("temperature", "life_temperature")):
        arr = pad.copy()
        for j, r in enumerate(rows):
            arr[0, 0, j, :len(r[src])] = r[src]
        series[name] = arr
    summ = {"capacity": "capacity", "lli": "lli", "sei": "sei_thickness_end",
            "plated": "plated_lithium_end", "tmax": "temperature_max",
            "resistance": "life_resistance"}
    data = {name: (schema.SUMMARY_DIMS, np.array([[[r[src] for r in rows]]], dtype=float))
            for src, name in summ.items()}
    data.update({name: (schema.LIFE_SERIES_DIMS, arr) for name, arr in series.items()})
    for key, val in cell_values.items():
        data[schema.param_var(key)] = ((schema.CELL,), np.array([float(val)]))
    ds = xr.Dataset(data, coords={
        schema.SCENARIO: [0], schema.CELL: [int(cell)],
        schema.CYCLE: np.arange(1, n + 1, dtype="int32"),
        schema.TIME: np.arange(n_t) * float(period_s),
        "ambient_temperature": (schema.SCENARIO, [float(ambient_c)]),
        "charge_c_rate": (schema.SCENARIO, [float(charge_c_rate)]),
        "discharge_c_rate": (schema.SCENARIO, [float(discharge_c_rate)]),
    })
    ds.attrs.update({"schema_version": schema.SCHEMA_VERSION, "period_s": float(period_s),
                     "protocol": "CC charge, CV to C/20, rest, CC discharge, rest"})
    return schema.apply_attrs(ds)
