"""The generator's configuration: dataclasses that are both the YAML schema and ``--help``.

Everything that changes the simulated data lives in :class:`GenerateConfig`; how a run is executed
(store path, workers, executor) is not part of it, so a store can be resumed with other workers
but never with other physics (``generator_config`` in the store's attrs is compared on resume).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

from packtwin import schema
from packtwin.errors import ConfigError
from packtwin.sim import limits


MESH_KEYS = ("x_n", "x_s", "x_p", "r_n", "r_p")


def _default_options() -> dict:
    return {
        "SEI": "solvent-diffusion limited",
        "lithium plating": "partially reversible",
        "thermal": "lumped",
        # Needed so that 'Contact resistance [Ohm]' enters the voltage (field notes).
        "contact resistance": "true",
    }


def _default_var_pts() -> dict:
    # From the mesh study (scripts/bench_generate.py --mesh-study-only, reports/bench_generate.json
    # "mesh_study"; data/README.md), each mesh against one twice as fine on the presets' hardest
    # conditions (-10 C 1C pulses; 5C CCCV at 25 C). Radial: 30 surface-refined points are within
    # 0.44 mV and 0.045 % of c_max (surface c_s); the old 10 uniform points were 76 mV and 5.5 %
    # off. Through-thickness: nearly all the voltage error is in the negative electrode (the
    # reaction zone next to the separator at -10 C and 5C); uniform 48/8/16 is within 1 mV of
    # 96/16/32 there (16/8/16 was 10 mV off, 32/8/16 2 mV). Cells shrinking towards the separator
    # (Exponential1DSubMesh) were no better for the voltage at the same count. Surface c_s
    # through the thickness is NOT within 0.05 % of c_max on this mesh (0.08 % at -10 C, 0.27 %
    # at the 5C charge step). Refining every x count together converges (order ~1.9 at 5C):
    # 96/16/32 meets it at -10 C, not at 5C (0.071 %, the negative electrode's cells next to the
    # separator), at several times the cost; data/README.md "Surface c_s through the
    # thickness". Fields are stored on 16/8/16 cells (stored_x_points),
    # so the store and the twin's grid do not grow with x_n. Cost: 3.05x the
    # previous 16/8/16 in CPU time per cell-cycle (the study's "cost" key), so the demo preset
    # declares 16/8/16 in its yaml.
    return {"x_n": 48, "x_s": 8, "x_p": 16, "r_n": 30, "r_p": 30}


def _default_submesh() -> dict:
    # Radial cells shrink towards the particle surface, where the concentration gradient is steep
    # (PyBaMM Exponential1DSubMesh, side "right", its default stretch 2.3): at -10 C pulses 30
    # such points are 0.44 mV from twice as many; 40 uniform points are 8.2 mV from 80.
    surface = {"type": "exponential", "side": "right"}
    return {"r_n": dict(surface), "r_p": dict(surface)}


def _default_stored_x() -> dict:
    # Chosen by measurement (scripts/bench_generate.py --stored-grid-only, key "stored_grid" of
    # reports/bench_generate.json; data/README.md): see data/README.md "Stored grid".
    return {"x_n": 16, "x_s": 8, "x_p": 16}


def _default_overrides() -> dict:
    return {
        # OKane2022 has no contact resistance; 5 mOhm is a welded-tab pack value and gives the
        # contact-resistance spread something to act on.
        "Contact resistance [Ohm]": 0.005,
        # Cells in a pack with forced air: 50 W/m2K (10, the set's default, self-heats a 5C cell
        # above 100 C; field notes).
        "Total heat transfer coefficient [W.m-2.K-1]": 50.0,
    }


@dataclass
class ModelConfig:
    """The PyBaMM cell model every cell of the pack uses."""

    model: str = "DFN"
    """PyBaMM lithium-ion model class: DFN, SPMe or SPM (x-resolved particle fields need DFN)."""
    parameter_set: str = "OKane2022"
    """PyBaMM parameter set (OKane2022 supports SEI, plating and lumped thermal together)."""
    options: dict = field(default_factory=_default_options)
    """PyBaMM model options."""
    var_pts: dict = field(default_factory=_default_var_pts)
    """Mesh points per domain (x_n, x_s, x_p, r_n, r_p)."""
    submesh: dict = field(default_factory=_default_submesh)
    """Non-uniform meshes by domain (x_n, x_s, x_p, r_n, r_p): {"type": "exponential", "side":
    "left"|"right"|"symmetric", "stretch": s} (pybamm.Exponential1DSubMesh); uniform where absent."""
    stored_r_points: Optional[int] = 10
    """Radial points stored per particle: uniform cell centres r/R = (i + 1/2) / n, filled by
    linear interpolation from the solver's mesh (store size and the twin's decoder grid do not
    grow with the solver mesh); None stores the solver's own nodes."""
    stored_x_points: Optional[dict] = field(default_factory=_default_stored_x)
    """Most x cells stored per domain (x_n, x_s, x_p): where the solver has more, the fields are
    stored on that many uniform cells, each the width-weighted mean of the solver's cells it
    overlaps (the electrode's lithium and the x-averaged SEI are kept exactly); a domain with no
    more solver cells, absent from the mapping, or null for all, is stored on the solver's nodes."""
    parameter_overrides: dict = field(default_factory=_default_overrides)
    """Parameter values replacing the set's own (nominal values before cell variation)."""
    temperature_range_c: list[float] = field(default_factory=lambda: [-10.0, 60.0])
    """Ambient temperatures the model is trusted for [degC]; scenarios outside are rejected."""


