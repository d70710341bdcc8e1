"""The data contract of packtwin: every dimension, variable, unit and PyBaMM name, declared once.

A *truth store* (written by ``packtwin generate``) and a *prediction store* (written by
``packtwin predict``) share these declarations. Everything else imports names from here; no other
module spells a variable name, unit or PyBaMM name as a literal.

Layout of a truth store
-----------------------
Dimensions
  scenario  one operating condition: ambient temperature, charge/discharge C-rate, protocol family
  cell      integer cell index in the pack (``series_index``/``parallel_index`` give its position)
  snapshot  a cycle whose full spatial fields are stored (its number is ``snapshot_cycle``)
  time      sample index inside a snapshot cycle, uniform period ``attrs["period_s"]``
  cycle     every simulated cycle (per-cycle summaries live here)
  x_n, x_p  through-thickness positions in each electrode [m]
  x         through-thickness positions of the electrolyte across negative/separator/positive [m]
  r_n, r_p  radial position in the particle as a fraction of that cell's particle radius [1]

Cycles of different length (0.5C lasts hours, 5C minutes) share one padded ``time`` axis: samples
after the end of a cycle are NaN and ``valid`` (scenario, snapshot, time) is 0 there. All cells of a
pack are solved together, so they share one time grid per scenario and snapshot.

Radial coordinates are normalised (r / R) because particle radius varies from cell to cell while
the stored grid must be common to all cells; each cell's radius is in its parameter table.

A *measured store* (written by ``packtwin ingest`` from a pack's log) has the same dims with one
scenario and one snapshot, only the measured variables, ``valid`` and the pack signals, no hidden
variable and no parameter table, and provenance attrs (``MEASURED_ATTRS``).

An *estimate store* (written by ``packtwin estimate``) is a prediction store aligned with any
input store, measured or simulated: the ensemble mean of each estimate under its own name, its
spread over the ensemble as ``<name>_std`` (:func:`std_var`, same dims and units), and
``ESTIMATE_ATTRS``.

Sign convention (PyBaMM's): current > 0 is discharge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from packtwin.errors import PacktwinError

SCHEMA_VERSION = "1.0"

# ----------------------------------------------------------------------------------------------
# Dimensions
# ----------------------------------------------------------------------------------------------
SCENARIO = "scenario"
CELL = "cell"
SNAPSHOT = "snapshot"
TIME = "time"
CYCLE = "cycle"
X_N, X_P, X = "x_n", "x_p", "x"
R_N, R_P = "r_n", "r_p"

DIMS: dict[str, str] = {
    SCENARIO: "operating scenario (ambient temperature, C-rates, protocol)",
    CELL: "cell index in the pack",
    SNAPSHOT: "snapshot cycle with full spatial fields",
    TIME: "sample index within a snapshot cycle (uniform period, padded)",
    CYCLE: "every simulated cycle (per-cycle summaries)",
    X_N: "position through the negative electrode",
    X_P: "position through the positive electrode",
    X: "position through negative electrode, separator and positive electrode",
    R_N: "radial position in a negative particle, fraction of its radius",
    R_P: "radial position in a positive particle, fraction of its radius",
}

# Protocol families, stored as integer codes with CF flag attributes (string coordinates cannot grow).
PROTOCOLS: tuple[str, ...] = ("cccv", "pulse")

# How a stored current sample relates to the current between samples (attrs["current_convention"]
# of every store): the mean over the period, so the charge passed is a plain right sum.
CURRENT_CONVENTION = ("current[k] is the mean current of the period ending at sample k (charge is "
                      "exact as a right sum); discharge > 0")

# Status codes of a scenario (float so that unwritten chunks read NaN = "not done yet").
STATUS_OK = 1.0
STATUS_FAILED = 0.0
STATUS_PARTIAL = 2.0  # solved, but stopped before all cycles (reason in attrs["messages"])


@dataclass(frozen=True)
class Coord:
    name: str
    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str = "float64"
    flags: tuple[str, ...] = ()  # CF flag_meanings for integer-coded categories


@dataclass(frozen=True)
class Var:
    """One stored variable.

    ``pybamm`` is the PyBaMM variable it is read from and ``scale`` converts PyBaMM's units to the
    stored ``units`` (stored = pybamm * scale). ``kind`` says what a twin may use it for:
    ``measured`` (an input), ``instant`` (an input of the observers' measurement model only,
    :data:`ADDED_INSTANT`), ``hidden`` (a target), ``pack``, ``summary``, ``meta``.
    """

    name: str
    dims: tuple[str, ...]
    units: str
    long_name: str
    kind: str
    pybamm: str | None = None
    scale: float = 1.0
    dtype: str = "float32"
    bounds: tuple[float | None, float | None] = (None, None)
    description: str = ""


T4 = (SCENARIO, CELL, SNAPSHOT, TIME)
SUMMARY_DIMS = (SCENARIO, CELL, CYCLE)

COORDS: dict[str, Coord] = {c.name: c for c in (
    Coord("ambient_temperature", (SCENARIO,), "degC", "Ambient temperature"),
    Coord("charge_c_rate", (SCENARIO,), "C", "Charge C-rate"),
    Coord("discharge_c_rate", (SCENARIO,), "C", "Discharge C-rate"),
    Coord("protocol", (SCENARIO,), "1", "Protocol family", dtype="int8", flags=PROTOCOLS),
    Coord("series_index", (CELL,), "1", "Position in the series string", dtype="int32"),
    Coord("parallel_index", (CELL,), "1", "Position in the parallel group", dtype="int32"),
    Coord("snapshot_cycle", (SNAPSHOT,), "1", "Cycle number of the snapshot", dtype="int32"),
    Coord(TIME, (TIME,), "s", "Time since the start of the cycle"),
    Coord(CYCLE, (CYCLE,), "1", "Cycle number", dtype="int32"),
    Coord(X_N, (X_N,), "m", "Position in negative electrode"),
    Coord(X_P, (X_P,), "m", "Position in positive electrode"),
    Coord(X, (X,), "m", "Position across the cell"),
    Coord(R_N, (R_N,), "1", "Normalised radius in negative particle"),
    Coord(R_P, (R_P,), "1", "Normalised radius in positive particle"),
)}

VARIABLES: dict[str, Var] = {v.name: v for v in (
    # --- measurable signals: the only inputs a twin may use -----------------------------------
    Var("voltage", T4, "V", "Terminal voltage", "measured", "Voltage [V]", bounds=(0.0, 5.0)),
    Var("current", T4, "A", "Cell current (discharge > 0)", "measured", "Current [A]"),
    Var("current_end", T4, "A", "Cell current at the sample's instant (discharge > 0)",
        "instant", "Current [A]",
        description="'current' is the mean over the period ending at the sample (the charge "
                    "passed); this is the current at the sample's instant, when the voltage is "
                    "read. They differ only in a period where the mode switches (a cut-off "
                    "inside it: the discharge's current, then rest). A filter advances its state "
                    "with the mean and reads the voltage at this one; a BMS log samples "
                    "instants, so without this variable 'current' serves as both."),
    Var("temperature", T4, "K", "Cell temperature", "measured",
        "Volume-averaged cell temperature [K]", bounds=(200.0, 450.0),
        description="Measured temperature. With the lumped thermal model and the 'ambient' surface "
                    "option PyBaMM's surface temperature equals ambient, so the volume-averaged "
                    "cell temperature stands in for a surface thermocouple."),
    # --- hidden states: targets, never inputs ---------------------------------------------------
    Var("c_s_n", T4 + (X_N, R_N), "mol/m3", "Negative particle concentration", "hidden",
        "Negative particle concentration [mol.m-3]", bounds=(0.0, None)),
    Var("c_s_p", T4 + (X_P, R_P), "mol/m3", "Positive particle concentration", "hidden",
        "Positive particle concentration [mol.m-3]", bounds=(0.0, None)),
    Var("c_e", T4 + (X,), "mol/m3", "Electrolyte concentration", "hidden",
        "Electrolyte concentration [mol.m-3]", bounds=(0.0, None)),
    Var("sei_thickness", T4 + (X_N,), "nm", "SEI thickness", "hidden",
        "Negative SEI thickness [m]", scale=1e9, bounds=(0.0, None)),
    Var("sei_thickness_avg", T4, "nm", "X-averaged SEI thickness", "hidden",
        "X-averaged negative SEI thickness [m]", scale=1e9, bounds=(0.0, None)),
    Var("plated_lithium", T4, "mol/m3", "X-averaged plated lithium concentration", "hidden",
        "X-averaged negative lithium plating concentration [mol.m-3]", bounds=(0.0, None)),
    Var("plating_margin", T4, "V", "Negative electrode potential vs Li at the separator", "hidden",
        "Negative electrode surface potential difference at separator interface [V]",
        description="phi_s - phi_e of the negative electrode at the separator side; below 0 V "
                    "lithium plating is thermodynamically possible."),
    Var("soc", T4, "1", "State of charge", "hidden", None, bounds=(-0.05, 1.05),
        description="(theta_n - theta_n0) / (theta_n100 - theta_n0) with theta_n the negative "
                    "electrode's volume-averaged stoichiometry and the 0 %/100 % stoichiometries "
                    "of the fresh cell from PyBaMM's electrode state-of-health solver."),
    # --- pack-level signals ---------------------------------------------------------------------
    Var("pack_voltage", (SCENARIO, SNAPSHOT, TIME), "V", "Pack terminal voltage", "pack"),
    Var("pack_current", (SCENARIO, SNAPSHOT, TIME), "A", "Pack current (discharge > 0)", "pack"),
    Var("valid", (SCENARIO, SNAPSHOT, TIME), "1", "Sample inside the cycle", "meta",
        dtype="uint8", description="1 where the snapshot cycle has data, 0 in the padding."),
    # --- per-cycle summaries for every cycle ----------------------------------------------------
    Var("capacity", SUMMARY_DIMS, "A.h", "Discharge capacity of the cycle", "summary",
        bounds=(0.0, None)),
    Var("lli", SUMMARY_DIMS, "%", "Loss of lithium inventory", "summary",
        "Loss of lithium inventory [%]"),
    Var("sei_thickness_end", SUMMARY_DIMS, "nm", "X-averaged SEI thickness at cycle end",
        "summary", "X-averaged negative SEI thickness [m]", scale=1e9, bounds=(0.0, None)),
    Var("plated_lithium_end", SUMMARY_DIMS, "mol/m3", "Plated lithium at cycle end", "summary",
        "X-averaged negative lithium plating concentration [mol.m-3]", bounds=(0.0, None)),
    Var("temperature_max", SUMMARY_DIMS, "K", "Maximum cell temperature in the cycle", "summary",
        "Volume-averaged cell temperature [K]"),
    Var("plating_margin_min", SUMMARY_DIMS, "V", "Lowest plating margin in the cycle", "summary",
        "Negative electrode surface potential difference at separator interface [V]",
        description="Minimum of plating_margin (phi_s - phi_e of the negative electrode at the "
                    "separator) over the cycle's stored samples (every period_s, sample 0 "
                    "included); below 0 V lithium plating is thermodynamically possible."),
    Var("plating_event", SUMMARY_DIMS, "1", "Plating event in the cycle", "summary",
        "Negative electrode surface potential difference at separator interface [V]",
        bounds=(0.0, 1.0),
        description="1 where plating_margin_min < 0 V (PyBaMM's margin went below 0 V at a stored "
                    "sample of the cycle), 0 where it did not, NaN where the cycle was not run."),
    # --- bookkeeping ------------------------------------------------------------------------------
    Var("status", (SCENARIO,), "1", "Scenario status", "meta", dtype="float32",
        description="NaN: not solved yet; 1: ok; 0: failed; 2: partial. Reasons in "
                    "attrs['messages'] keyed by scenario index."),
    Var("cycles_done", (SCENARIO,), "1", "Cycles completed", "meta", dtype="float32"),
)}

# ----------------------------------------------------------------------------------------------
# Life data (``packtwin.sim.life_reference``) and the twin over life (``packtwin.physics.life_state``):
# one cell aged cycle after cycle. Kept out of VARIABLES so truth stores do not change shape; the
# per-cycle summaries above (capacity, lli, sei_thickness_end, ...) are shared with them.
# ----------------------------------------------------------------------------------------------
LIFE_SERIES_DIMS = (SCENARIO, CELL, CYCLE, TIME)

LIFE_VARIABLES: dict[str, Var] = {v.name: v for v in (
    Var("life_voltage", LIFE_SERIES_DIMS, "V", "Terminal voltage in each life cycle", "life",
        "Voltage [V]", bounds=(0.0, 5.0),
        description="Measured; uniform period attrs['period_s'] from the cycle start, NaN after "
                    "the cycle's end."),
    Var("life_current", LIFE_SERIES_DIMS, "A", "Cell current in each life cycle (discharge > 0)",
        "life", "Current [A]"),
    Var("life_temperature", LIFE_SERIES_DIMS, "K", "Cell temperature in each life cycle", "life",
        "Volume-averaged cell temperature [K]", bounds=(200.0, 450.0)),
    Var("life_resistance", SUMMARY_DIMS, "Ohm", "Resistance at the start of each discharge",
        "life", description="Measured: (voltage at the end of the rest before the discharge - "
                            "voltage once the discharge current flows) / that current, logged at "
                            "the step change as cyclers do."),
    Var("checkup", SUMMARY_DIMS, "1", "Check-up cycle", "life",
        description="1: a slow capacity test (CC discharge at the generator's "
                    "protocol.checkup_c_rate after a full charge), 0: a regular cycle of the "
                    "scenario; NaN: not run. Capacities of the two kinds are not comparable."),
    Var("checkup_pulse_resistance", SUMMARY_DIMS, "Ohm", "Resistance of the check-up's pulse",
        "life", bounds=(0.0, None),
        description="Measured: (voltage just before the pulse - voltage at the pulse's end) / "
                    "(current at the pulse's end - current before), both at their instants; the "
                    "pulse (attrs of the generator config: protocol.checkup_pulse_c_rate for "
                    "protocol.checkup_pulse_s) steps the pack current up inside one storage period "
                    "of each check-up's slow discharge, as a lab's HPPC test. NaN on regular "
                    "cycles."),
    Var("checkup_lithium", SUMMARY_DIMS, "mol", "Lithium in the particles read from a check-up",
        "life", bounds=(0.0, None),
        description="From V/I of each check-up's slow discharge, an OCV fit with the nominal "
                    "electrodes (packtwin.physics.checkup_inventory); NaN on regular cycles."),
    Var("sei_thickness_est", SUMMARY_DIMS, "nm", "Estimated x-averaged SEI thickness at cycle end",
        "estimate", bounds=(0.0, None)),
    Var("lli_est", SUMMARY_DIMS, "%", "Estimated loss of lithium inventory", "estimate"),
    Var("capacity_est", SUMMARY_DIMS, "A.h", "Estimated discharge capacity of the cycle",
        "estimate", bounds=(0.0, None)),
    Var("sei_diffusivity_est", SUMMARY_DIMS, "m2/s", "Estimated SEI solvent diffusivity "
        "(per-cell SEI rate) after the cycle", "estimate", bounds=(0.0, None)),
    Var("plating_event_est", SUMMARY_DIMS, "1", "Estimated plating event in the cycle", "estimate",
        bounds=(0.0, 1.0), description="1 where plating_margin_min_est < 0 V "
                                       "(packtwin.physics.plating)."),
    Var("plating_margin_min_est", SUMMARY_DIMS, "V", "Estimated lowest plating margin in the cycle",
        "estimate"),
    Var("plated_lithium_end_est", SUMMARY_DIMS, "mol/m3", "Estimated plated lithium at cycle end",
        "estimate", bounds=(0.0, None)),
)}

# Per-cycle summaries added after stores were first written (issue 10): a truth store made
# before lacks them and still validates; what needs them asks :func:`require_summaries`.
ADDED_SUMMARIES = ("plating_margin_min", "plating_event")

# Measured at the sample's instant, added after stores were first written (issue 9's voltage at
# cut-offs): a store made before lacks them and still validates; readers fall back to 'current'.
ADDED_INSTANT = ("current_end",)

MEASURED = tuple(n for n, v in VARIABLES.items() if v.kind == "measured")
HIDDEN = tuple(n for n, v in VARIABLES.items() if v.kind == "hidden")


# ----------------------------------------------------------------------------------------------
# Per-cell parameters: the cell-to-cell variation the generator draws and the twin identifies
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    key: str
    pybamm: str
    units: str
    long_name: str


PARAM_PREFIX = "param_"

PARAMETERS: dict[str, Param] = {p.key: p for p in (
    Param("neg_am_fraction", "Negative electrode active material volume fraction", "1",
          "Negative active-material fraction"),
    Param("pos_am_fraction", "Positive electrode active material volume fraction", "1",
          "Positive active-material fraction"),
    Param("neg_c_init", "Initial concentration in negative electrode [mol.m-3]", "mol/m3",
          "Initial negative concentration (lithium inventory)"),
    Param("neg_diffusivity", "Negative particle diffusivity [m2.s-1]", "m2/s",
          "Negative particle diffusivity"),
    Param("pos_diffusivity", "Positive particle diffusivity [m2.s-1]", "m2/s",
          "Positive particle diffusivity"),
    Param("neg_radius", "Negative particle radius [m]", "m", "Negative particle radius"),
    Param("pos_radius", "Positive particle radius [m]", "m", "Positive particle radius"),
    Param("neg_j0", "Negative electrode exchange-current density [A.m-2]", "A/m2",
          "Negative exchange-current density scale"),
    Param("pos_j0", "Positive electrode exchange-current density [A.m-2]", "A/m2",
          "Positive exchange-current density scale"),
    Param("contact_resistance", "Contact resistance [Ohm]", "Ohm", "Contact resistance"),
    Param("sei_solvent_diffusivity", "SEI solvent diffusivity [m2.s-1]", "m2/s",
          "SEI solvent diffusivity (SEI growth rate)"),
    Param("sei_rate_constant", "SEI kinetic rate constant [m.s-1]", "m/s",
          "SEI kinetic rate constant"),
)}


def instant_current(ds) -> str:
    """The variable holding each sample's instant current in ``ds`` (a store or a selection of
    one): ``current_end`` where the store has it, else ``current``, the period's mean, which
    stores written before :data:`ADDED_INSTANT` are read with."""
    return "current_end" if "current_end" in ds.variables else "current"


def param_var(key: str) -> str:
    """Name of the per-cell truth-table variable of a parameter key."""
    if key not in PARAMETERS:
        raise KeyError(f"unknown parameter key {key!r}; known: {sorted(PARAMETERS)}")
    return PARAM_PREFIX + key


def param_keys_in(ds) -> list[str]:
    """Parameter keys present as per-cell truth-table variables in a dataset."""
    return [k for k in PARAMETERS if PARAM_PREFIX + k in ds.variables]


# Store-level attributes every truth store carries.
REQUIRED_ATTRS = (
    "schema_version", "pybamm_version", "parameter_set", "model", "model_options", "seed",
    "generator_config", "n_series", "n_parallel", "period_s", "nominal_capacity_ah",
)


# Store-level attributes every measured-only store (``packtwin ingest``) carries: the pack, the
# grid, and where the numbers came from (JSON strings for the lists/dicts).
MEASURED_ATTRS = (
    "schema_version", "store_kind", "n_series", "n_parallel", "period_s", "source_files",
    "source_format", "ingested_at", "packtwin_version", "units", "repairs", "assumptions",
)
# Scenario coordinates a measured log has no value for (it was not run from a cycler protocol).
MEASURED_OPTIONAL_COORDS = ("charge_c_rate", "discharge_c_rate", "protocol")


# ----------------------------------------------------------------------------------------------
# Uncertainty of an estimate (``packtwin estimate`` with several checkpoints)
# ----------------------------------------------------------------------------------------------
STD_SUFFIX = "_std"
STD_DESCRIPTION = ("Sample standard deviation (ddof=1) of this estimate over the ensemble "
                   "members (checkpoints trained with different seeds); the band and its nominal "
                   "coverage are in the store's attrs 'uncertainty'.")

# Store-level attributes every estimate store carries (JSON strings for the lists/dicts).
ESTIMATE_ATTRS = (
    "schema_version", "variant", "checkpoints", "input_store", "input_kind", "ensemble_size",
    "uncertainty", "embedding_fit",
)


def std_var(name: str) -> str:
    """Name of the ensemble spread of an estimated variable (``soc`` -> ``soc_std``)."""
    var_attrs(name)  # a declared variable or parameter, else KeyError
    return name + STD_SUFFIX


def std_base(name: str) -> str | None:
    """The declared variable whose ensemble spread ``name`` is (None: not a spread)."""
    if not name.endswith(STD_SUFFIX):
        return None
    base = name[:-len(STD_SUFFIX)]
    declared = base in VARIABLES or (base.startswith(PARAM_PREFIX)
                                     and base[len(PARAM_PREFIX):] in PARAMETERS)
    return base if declared else None


def declared_dims(name: str) -> tuple[str, ...]:
    """Dims of a declared variable, parameter (``(cell,)``) or ensemble spread."""
    base = std_base(name) or name
    if base in VARIABLES:
        return VARIABLES[base].dims
    var_attrs(base)  # KeyError if undeclared
    return (CELL,)


class SchemaError(PacktwinError, ValueError):
    """A dataset does not follow the packtwin schema; the message lists every problem."""

    def __init__(self, problems: Sequence[str], source: str = "dataset"):
        self.problems = list(problems)
        super().__init__(f"{source} does not follow the packtwin schema "
                         f"(v{SCHEMA_VERSION}):\n  - " + "\n  - ".join(self.problems))


# ----------------------------------------------------------------------------------------------
# Attributes and validation
# ----------------------------------------------------------------------------------------------
def var_attrs(name: str) -> dict:
    """xarray attrs (units, long_name, PyBaMM name) of a declared variable or coordinate."""
    if name in VARIABLES or name in LIFE_VARIABLES:
        v = VARIABLES.get(name) or LIFE_VARIABLES[name]
        attrs = {"units": v.units, "long_name": v.long_name, "kind": v.kind}
        if v.pybamm:
            attrs["pybamm_name"] = v.pybamm
        if v.description:
            attrs["description"] = v.description
        return attrs
    if name in COORDS:
        c = COORDS[name]
        attrs = {"units": c.units, "long_name": c.long_name}
        if c.flags:
            attrs["flag_values"] = list(range(len(c.flags)))
            attrs["flag_meanings"] = " ".join(c.flags)
        return attrs
    base = std_base(name)
    if base is not None:
        a = var_attrs(base)
        return {"units": a["units"], "long_name": f"{a['long_name']}: ensemble spread",
                "kind": "uncertainty", "description": STD_DESCRIPTION}
    if name.startswith(PARAM_PREFIX) and name[len(PARAM_PREFIX):] in PARAMETERS:
        p = PARAMETERS[name[len(PARAM_PREFIX):]]
        return {"units": p.units, "long_name": p.long_name, "pybamm_name": p.pybamm,
                "kind": "param"}
    raise KeyError(f"{name!r} is not declared in packtwin.schema")


def units(name: str) -> str:
    return var_attrs(name)["units"]


def label(name: str) -> str:
    """Axis label with units, e.g. 'Terminal voltage [V]' (used by plots and reports)."""
    a = var_attrs(name)
    return f"{a['long_name']} [{a['units']}]"


def validate(ds, kind: str = "truth", variables: Iterable[str] | None = None) -> list[str]:
    """Every way ``ds`` departs from the schema, as a list of messages (empty = valid).

    ``kind="truth"`` checks a generated store (all variables, store attrs); ``kind="prediction"``
    checks only the variables present, their dims/units, and the coordinates they use;
    ``kind="measured"`` checks an ingested log: the measured variables and ``valid``, pack
    variables if present, no hidden variable or parameter table, provenance attrs;
    ``kind="estimate"`` checks as ``prediction`` plus the ensemble spreads (``<name>_std``) and
    ``ESTIMATE_ATTRS``; a measured input's missing scenario coordinates are allowed.
    """
    problems: list[str] = []
    if kind not in ("truth", "prediction", "measured", "estimate"):
        raise ValueError(f"kind must be 'truth', 'prediction', 'measured' or 'estimate', got "
                         f"{kind!r}")
    sv = ds.attrs.get("schema_version")
    if sv is None:
        problems.append("attribute 'schema_version' is missing")
    elif str(sv).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        problems.append(f"schema_version is {sv!r}, this packtwin reads {SCHEMA_VERSION!r}")
    if kind == "truth":
        for a in REQUIRED_ATTRS:
            if a not in ds.attrs:
                problems.append(f"attribute {a!r} is missing")
        names = list(VARIABLES) if variables is None else list(variables)
    elif kind == "measured":
        for a in MEASURED_ATTRS:
            if a not in ds.attrs:
                problems.append(f"attribute {a!r} is missing")
        if ds.attrs.get("store_kind", "measured") != "measured":
            problems.append(f"store_kind is {ds.attrs['store_kind']!r}, expected 'measured'")
        extra = [n for n in ds.variables
                 if (n in VARIABLES and VARIABLES[n].kind in ("hidden", "summary"))
                 or n.startswith(PARAM_PREFIX)]
        if extra:
            problems.append(f"a measured store holds no hidden states, summaries or parameter "
                            f"table; found {sorted(extra)}")
        names = list(MEASURED) + ["valid"] + [n for n, v in VARIABLES.items()
                                              if v.kind == "pack" and n in ds.variables]
    else:
        names = [n for n in (variables or VARIABLES) if n in ds.variables]
    if kind == "estimate":
        problems += [f"attribute {a!r} is missing" for a in ESTIMATE_ATTRS if a not in ds.attrs]
        for name in (n for n in ds.data_vars if std_base(str(n))):
            dims, u = declared_dims(str(name)), units(str(name))
            if tuple(ds[name].dims) != dims:
                problems.append(f"variable {name!r} has dims {tuple(ds[name].dims)}, expected "
                                f"{dims}")
            if ds[name].attrs.get("units") != u:
                problems.append(f"variable {name!r} has units {ds[name].attrs.get('units')!r}, "
                                f"expected {u!r}")
    for name in names:
        v = VARIABLES[name]
        if name not in ds.variables and name in ADDED_SUMMARIES + ADDED_INSTANT \
                and variables is None:
            continue  # a store written before these summaries existed
        if name not in ds.variables:
            problems.append(f"variable {name!r} is missing (expected dims {v.dims})")
            continue
        da = ds[name]
        if tuple(da.dims) != v.dims:
            problems.append(f"variable {name!r} has dims {tuple(da.dims)}, expected {v.dims}")
        u = da.attrs.get("units")
        if u != v.units:
            problems.append(f"variable {name!r} has units {u!r}, expected {v.units!r}")
    for cname, c in COORDS.items():
        used = any(d in ds.dims for d in c.dims)
        if kind in ("measured", "estimate") and cname in MEASURED_OPTIONAL_COORDS \
                and cname not in ds.coords:
            continue
        if used and cname not in ds.coords:
            problems.append(f"coordinate {cname!r} is missing (dims {c.dims})")
        elif used and ds[cname].attrs.get("units") != c.units:
            problems.append(f"coordinate {cname!r} has units {ds[cname].attrs.get('units')!r}, "
                            f"expected {c.units!r}")
    return problems


def check(ds, kind: str = "truth", source: str = "dataset") -> None:
    """Raise SchemaError naming ``source`` and listing every problem, if there are any."""
    problems = validate(ds, kind=kind)
    if problems:
        raise SchemaError(problems, source)


def require_summaries(ds, names: Iterable[str], what: str, source: str = "store") -> None:
    """Raise SchemaError if ``ds`` lacks any of the per-cycle summaries ``names`` (e.g. a store
    generated before :data:`ADDED_SUMMARIES` existed), saying who needs them and how to get them."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise SchemaError([f"{what} needs the per-cycle summaries {missing}, which {source} does "
                           f"not hold (written before they were added to the schema); generate it "
                           f"again with this packtwin"], source)


