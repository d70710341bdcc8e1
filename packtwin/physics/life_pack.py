"""The twin over life on pack stores: every cell of a ``packtwin generate`` store made with
``cycle_series`` (each cycle's measured V/I/T per cell) tracked by :mod:`packtwin.physics.life_twin`.

From the store only what a pack's cell-level logger measures enters the estimate:

* the cell's temperature in every cycle (``life_temperature``: the growth law's driver);
* its discharge capacity, counted from its own measured current (``life_current``): the largest
  charge drawn since the cycle's start (:func:`measured_capacity`; regenerative pulses net out);
* the resistance of each check-up's current pulse (``checkup_pulse_resistance``, where the store
  has one: ``protocol.checkup_pulse_c_rate``), whose rise is the SEI film grown;
* optionally (``use_resistance``), the resistance at the start of each discharge from measured
  V/I (:func:`step_resistance`): the voltage drop over the first storage period of the discharge
  over the current, i.e. a ``period_s`` resistance (60 s on the presets), not the instantaneous
  step of :func:`packtwin.sim.life_reference.run_life`. Off by default: on the life-demo pack
  (50 cycles, calibrated at 25 C) it pulled the 45 C cells' SEI rate to 0.27-0.41 of the truth
  (SEI MAE 3.3-4.5 nm), where the capacity alone gave 0.86-1.04 (0.13-0.57 nm): this
  resistance does not follow the film + charge-transfer law calibrated at another temperature.

Check-up cycles (``checkup`` == 1, a slow capacity test) carry their temperature into the growth
law but neither their capacity nor their resistance into the fade: both are at another rate than
the regular cycles the fade is referenced to. Their slow discharge's V/I is read instead as the
lithium left in the particles (``checkup_lithium``, an OCV fit:
:mod:`packtwin.physics.checkup_inventory`) for a twin whose ``lithium_from`` is "checkup". Truth
(``lli``, ``sei_thickness_end``) is read only by :func:`calibrate_pack` and
:func:`calibrate_rates`, on the scenarios, cells and cycles it is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Mapping, Sequence

import numpy as np

from packtwin import schema
from packtwin.physics import checkup_inventory
from packtwin.physics.life_state import LifeModel

SERIES = ("life_voltage", "life_current", "life_temperature")
TRUTH = ("lli", "sei_thickness_end", "capacity")
ESTIMATES = ("sei_thickness_est", "lli_est", "capacity_est")


def measured_capacity(current_a: np.ndarray, period_s: float) -> np.ndarray:
    """Discharge capacity [A h] of each cycle from the cell's measured current (..., samples):
    the largest net charge drawn since the cycle's start. Sample 0 is the previous period's
    current (store convention), so the count starts at sample 1; NaN padding counts as 0."""
    i = np.nan_to_num(np.asarray(current_a, dtype=float)[..., 1:], nan=0.0)
    q = np.cumsum(i, axis=-1) * float(period_s) / 3600.0
    out = np.max(q, axis=-1, initial=0.0)
    return np.where(np.isfinite(np.asarray(current_a, dtype=float)[..., 1]), out, np.nan)


def step_resistance(voltage_v: np.ndarray, current_a: np.ndarray) -> np.ndarray:
    """(V at the cycle's start, rested - V one period into the discharge) / that period's
    current [Ohm], per cycle; NaN where the first period does not discharge."""
    v = np.asarray(voltage_v, dtype=float)
    i = np.asarray(current_a, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (v[..., 0] - v[..., 1]) / i[..., 1]
    return np.where(i[..., 1] > 0, r, np.nan)


def _require(ds, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise ValueError(f"{what}: the store lacks {missing}; make it with `cycle_series: true` in "
                         f"the generate config (e.g. --preset life-demo)")
    for n in names:
        want = (schema.LIFE_VARIABLES.get(n) or schema.VARIABLES[n]).units
        got = ds[n].attrs.get("units")
        if got != want:
            raise ValueError(f"{what}: variable {n!r} has units {got!r}, expected {want!r}")


def cell_life(ds, scenario: int, cell: int, truth: bool = False, use_resistance: bool = False,
              plated_truth: bool = False, checkup_lithium: bool = False):
    """One cell of one scenario as :mod:`packtwin.physics.life_twin` reads it (a one-cell
    ``run_life``-like Dataset): measured temperature, capacity and resistance per cycle, for the
    cycles the scenario finished; with ``truth``, also the store's ``lli`` and
    ``sei_thickness_end`` (for calibration only), and with ``plated_truth`` its
    ``plated_lithium_end`` (calibration on SEI and dead lithium only); ``life_resistance`` only
    with ``use_resistance``; ``checkup_lithium`` (mol) with ``checkup_lithium``: the lithium in
    the particles read from each check-up's slow discharge
    (:func:`packtwin.physics.checkup_inventory.checkup_lithium`, NaN on other cycles)."""
    import xarray as xr

    _require(ds, SERIES, f"cell_life(scenario={scenario}, cell={cell})")
    one = ds.isel({schema.SCENARIO: [scenario], schema.CELL: [cell]})
    done = int(np.nan_to_num(float(one["cycles_done"].values[0]))) if "cycles_done" in one else \
        one.sizes[schema.CYCLE]
    one = one.isel({schema.CYCLE: slice(0, done)})
    period = float(ds.attrs["period_s"])
    v, i = one["life_voltage"].values, one["life_current"].values
    cap = measured_capacity(i, period)
    res = step_resistance(v, i)
    if "checkup" in one.variables:
        slow = one["checkup"].values == 1
        cap, res = np.where(slow, np.nan, cap), np.where(slow, np.nan, res)
    data = {"life_temperature": one["life_temperature"].astype(float),
            "capacity": (schema.SUMMARY_DIMS, cap)}
    if use_resistance:
        data["life_resistance"] = (schema.SUMMARY_DIMS, res)
    if "checkup_pulse_resistance" in one.variables:  # measured: read whenever the store has it
        _require(ds, ("checkup_pulse_resistance",), f"cell_life(scenario={scenario}, cell={cell})")
        data["checkup_pulse_resistance"] = one["checkup_pulse_resistance"].astype(float)
    if checkup_lithium:
        if "checkup" not in one.variables:
            raise ValueError(f"cell_life(scenario={scenario}, cell={cell}): the check-up lithium "
                             f"needs check-up cycles, and the store has no 'checkup' variable "
                             f"(generate with protocol.checkup_every > 0)")
        n_ck = checkup_inventory.checkup_lithium(v[0, 0], i[0, 0], one["checkup"].values[0, 0],
                                                 period)
        data["checkup_lithium"] = (schema.SUMMARY_DIMS, n_ck[None, None, :])
    if truth:
        names = ("lli", "sei_thickness_end") + (("plated_lithium_end",) if plated_truth else ())
        _require(ds, names, f"cell_life(scenario={scenario}, cell={cell}) truth")
        data.update({n: one[n].astype(float) for n in names})
    out = xr.Dataset(data, coords={d: one[d] for d in (schema.SCENARIO, schema.CELL,
                                                       schema.CYCLE, schema.TIME)})
    out.attrs["period_s"] = period
    return schema.apply_attrs(out)


def _cells(ds, scenarios, cells) -> list[tuple[int, int]]:
    sc = range(ds.sizes[schema.SCENARIO]) if scenarios is None else scenarios
    ce = range(ds.sizes[schema.CELL]) if cells is None else cells
    return [(int(s), int(c)) for s in sc for c in ce]


def calibrate_pack(ds, scenarios: Sequence[int] | None = None, cells: Sequence[int] | None = None,
                   upto_cycle: int = 50, model: LifeModel | None = None,
                   use_resistance: bool = False, plated_apart: bool = False) -> LifeModel:
    """:func:`packtwin.physics.life_twin.calibrate` on the given scenarios' cells (default all),
    their cycles <= ``upto_cycle`` (truth read only there). ``plated_apart``: calibrate on the
    lost lithium less the lithium still plated, for a twin that adds its own plating estimate."""
    from packtwin.physics.life_twin import calibrate

    by_checkup = model is not None and model.lithium_from == "checkup"
    runs = [cell_life(ds, s, c, truth=True, use_resistance=use_resistance,
                      plated_truth=plated_apart, checkup_lithium=by_checkup)
            for s, c in _cells(ds, scenarios, cells)]
    runs = [r for r in runs if r.sizes[schema.CYCLE] > 2]
    if not runs:
        raise ValueError("calibrate_pack: no calibration cell has more than 2 finished cycles")
    return calibrate(runs, model=model, upto_cycle=upto_cycle, plated_apart=plated_apart)


def calibrate_rates(ds, scenarios: Sequence[int] | None, cells: Sequence[int] | None,
                    upto_cycle: int, model: LifeModel) -> dict[int, float]:
    """cell -> its own SEI solvent diffusivity [m2/s] from its truth SEI of cycles <= upto_cycle
    in the given scenarios (:func:`packtwin.physics.life_twin.fit_rate`; geometric mean over
    scenarios). The store's cells are physical cells: a cell's parameters are the same in every
    scenario (``param_*`` on dim ``cell``), so a calibrated cell keeps its rate at another
    temperature or C-rate."""
    from packtwin.physics.life_twin import fit_rate

    per_cell: dict[int, list[float]] = {}
    for s, c in _cells(ds, scenarios, cells):
        run = cell_life(ds, s, c, truth=True)
        if run.sizes[schema.CYCLE] > 2:
            per_cell.setdefault(c, []).append(math.log(fit_rate(run, upto_cycle, model.L_0)))
    return {c: math.exp(float(np.mean(v))) for c, v in per_cell.items()}


def track_pack(ds, model: LifeModel, update_until: int | None = None,
               use_resistance: bool = False, rates: Mapping[int, float] | None = None,
               rate_spread: float = 0.01, pulse_gains: np.ndarray | None = None):
    """``sei_thickness_est``, ``lli_est``, ``capacity_est`` and ``sei_diffusivity_est`` for every
    scenario and cell of a store, on its (scenario, cell, cycle) grid (NaN for cycles not run).

    ``rates``: cell -> SEI diffusivity [m2/s] of calibrated cells (:func:`calibrate_rates`):
    such a cell's filter starts from its own rate with prior std ``rate_spread`` (of ln D)
    instead of the nominal rate and the cell-to-cell spread. ``pulse_gains`` (scenario, cell):
    each run's check-up pulse reads its film as gain x kappa (:mod:`packtwin.sim.pulse_gain`);
    None: kappa (or the model's ``kappa_pulse``) alone."""
    import xarray as xr

    from packtwin.physics.life_twin import track

    shape = tuple(ds.sizes[d] for d in schema.SUMMARY_DIMS)
    names = ESTIMATES + ("sei_diffusivity_est",)
    out = {n: np.full(shape, np.nan) for n in names}
    for s, c in _cells(ds, None, None):
        one = cell_life(ds, s, c, use_resistance=use_resistance,
                        checkup_lithium=model.lithium_from == "checkup")
        n = one.sizes[schema.CYCLE]
        if n < 1:
            continue
        m = model if c not in (rates or {}) else dataclasses.replace(
            model, D_nominal=float(rates[c]), D_spread=rate_spread)
        if pulse_gains is not None:
            kp = model.kappa if model.kappa_pulse is None else model.kappa_pulse
            m = dataclasses.replace(m, kappa_pulse=kp * float(pulse_gains[s, c]))
        est = track(one, m, update_until=update_until)
        for name in names:
            out[name][s, c, :n] = est[name].values.ravel()
    res = xr.Dataset({n: (schema.SUMMARY_DIMS, a) for n, a in out.items()},
                     coords={d: ds[d] for d in schema.SUMMARY_DIMS})
    res.attrs.update({"period_s": float(ds.attrs["period_s"]),
                      "update_until": -1 if update_until is None else int(update_until),
                      "use_resistance": int(use_resistance),
                      "calibrated_cell_rates": json.dumps({int(k): float(v) for k, v in
                                                           (rates or {}).items()}),
                      "pulse_gains": json.dumps(None if pulse_gains is None else
                                                np.asarray(pulse_gains, float).round(6).tolist()),
                      "estimator": "packtwin.physics.life_pack.track_pack"})
    return schema.apply_attrs(res)