@dataclass
class PackConfig:
    """Pack topology: n_series groups, each of n_parallel cells."""

    n_series: int = 2
    n_parallel: int = 2


@dataclass
class VariedParameter:
    """One parameter that varies from cell to cell around its nominal value."""

    key: str
    """A key of packtwin.schema.PARAMETERS (e.g. neg_c_init)."""
    spread: float
    """Relative standard deviation (std / nominal) for every distribution."""
    distribution: str = "normal"
    """normal, lognormal (mean-preserving) or uniform (half-width spread * sqrt(3))."""


def _default_varied() -> list:
    return [
        VariedParameter("neg_c_init", 0.01, "normal"),
        VariedParameter("neg_am_fraction", 0.01, "normal"),
        VariedParameter("pos_am_fraction", 0.01, "normal"),
        VariedParameter("contact_resistance", 0.10, "lognormal"),
        VariedParameter("neg_j0", 0.10, "lognormal"),
        VariedParameter("pos_j0", 0.10, "lognormal"),
        VariedParameter("sei_solvent_diffusivity", 0.10, "lognormal"),
        VariedParameter("neg_diffusivity", 0.10, "lognormal"),
        VariedParameter("pos_diffusivity", 0.10, "lognormal"),
        VariedParameter("neg_radius", 0.03, "normal"),
        VariedParameter("pos_radius", 0.03, "normal"),
    ]


@dataclass
class VariationConfig:
    """Cell-to-cell manufacturing spread, drawn once per pack (the same cells in every scenario)."""

    parameters: list[VariedParameter] = field(default_factory=_default_varied)
    correlation: Optional[list[list[float]]] = None
    """Correlation matrix between the parameters above (in their order); None = independent."""


@dataclass
class Scenario:
    """One operating condition of the pack."""

    ambient_temperature: float = 25.0
    """Ambient (and initial) temperature [degC]."""
    charge_c_rate: float = 1.0
    """Constant-current charge rate [C] (pack capacity = n_parallel x nominal cell capacity)."""
    discharge_c_rate: float = 1.0
    """Discharge rate [C]; for 'pulse' the scale of the pulse pattern."""
    protocol: str = "cccv"
    """Protocol family, one of packtwin.schema.PROTOCOLS."""


def _default_pulse() -> list:
    # (multiple of the discharge C-rate, duration in seconds): a drive-cycle-like mix of cruise,
    # acceleration, coasting and regenerative braking; mean multiple 1.0.
    return [[1.0, 120.0], [2.0, 60.0], [0.0, 60.0], [-0.5, 60.0], [1.5, 120.0], [1.0, 120.0],
            [1.5, 60.0]]