def check_bounds(ds, names: Iterable[str] | None = None) -> list[str]:
    """Physical-bound violations (loads the data: use on small stores or selections)."""
    problems = []
    for name in names or VARIABLES:
        if name not in ds.variables:
            continue
        lo, hi = VARIABLES[name].bounds
        vals = np.asarray(ds[name].values, dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            continue
        if lo is not None and vals.min() < lo:
            problems.append(f"{name} below {lo} {VARIABLES[name].units}: min {vals.min():.6g}")
        if hi is not None and vals.max() > hi:
            problems.append(f"{name} above {hi} {VARIABLES[name].units}: max {vals.max():.6g}")
    return problems


# ----------------------------------------------------------------------------------------------
# Building an empty store from the declaration
# ----------------------------------------------------------------------------------------------
@dataclass
class Grid:
    """Everything that fixes the shape of a truth store."""

    scenarios: Sequence[Mapping]  # each: ambient_temperature, charge_c_rate, discharge_c_rate, protocol
    n_series: int
    n_parallel: int
    snapshot_cycles: Sequence[int]
    n_cycles: int
    n_time: int
    period_s: float
    x_n: np.ndarray
    x_p: np.ndarray
    x: np.ndarray
    r_n: np.ndarray
    r_p: np.ndarray
    param_keys: Sequence[str] = field(default_factory=list)
    life_vars: Sequence[str] = field(default_factory=list)  # LIFE_VARIABLES the store also holds

    @property
    def n_cells(self) -> int:
        return self.n_series * self.n_parallel


def pack_shape(ds) -> tuple[int, int]:
    """(cells in series, cells in parallel) of a store, checked against its cell dimension."""
    n_s, n_p = int(ds.attrs.get("n_series", ds.sizes[CELL])), int(ds.attrs.get("n_parallel", 1))
    if n_s * n_p != ds.sizes[CELL]:
        raise SchemaError([f"attributes n_series={n_s} x n_parallel={n_p} = {n_s * n_p} cells, "
                           f"but dimension {CELL!r} has {ds.sizes[CELL]}"])
    return n_s, n_p


def n_cells(ds) -> int:
    """Cells of a store's pack (the one count: its cell dimension, checked against its attrs)."""
    n_s, n_p = pack_shape(ds)
    return n_s * n_p


def cell_position(cell: int, n_parallel: int) -> tuple[int, int]:
    """(series index, parallel index) of a cell; cells are numbered group by group."""
    return cell // n_parallel, cell % n_parallel


def coords_for(grid: Grid) -> dict:
    import xarray as xr

    n_cells = grid.n_cells
    pos = np.array([cell_position(c, grid.n_parallel) for c in range(n_cells)], dtype="int32")
    sc = list(grid.scenarios)
    for s in sc:
        if s["protocol"] not in PROTOCOLS:
            raise ValueError(f"protocol {s['protocol']!r} unknown; expected one of {PROTOCOLS}")
    raw = {
        SCENARIO: ((SCENARIO,), np.arange(len(sc), dtype="int32"), {"long_name": DIMS[SCENARIO]}),
        CELL: ((CELL,), np.arange(n_cells, dtype="int32"), {"long_name": DIMS[CELL]}),
        SNAPSHOT: ((SNAPSHOT,), np.arange(len(grid.snapshot_cycles), dtype="int32"),
                   {"long_name": DIMS[SNAPSHOT]}),
        "ambient_temperature": np.array([s["ambient_temperature"] for s in sc], "float64"),
        "charge_c_rate": np.array([s["charge_c_rate"] for s in sc], "float64"),
        "discharge_c_rate": np.array([s["discharge_c_rate"] for s in sc], "float64"),
        "protocol": np.array([PROTOCOLS.index(s["protocol"]) for s in sc], "int8"),
        "series_index": pos[:, 0],
        "parallel_index": pos[:, 1],
        "snapshot_cycle": np.asarray(grid.snapshot_cycles, "int32"),
        TIME: np.arange(grid.n_time, dtype="float64") * grid.period_s,
        CYCLE: np.arange(1, grid.n_cycles + 1, dtype="int32"),
        X_N: np.asarray(grid.x_n, "float64"), X_P: np.asarray(grid.x_p, "float64"),
        X: np.asarray(grid.x, "float64"),
        R_N: np.asarray(grid.r_n, "float64"), R_P: np.asarray(grid.r_p, "float64"),
    }
    out = {}
    for name, val in raw.items():
        if isinstance(val, tuple):
            out[name] = xr.Variable(*val)
        else:
            c = COORDS[name]
            out[name] = xr.Variable(c.dims, val.astype(c.dtype), var_attrs(name))
    return out


CYCLE_CHUNK = 50  # cycles per chunk of a per-cycle series (life_voltage, ...)


def _chunks(dims: tuple[str, ...], sizes: Mapping[str, int], chunk_time: int | None
            ) -> tuple[int, ...]:
    """Chunk shape of a variable of the store (see :func:`template`)."""
    per_cycle = CYCLE in dims

    def one(d: str) -> int:
        if d == SCENARIO or d == SNAPSHOT or (d == CELL and not per_cycle):
            return 1
        if d == CYCLE and TIME in dims:
            return min(CYCLE_CHUNK, sizes[d])
        if d == TIME and not per_cycle:
            return chunk_time or sizes[d]
        return sizes[d]

    return tuple(one(d) for d in dims)


def template(grid: Grid, attrs: Mapping | None = None, chunk_time: int | None = None):
    """A lazy (dask) truth dataset of the right shape, filled with NaN, ready for ``to_zarr``.

    Chunks: one scenario per chunk so that results can be written region by region; one cell
    per chunk for the snapshot fields. Per-cycle variables hold every cell of a scenario in a
    chunk, and the per-cycle series ``CYCLE_CHUNK`` cycles: a running scenario writes its rows at
    every cycle's checkpoint (:mod:`packtwin.sim.checkpoint`), and a chunk is rewritten whole, so
    one chunk per cell over all cycles rewrote ~2 MB per cell and series variable each time
    (~0.3 CPU-s a checkpoint, a fifth of a life-long scenario's cost).
    """
    import dask.array as da
    import xarray as xr

    coords = coords_for(grid)
    sizes = {d: coords[d].size for d in DIMS}  # every dimension has an index coordinate
    data_vars = {}
    for name, v in VARIABLES.items():
        shape = tuple(sizes[d] for d in v.dims)
        chunks = _chunks(v.dims, sizes, chunk_time)
        fill = 0 if np.dtype(v.dtype).kind in "iu" else np.nan
        arr = da.full(shape, fill, dtype=v.dtype, chunks=chunks)
        data_vars[name] = xr.Variable(v.dims, arr, var_attrs(name))
    for name in grid.life_vars:
        v = LIFE_VARIABLES[name]
        shape = tuple(sizes[d] for d in v.dims)
        chunks = _chunks(v.dims, sizes, None)
        data_vars[name] = xr.Variable(v.dims, da.full(shape, np.nan, dtype=v.dtype, chunks=chunks),
                                      var_attrs(name))
    for key in grid.param_keys:
        name = param_var(key)
        data_vars[name] = xr.Variable((CELL,), da.full((grid.n_cells,), np.nan, chunks=(1,)),
                                      var_attrs(name))
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({"schema_version": SCHEMA_VERSION, "period_s": float(grid.period_s),
                     "n_series": int(grid.n_series), "n_parallel": int(grid.n_parallel)})
    if attrs:
        ds.attrs.update({k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                         for k, v in attrs.items()})
    return ds


def apply_attrs(ds):
    """Attach the schema's attrs to every declared variable/coordinate present (in place)."""
    for name in list(ds.variables):
        try:
            ds[name].attrs.update(var_attrs(name))
        except KeyError:
            pass
    return ds
