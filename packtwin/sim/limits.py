"""Hard physical limits of the generator, in code so that no config can widen them.

A config narrows what it trusts (``model.temperature_range_c``); these bounds say what the
simulated cell (PyBaMM's OKane2022-type lithium-ion DFN with lumped thermal) can represent at
all. :func:`cell_problems` checks drawn per-cell parameter values for physical sense.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

# Ambient temperature [degC]: liquid carbonate electrolyte, Arrhenius fits of the parameter sets
# and the lumped thermal model are meaningless outside (electrolyte freezes / boils off).
AMBIENT_C = (-40.0, 80.0)
# C-rate: above 20C the DFN's electrolyte depletes within seconds; below, the budget check of
# packtwin.sim.budget bounds how long a cycle may be.
C_RATE_MAX = 20.0
# Cell voltage window [V] a lithium-ion graphite cell may be cycled in (cut-offs of the protocol).
VOLTAGE = (2.0, 4.4)
# Pack time step [s]: the protocol detects cut-offs once per step.
PERIOD_S = (1.0, 600.0)


def config_problems(cfg) -> list[str]:
    """Problems of a GenerateConfig against the hard limits (each names the field)."""
    problems = []
    rng = list(cfg.model.temperature_range_c)
    if len(rng) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng) \
            or rng[0] > rng[1]:
        problems.append(f"model.temperature_range_c must be [low, high] degC, found {rng}")
    elif rng[0] < AMBIENT_C[0] or rng[1] > AMBIENT_C[1]:
        problems.append(f"model.temperature_range_c {rng} degC goes beyond the hard limits "
                        f"{list(AMBIENT_C)} degC of the cell model (packtwin.sim.limits.AMBIENT_C); "
                        f"a config may narrow the range, not widen it")
    for i, s in enumerate(cfg.scenarios):
        t = s.ambient_temperature
        if isinstance(t, (int, float)) and not (AMBIENT_C[0] <= t <= AMBIENT_C[1]):
            problems.append(f"scenarios[{i}].ambient_temperature {t} degC is outside the hard "
                            f"limits {list(AMBIENT_C)} degC of the cell model "
                            f"(packtwin.sim.limits.AMBIENT_C)")
        for name in ("charge_c_rate", "discharge_c_rate"):
            val = getattr(s, name)
            if isinstance(val, (int, float)) and val > C_RATE_MAX:
                problems.append(f"scenarios[{i}].{name} {val}C is above the hard limit "
                                f"{C_RATE_MAX}C (packtwin.sim.limits.C_RATE_MAX)")
    p = cfg.protocol
    for name in ("v_min", "v_max"):
        v = getattr(p, name)
        if not (VOLTAGE[0] <= v <= VOLTAGE[1]):
            problems.append(f"protocol.{name} {v} V is outside the hard limits {list(VOLTAGE)} V "
                            f"of a lithium-ion cell (packtwin.sim.limits.VOLTAGE)")
    if not (PERIOD_S[0] <= cfg.solver.period_s <= PERIOD_S[1]):
        problems.append(f"solver.period_s {cfg.solver.period_s} s is outside {list(PERIOD_S)} s "
                        f"(packtwin.sim.limits.PERIOD_S)")
    return problems


# Bounds of per-cell parameter values: (low, high, low inclusive); None = unbounded. The initial
# concentration's upper bound is the electrode's c_max, given at check time.
PARAMETER_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    "neg_am_fraction": (0.0, 1.0, False),
    "pos_am_fraction": (0.0, 1.0, False),
    "neg_c_init": (0.0, None, False),
    "neg_diffusivity": (0.0, None, False),
    "pos_diffusivity": (0.0, None, False),
    "neg_radius": (0.0, None, False),
    "pos_radius": (0.0, None, False),
    "neg_j0": (0.0, None, False),
    "pos_j0": (0.0, None, False),
    "contact_resistance": (0.0, None, True),
    "sei_solvent_diffusivity": (0.0, None, False),
    "sei_rate_constant": (0.0, None, False),
}


def cell_problems(cells: Sequence[Mapping[str, float]], c_max_n: float | None = None,
                  source: str = "cell") -> list[str]:
    """Physically impossible drawn values, naming the cell, the parameter and the bound."""
    from packtwin import schema

    problems = []
    for c, values in enumerate(cells):
        for key, val in values.items():
            lo, hi, lo_incl = PARAMETER_BOUNDS.get(key, (None, None, True))
            if key == "neg_c_init" and c_max_n is not None:
                hi = c_max_n
            unit = schema.PARAMETERS[key].units if key in schema.PARAMETERS else ""
            bad = not math.isfinite(val)
            if lo is not None:
                bad = bad or (val < lo if lo_incl else val <= lo)
            if hi is not None:
                bad = bad or val >= hi
            if bad:
                rng = f"{'[' if lo_incl else '('}{lo}, {hi if hi is not None else 'inf'})"
                problems.append(f"{source} {c}: {key} = {val:.6g} {unit} is not physical "
                                f"(expected in {rng})")
    return problems