@dataclass
class ProtocolConfig:
    """Cycle = discharge to the first cell at v_min, rest, CC charge to v_max, CV, rest."""

    v_min: float = 2.5
    """Lower cut-off of any cell [V]."""
    v_max: float = 4.2
    """Upper cut-off of any cell [V] (CV hold voltage of the limiting cell)."""
    cv_cutoff_c: float = 0.05
    """CV ends when the pack current falls below this C-rate."""
    rest_s: float = 600.0
    """Rest after discharge and after charge [s]."""
    cv_max_s: float = 3600.0
    """Longest CV hold [s] (bounds the padded time axis)."""
    phase_margin: float = 1.3
    """Longest CC phase = margin x 3600 / C-rate [s] (bounds the padded time axis)."""
    pulse_pattern: list[list[float]] = field(default_factory=_default_pulse)
    """Pulse protocol discharge: repeated [multiple of the C-rate, seconds] segments."""
    min_capacity_fraction: float = 0.05
    """A discharge delivering less than this fraction of nominal counts as a failed solve."""
    checkup_every: int = 0
    """Every N-th cycle (N, 2N, ...) is a check-up: after the previous cycle's full charge, a
    slow CC discharge at checkup_c_rate (whatever the scenario's rate and protocol), then the
    scenario's charge. 0: no check-ups. Flagged per cycle in the store's ``checkup``."""
    checkup_c_rate: float = 0.2
    """Discharge rate of a check-up cycle [C] (a slow capacity test, as test labs run)."""
    checkup_pulse_c_rate: float = 0.0
    """A current pulse inside each check-up's slow discharge, as a lab's HPPC test: the pack
    current steps from checkup_c_rate to this rate [C] for checkup_pulse_s, then back, inside
    one storage period (so the stored grid and the counted charge are unchanged). Each cell's
    resistance at the pulse's end (voltage drop over current step) is stored as
    ``checkup_pulse_resistance``: it sees the SEI film, which the 60 s samples do not
    (README "Pack life"). 0: no pulse."""
    checkup_pulse_s: float = 0.1
    """Length of the check-up pulse [s], where its resistance is read; < period_s. 0.1 s, not
    1 s: on the life-long pack (seed 0, 25 C, 200 cycles) the 1 s reading carries the particles'
    diffusion, which moves by up to 0.17 mOhm (~3 nm of film) when a cycle's top of charge shifts
    by 0.5 % of capacity; at 0.1 s up to 0.04 mOhm (0.01 s no better)."""
    checkup_pulse_at: float = 0.5
    """Where the pulse falls: after this fraction of the nominal capacity has been discharged at
    checkup_c_rate (mid-window, where both electrodes' exchange currents are flattest in the
    stoichiometry, so lithium lost over life moves the resistance least)."""


CUTOFFS = ("crossing", "grid")
COUPLINGS = ("stepped", "dae")


