"""The check-up pulse's film gain in PyBaMM: how much of kappa x (SEI grown) a pulse reads.

The life twin reads each check-up pulse's resistance rise as SEI film (README "A pulse that sees
the film"). kappa = rho_SEI / (a L_n A) is the film's resistance per thickness were the current
spread evenly over the electrode's surface. In the DFN the 0.1 s pulse reads a little more of it,
and less so when hot: on the nominal OKane2022 cell, 20 nm more SEI raise the reading by
1.021-1.024 kappa x 20 nm at 25 degC and 1.006-1.010 at 45 degC on four meshes (8 or 30 radial
points, 5 or 20 through the negative electrode; scripts/diag_pulse_gain.py, stop 44); every cell
of the life-long pack with its own parameters reads 1.013-1.021 / 1.005-1.008 of kappa x its
surface-area ratio (scripts/diag_pulse_cells.py). Read with kappa alone, a 25 degC cell's pulses
overstate its film by ~2 %, ~0.5 nm over 1000 cycles.

So the twin divides a pulse's rise by gain(T) x kappa, the gain computed here on the NOMINAL cell
(the twin's own cell model: the store's parameter set, options and overrides, on a mesh of its
own, not the store's) at each run's measured temperature and the pulse's protocol; nothing is
fitted to a store's truth. Two PyBaMM solves per temperature (~4-8 CPU-s each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from packtwin.errors import PacktwinError

# The twin's mesh for the gain, not the store's: finer than the life presets' (the gain moves by
# <= 0.4 % between 8 and 30 radial points and 5 and 20 through the negative electrode).
GAIN_VAR_PTS = {"x_n": 20, "x_s": 6, "x_p": 12, "r_n": 30, "r_p": 30}
GAIN_SUBMESH = {"r_n": {"type": "exponential", "side": "right"},
                "r_p": {"type": "exponential", "side": "right"}}
BASE_SEI_M = 5e-9  # the film the gain is taken from (OKane2022's initial SEI) ...
FILM_STEP_M = 20e-9  # ... and its step: ~1 mOhm of rise, far above the solver's noise
LEAD_S = 300.0  # the check-up current held before the pulse (the reading is taken after it)
TEMPERATURE_STEP_K = 0.5  # runs whose temperatures round to the same step share one gain


class PulseGainError(PacktwinError, ValueError):
    """A store's pulses cannot be given a film gain (no pulse protocol or cell model recorded)."""


@dataclass(frozen=True)
class PulseProtocol:
    """Where and how a check-up reads its pulse (the generator's protocol fields)."""

    checkup_c_rate: float
    pulse_c_rate: float
    pulse_s: float
    pulse_at: float  # fraction of the nominal capacity discharged from the top of charge


@dataclass(frozen=True)
class CellModelSpec:
    """The twin's nominal cell for the gain: PyBaMM model, parameter set, options, overrides."""

    model: str
    parameter_set: str
    options_json: str
    overrides_json: str


def of_store(ds, source: str = "store") -> tuple[PulseProtocol, CellModelSpec]:
    """The pulse protocol and the nominal cell model a generated store records
    (``attrs["generator_config"]``); a clear error naming the store where it does not."""
    raw = ds.attrs.get("generator_config")
    if raw is None:
        raise PulseGainError(
            f"{source}: has check-up pulses but no 'generator_config' attribute, so the pulse's "
            f"protocol and cell model are unknown and its film gain cannot be computed; set "
            f"life.pulse_gain to a number (1.0: kappa alone)")
    return of_generator_config(json.loads(raw) if isinstance(raw, str) else dict(raw), source)


def of_generator_config(cfg: dict, source: str = "config") -> tuple[PulseProtocol, CellModelSpec]:
    """The pulse protocol and nominal cell model of a generator config dict
    (``packtwin.sim.config.to_dict``, as a store's ``attrs["generator_config"]`` holds it)."""
    try:
        p, m = cfg["protocol"], cfg["model"]
        protocol = PulseProtocol(float(p["checkup_c_rate"]), float(p["checkup_pulse_c_rate"]),
                                 float(p["checkup_pulse_s"]), float(p["checkup_pulse_at"]))
        spec = CellModelSpec(str(m["model"]), str(m["parameter_set"]),
                             json.dumps(m.get("options") or {}, sort_keys=True),
                             json.dumps(m.get("parameter_overrides") or {}, sort_keys=True))
    except KeyError as exc:
        raise PulseGainError(f"{source}: the generator config lacks {exc} (needed for the "
                             f"pulse's film gain; found keys {sorted(cfg)})") from None
    if protocol.pulse_c_rate <= 0:
        raise PulseGainError(f"{source}: the generator config's protocol has no check-up pulse "
                             f"(checkup_pulse_c_rate = {protocol.pulse_c_rate})")
    return protocol, spec