@dataclass
class SolverConfig:
    """Pack time stepping and the parallel-group current split."""

    period_s: float = 60.0
    """Pack time step and storage period [s]."""
    voltage_tol: float = 1e-3
    """Largest voltage spread inside a parallel group, and error on a held limit, accepted [V].

    1 mV is below a BMS's cell-voltage resolution; with ~30 mOhm cells it bounds the split error
    at ~0.03 A per cell."""
    max_iterations: int = 12
    """Newton iterations per step for the current split before the step is declared failed."""
    max_step_periods: int = 16
    """Longest coupling step in storage periods. Where no voltage limit binds, a step holds the
    cell currents over several periods, sampled at every period, and is accepted only if every
    group's voltage spread is <= voltage_tol at every sample (else halved; doubled after an
    accepted step). 1 couples at every period (the stepping of stores made before this option)."""
    cutoff: str = "crossing"
    """Where a discharge and a CC charge end. ``crossing``: where the limiting cell reaches
    v_min / v_max at the requested current, as a cycler detects it (the period holding the
    crossing is split there: rest or CV for the rest of it). ``grid``: the period in which the
    limit binds holds the limit at a reduced current to its end (stores made before this option:
    their capacity jumps by up to ~0.6 % between cycles as the crossing moves across the grid)."""
    fewer_trials: bool = False
    """Where a series pack's parallel groups need different numbers of trials in a coupling step
    (no limit binding), a group already within voltage_tol keeps its trial and only the others
    are re-stepped (fewer cell solves; every group still within voltage_tol). Its split is then
    the one of its converged trial, not the next iterate, so stored values move within the
    tolerance; False (default) re-steps every cell at every trial, which keeps stores made before
    this option reproducible. A store made with one setting is refused on resume by the other."""
    coupling: str = "stepped"
    """How the cells of a pack are coupled. ``stepped``: each cell solved on its own between
    coupling steps, the split solved between them (:mod:`packtwin.sim.pack`; max_step_periods,
    voltage_tol, fewer_trials apply). ``dae``: the whole pack as one PyBaMM DAE with the circuit
    as algebraic equations (:mod:`packtwin.sim.pack_dae`): no coupling steps, the split exact,
    cut-offs found by the integrator's root finding, each period's current the mean from each
    cell's charge; 5-6x less CPU per cell-cycle on a 2s2p pack (scripts/bench_pack_dae.py).
    Needs ``cutoff: crossing``. A store made with one coupling is refused on resume by the other."""


@dataclass
class GenerateConfig:
    """Everything that fixes the generated data (compared on resume)."""

    scenarios: list[Scenario] = field(default_factory=lambda: [Scenario()])
    pack: PackConfig = field(default_factory=PackConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    variation: VariationConfig = field(default_factory=VariationConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    n_cycles: int = 2
    """Cycles per scenario (per-cycle summaries for each)."""
    snapshot_every: int = 1
    """Full fields are stored for cycles 1, 1 + k, 1 + 2k, ... and always the last cycle."""
    seed: int = 0
    """Seed of the cell-to-cell variation (numpy default_rng)."""
    cycle_series: bool = False
    """Also store every cycle's measured voltage, current and temperature of every cell
    (life_voltage, life_current, life_temperature on cycle x time): what a cycler logs, and what
    the twin over life reads between snapshots."""


def nearest(name: str, valid, what: str = "") -> str:
    """' (did you mean X?)' for the closest valid name, or the valid names when none is close."""
    import difflib

    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; valid{' ' + what if what else ''}: {valid}" if len(valid) <= 40 else ""


def unknown_keys(d, cls=None, prefix: str = "", extra=()) -> list[str]:
    """Problems for keys of a config mapping that ``cls`` (a config dataclass) does not have,
    recursing into nested dataclasses and lists of them; each names the nearest valid key."""
    import typing

    cls = cls or GenerateConfig
    if not isinstance(d, dict):
        return []
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    problems = []
    for key, val in d.items():
        path = f"{prefix}{key}"
        if key not in names:
            if key not in extra:
                problems.append(f"unknown key {path!r}{nearest(key, names + list(extra))}")
            continue
        hint = hints[key]
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            problems += unknown_keys(val, hint, f"{path}.")
        elif typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]) \
                and isinstance(val, list):
            for i, item in enumerate(val):
                problems += unknown_keys(item, args[0], f"{path}[{i}].")
    return problems


def to_dict(cfg: GenerateConfig) -> dict:
    return dataclasses.asdict(cfg)


def differing_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ between two :func:`to_dict` configs, down
    to the nested key (``solver.fewer_trials``, not ``solver``): what a refused resume names."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_keys(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def from_dict(d: dict) -> GenerateConfig:
    """Rebuild a config from :func:`to_dict` output (used by workers and by resume checks)."""
    d = {k: _plain(v) for k, v in d.items()}  # defaults may arrive as dataclass instances
    return GenerateConfig(
        scenarios=[Scenario(**s) for s in d["scenarios"]],
        pack=PackConfig(**d["pack"]),
        model=ModelConfig(**d["model"]),
        variation=VariationConfig(
            parameters=[VariedParameter(**p) for p in d["variation"]["parameters"]],
            correlation=d["variation"].get("correlation")),
        protocol=ProtocolConfig(**d["protocol"]),
        solver=SolverConfig(**d["solver"]),
        n_cycles=d["n_cycles"], snapshot_every=d["snapshot_every"], seed=d["seed"],
        # absent from stores made before the option: its default reproduces them
        cycle_series=bool(d.get("cycle_series", False)))


def _plain(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def snapshot_cycles(cfg: GenerateConfig) -> list[int]:
    cycles = list(range(1, cfg.n_cycles + 1, cfg.snapshot_every))
    if cycles[-1] != cfg.n_cycles:
        cycles.append(cfg.n_cycles)
    return cycles


SERIES_VARS = ("life_voltage", "life_current", "life_temperature")  # stored with cycle_series


def life_vars(cfg: GenerateConfig) -> list[str]:
    """The schema's LIFE_VARIABLES a store of this config holds (per-cycle series, check-ups)."""
    names = list(SERIES_VARS) if cfg.cycle_series else []
    names += ["checkup"] if cfg.protocol.checkup_every > 0 else []
    return names + (["checkup_pulse_resistance"] if has_pulse(cfg) else [])


def _pulse_problems(cfg: GenerateConfig) -> list[str]:
    p = cfg.protocol
    c, s, at = p.checkup_pulse_c_rate, p.checkup_pulse_s, p.checkup_pulse_at
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
        return [f"protocol.checkup_pulse_c_rate must be a C-rate >= 0 (0: no pulse), found {c!r}"]
    if c == 0:
        return []
    out = []
    if p.checkup_every <= 0:
        out.append("protocol.checkup_pulse_c_rate > 0 needs check-up cycles "
                   f"(protocol.checkup_every > 0), found checkup_every={p.checkup_every!r}")
    if not (isinstance(s, (int, float)) and 0 < s < cfg.solver.period_s):
        out.append(f"protocol.checkup_pulse_s must be in (0, solver.period_s = "
                   f"{cfg.solver.period_s}) s (the pulse fits inside one storage period), "
                   f"found {s!r}")
    if not (isinstance(at, (int, float)) and 0.05 <= at <= 0.9):
        out.append(f"protocol.checkup_pulse_at must be a discharged fraction in [0.05, 0.9], "
                   f"found {at!r}")
    return out


def has_pulse(cfg: GenerateConfig) -> bool:
    """Whether check-ups carry a resistance pulse (protocol.checkup_pulse_c_rate > 0)."""
    return cfg.protocol.checkup_every > 0 and cfg.protocol.checkup_pulse_c_rate > 0


def pulse_period(cfg: GenerateConfig) -> int:
    """0-based period of a check-up's discharge that holds the pulse (protocol.checkup_pulse_at
    of the nominal capacity discharged at checkup_c_rate before it)."""
    p = cfg.protocol
    return int(round(p.checkup_pulse_at * 3600.0 / p.checkup_c_rate / cfg.solver.period_s))


def is_checkup(cfg: GenerateConfig, cycle: int) -> bool:
    """Whether 1-based ``cycle`` is a check-up cycle (protocol.checkup_every)."""
    n = cfg.protocol.checkup_every
    return n > 0 and cycle % n == 0


def discharge_multiplier_mean(cfg: GenerateConfig, protocol: str) -> float:
    """Mean discharge current of a protocol as a multiple of its C-rate."""
    if protocol != "pulse":
        return 1.0
    pat = cfg.protocol.pulse_pattern
    return sum(m * s for m, s in pat) / sum(s for _, s in pat)


def phase_steps(cfg: GenerateConfig, sc: Scenario) -> dict[str, int]:
    """Most pack steps each phase of a cycle may take (time-outs of the protocol)."""
    p, dt = cfg.protocol, cfg.solver.period_s
    mean = max(discharge_multiplier_mean(cfg, sc.protocol), 1e-6)
    rate = sc.discharge_c_rate * mean
    if p.checkup_every > 0 and p.checkup_every <= cfg.n_cycles:
        rate = min(rate, p.checkup_c_rate)  # the padded axis holds the slow check-up discharge
    return {
        "discharge": int(math.ceil(p.phase_margin * 3600.0 / rate / dt)),
        "rest": int(math.ceil(p.rest_s / dt)),
        "cc": int(math.ceil(p.phase_margin * 3600.0 / sc.charge_c_rate / dt)),
        "cv": int(math.ceil(p.cv_max_s / dt)),
    }


def n_time(cfg: GenerateConfig) -> int:
    """Samples per cycle on the padded grid (sample 0 is the cycle's start)."""
    def total(sc):
        ps = phase_steps(cfg, sc)
        return ps["discharge"] + 2 * ps["rest"] + ps["cc"] + ps["cv"]

    return 1 + max(total(s) for s in cfg.scenarios)


def _stored_x_problems(stored) -> list[str]:
    if stored is None:
        return []
    if not isinstance(stored, dict):
        return [f"model.stored_x_points must be a mapping of x_n/x_s/x_p to a number of cells, "
                f"or null for the solver's nodes, found {stored!r}"]
    problems = [f"model.stored_x_points key {k!r} unknown{nearest(k, MESH_KEYS[:3])}"
                for k in sorted(set(stored) - set(MESH_KEYS[:3]))]
    for key in MESH_KEYS[:3]:
        n = stored.get(key)
        if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
            problems.append(f"model.stored_x_points.{key} must be an integer >= 2 or null (the "
                            f"solver's nodes), found {n!r}")
    return problems


def validate(cfg: GenerateConfig, source: str = "config") -> None:
    """Raise ConfigError listing every problem in ``cfg`` at once."""
    problems: list[str] = []
    if cfg.pack.n_series < 1:
        problems.append(f"pack.n_series must be >= 1, found {cfg.pack.n_series}")
    if cfg.pack.n_parallel < 1:
        problems.append(f"pack.n_parallel must be >= 1, found {cfg.pack.n_parallel}")
    if not cfg.scenarios:
        problems.append("scenarios is empty; expected at least one scenario")
    problems += limits.config_problems(cfg)
    rng = cfg.model.temperature_range_c
    lo, hi = (rng if len(rng) == 2 else (math.nan, math.nan))
    for i, s in enumerate(cfg.scenarios):
        for name in ("charge_c_rate", "discharge_c_rate"):
            val = getattr(s, name)
            if not (isinstance(val, (int, float)) and math.isfinite(val) and val > 0):
                problems.append(f"scenarios[{i}].{name} must be a positive C-rate, found {val!r}")
        t = s.ambient_temperature
        if not (lo <= t <= hi):
            problems.append(f"scenarios[{i}].ambient_temperature {t} degC is outside the model's "
                            f"range [{lo}, {hi}] degC (model.temperature_range_c)")
        if s.protocol not in schema.PROTOCOLS:
            problems.append(f"scenarios[{i}].protocol {s.protocol!r} unknown"
                            f"{nearest(s.protocol, schema.PROTOCOLS)}")
    keys = [p.key for p in cfg.variation.parameters]
    for i, p in enumerate(cfg.variation.parameters):
        if p.key not in schema.PARAMETERS:
            problems.append(f"variation.parameters[{i}].key {p.key!r} is not a known parameter"
                            f"{nearest(p.key, schema.PARAMETERS)}")
        if p.distribution not in ("normal", "lognormal", "uniform"):
            problems.append(f"variation.parameters[{i}].distribution {p.distribution!r}; expected "
                            "normal, lognormal or uniform")
        if not (0.0 <= p.spread < 0.5):
            problems.append(f"variation.parameters[{i}].spread must be in [0, 0.5), found {p.spread}")
    if len(set(keys)) != len(keys):
        problems.append(f"variation.parameters has duplicate keys: {keys}")
    corr = cfg.variation.correlation
    if corr is not None:
        import numpy as np

        c = np.asarray(corr, dtype=float)
        if c.shape != (len(keys), len(keys)):
            problems.append(f"variation.correlation must be {len(keys)}x{len(keys)} (one row per "
                            f"varied parameter), found shape {c.shape}")
        elif not (np.allclose(c, c.T) and np.allclose(np.diag(c), 1.0)
                  and np.linalg.eigvalsh(c).min() > -1e-10):
            problems.append("variation.correlation must be symmetric, positive semi-definite "
                            "with a unit diagonal")
    if cfg.model.model not in ("DFN", "SPMe", "SPM"):
        problems.append(f"model.model {cfg.model.model!r} unknown"
                        f"{nearest(cfg.model.model, ('DFN', 'SPMe', 'SPM'))}")
    unknown_mesh = sorted(set(cfg.model.var_pts) - set(MESH_KEYS))
    for key in unknown_mesh:
        problems.append(f"model.var_pts key {key!r} unknown{nearest(key, MESH_KEYS)}")
    for key in MESH_KEYS:
        n = cfg.model.var_pts.get(key)
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
            problems.append(f"model.var_pts.{key} must be an integer >= 2, found {n!r}")
    n_store = cfg.model.stored_r_points
    radial = [cfg.model.var_pts.get(k) for k in ("r_n", "r_p")]
    if n_store is not None and all(isinstance(n, int) for n in radial):  # else reported above
        n_solver = min(radial)
        if not (isinstance(n_store, int) and 2 <= n_store <= n_solver):
            problems.append(f"model.stored_r_points must be an integer in [2, {n_solver}] (at most "
                            f"the solver's radial points var_pts r_n/r_p; a finer stored grid "
                            f"would invent data) or null for the solver's nodes, found {n_store!r}")
    problems += _stored_x_problems(cfg.model.stored_x_points)
    if cfg.n_cycles < 1:
        problems.append(f"n_cycles must be >= 1, found {cfg.n_cycles}")
    if not (isinstance(cfg.protocol.checkup_every, int) and cfg.protocol.checkup_every >= 0):
        problems.append(f"protocol.checkup_every must be an integer >= 0 (0: no check-ups), "
                        f"found {cfg.protocol.checkup_every!r}")
    c = cfg.protocol.checkup_c_rate
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
        problems.append(f"protocol.checkup_c_rate must be a positive C-rate, found {c!r}")
    problems += _pulse_problems(cfg)
    if cfg.snapshot_every < 1:
        problems.append(f"snapshot_every must be >= 1, found {cfg.snapshot_every}")
    if cfg.solver.period_s <= 0:
        problems.append(f"solver.period_s must be > 0, found {cfg.solver.period_s}")
    if not isinstance(cfg.solver.fewer_trials, bool):
        problems.append(f"solver.fewer_trials must be true or false, found "
                        f"{cfg.solver.fewer_trials!r}")
    if cfg.solver.cutoff not in CUTOFFS:
        problems.append(f"solver.cutoff must be one of {list(CUTOFFS)}, found {cfg.solver.cutoff!r}")
    if cfg.solver.coupling not in COUPLINGS:
        problems.append(f"solver.coupling must be one of {list(COUPLINGS)}, found "
                        f"{cfg.solver.coupling!r}")
    elif cfg.solver.coupling == "dae" and cfg.solver.cutoff != "crossing":
        problems.append("solver.coupling 'dae' ends phases at the crossing itself; it needs "
                        f"solver.cutoff 'crossing', found {cfg.solver.cutoff!r}")
    if not (0 < cfg.protocol.v_min < cfg.protocol.v_max):
        problems.append(f"protocol needs 0 < v_min < v_max, found v_min={cfg.protocol.v_min}, "
                        f"v_max={cfg.protocol.v_max}")
    for i, seg in enumerate(cfg.protocol.pulse_pattern):
        if len(seg) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in seg) \
                or seg[1] <= 0:
            problems.append(f"protocol.pulse_pattern[{i}] must be [multiple, seconds > 0], found {seg}")
    if not cfg.protocol.pulse_pattern:
        problems.append("protocol.pulse_pattern is empty; expected [multiple, seconds] segments")
    if problems:
        raise ConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(problems))