def step_resistance(model, pv, lead_c_rate: float, lead_s: float, pulse_c_rate: float,
                    pulse_s: float, var_pts: dict, submesh: dict | None = None,
                    initial_soc: float | None = None) -> float:
    """Resistance [Ohm] of a current step in PyBaMM, read as the generator reads a check-up
    pulse: the voltage drop over the current step, both at their instants, after ``lead_s`` [s]
    at ``lead_c_rate`` and ``pulse_s`` [s] at ``pulse_c_rate``. ``model``: a PyBaMM model;
    ``pv``: its parameter values; ``submesh``: a generator config's ``model.submesh`` (None:
    the model's own); ``initial_soc``: None starts from the parameter set's concentrations.
    The one reading behind the gain, the pulse diagnostics and the pulse tests."""
    import pybamm

    from packtwin.sim.cell import submesh_types

    exp = pybamm.Experiment([(
        f"Discharge at {lead_c_rate}C for {lead_s / 60.0} minutes (60 second period)",
        f"Discharge at {pulse_c_rate}C for {pulse_s} seconds ({pulse_s} second period)")])
    sim = pybamm.Simulation(model, parameter_values=pv, experiment=exp, var_pts=var_pts,
                            submesh_types=submesh_types(model, submesh or {}))
    sol = sim.solve() if initial_soc is None else sim.solve(initial_soc=initial_soc)
    before, pulse = sol.cycles[0].steps
    v0, i0 = before["Voltage [V]"].entries[-1], before["Current [A]"].entries[-1]
    v1, i1 = pulse["Voltage [V]"].entries[-1], pulse["Current [A]"].entries[-1]
    return float((v0 - v1) / (i1 - i0))


def pulse_resistance(temperature_k: float, sei_m: float, protocol: PulseProtocol,
                     spec: CellModelSpec, var_pts: dict | None = None,
                     submesh: dict | None = None) -> float:
    """The nominal cell's pulse resistance [Ohm] read as the generator reads it (voltage drop over
    current step, both at their instants), ``LEAD_S`` at the check-up rate after the state of
    charge where the pulse falls; on GAIN_VAR_PTS / GAIN_SUBMESH unless given."""
    import pybamm

    pv = pybamm.ParameterValues(spec.parameter_set)
    pv.update(json.loads(spec.overrides_json), check_already_exists=False)
    pv.update({"Ambient temperature [K]": temperature_k, "Initial temperature [K]": temperature_k,
               "Initial SEI thickness [m]": sei_m})
    model = getattr(pybamm.lithium_ion, spec.model)(json.loads(spec.options_json))
    soc = 1.0 - protocol.pulse_at + protocol.checkup_c_rate * LEAD_S / 3600.0
    return step_resistance(model, pv, protocol.checkup_c_rate, LEAD_S, protocol.pulse_c_rate,
                           protocol.pulse_s, var_pts or GAIN_VAR_PTS,
                           GAIN_SUBMESH if submesh is None else submesh, initial_soc=soc)


@lru_cache(maxsize=32)
def film_gain(temperature_k: float, protocol: PulseProtocol, spec: CellModelSpec,
              kappa: float) -> float:
    """d(pulse resistance) / d(kappa x SEI thickness) of the nominal cell at ``temperature_k``:
    the rise of FILM_STEP_M more SEI over kappa x FILM_STEP_M."""
    r0 = pulse_resistance(temperature_k, BASE_SEI_M, protocol, spec)
    r1 = pulse_resistance(temperature_k, BASE_SEI_M + FILM_STEP_M, protocol, spec)
    return (r1 - r0) / (kappa * FILM_STEP_M)


def run_temperatures(ds) -> np.ndarray:
    """Each run's measured temperature on its check-up cycles [K] (scenario, cell): the median of
    ``life_temperature`` over them (NaN where a run has none)."""
    missing = [v for v in ("life_temperature", "checkup") if v not in ds.variables]
    if missing:
        raise PulseGainError(f"the pulse's film gain needs each run's measured temperature on its "
                             f"check-ups; the store lacks {missing}")
    T = ds["life_temperature"].values.astype(float)  # (scenario, cell, cycle, time)
    ck = ds["checkup"].values == 1
    out = np.full(T.shape[:2], np.nan)
    for s, c in np.ndindex(*out.shape):
        vals = T[s, c][ck[s, c]]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[s, c] = float(np.median(vals))
    return out


def store_gains(ds, kappa: float, source: str = "store") -> np.ndarray:
    """The film gain of every run of a store with check-up pulses (scenario, cell), from its
    measured check-up temperature rounded to TEMPERATURE_STEP_K (1.0 where a run has none)."""
    protocol, spec = of_store(ds, source)
    T = run_temperatures(ds)
    gains = np.ones(T.shape)
    for idx in np.ndindex(*T.shape):
        if np.isfinite(T[idx]):
            t = round(float(T[idx]) / TEMPERATURE_STEP_K) * TEMPERATURE_STEP_K
            gains[idx] = film_gain(t, protocol, spec, float(kappa))
    return gains
