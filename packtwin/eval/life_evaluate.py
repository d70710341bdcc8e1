"""The ``life:`` section of ``packtwin evaluate``: the twin over life on life splits, next to its
baselines. Written to the evaluation's output folder as ``life_report.json`` and ``life_report.md``.

One calibration (scenario filters, cells and ``upto_cycle`` K: truth is read only on those runs'
cycles <= K) and named splits, each a selection of scenarios (the keys of
:mod:`packtwin.data.splits`), ``cells`` and optionally ``cycles`` ({min, max} or a list), judged on
their cycles > K. So every split extrapolates in cycles; a split of the calibration runs is that
alone, others add unseen cells, another ageing temperature or another C-rate (described per
split in the report). Estimators, all calibrated on the same runs and cycles:

* ``twin``: :mod:`packtwin.physics.life_pack`, corrected by every cycle's measurements;
* ``twin_forecast``: the same, corrected only up to cycle K, then carried by its growth law;
* ``sqrt_fit``: a + b sqrt(cycle) fitted per run on its own truth of cycles <= K (this one reads
  the judged run's early truth: on unseen cells it is an upper bound for a baseline);
* ``data_only``: :mod:`packtwin.eval.life_data_only` (no growth law), one fit per seed.

Metrics are :func:`packtwin.eval.life.run_metrics` per run, averaged over the split's runs.

``plating: nominal`` (or ``truth``, an oracle: the store's per-cell parameters in the core) adds
plating over life (:mod:`packtwin.eval.plating_life`): the twin and its forecast estimate per
cycle plating events and plated lithium from V/I/T and their own lost lithium and SEI, their
``lli_est`` becomes PyBaMM's LLI with the estimated lithium still plated at each cycle's end
(:mod:`packtwin.physics.lli`), and every split reports, on its judged cycles, event precision /
recall / F1 pooled over its runs' cycles and the plated lithium's MAE. The baselines estimate no
plating: their plating entries are null in the JSON, "n/a" in the table. The store must hold the
plated lithium at each cycle's end (:data:`PLATING_NEEDED`: the calibration fits SEI and dead
lithium on the truth LLI less it); the per-cycle events (:data:`PLATING_EVENTS`) are scored where
the store holds them (stores written before they were added do not: the report says so, and its
event counts are 0 and the scores NaN).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from packtwin import schema
from packtwin.data import splits
from packtwin.eval import life
from packtwin.eval.life_data_only import DataOnlyConfig

ESTIMATORS = ("twin", "twin_forecast", "sqrt_fit", "data_only")
DETERMINISTIC = ("twin", "twin_forecast", "sqrt_fit")
CYCLE_KEY = "cycles"
CALIBRATION_ONLY_KEYS = ("upto_cycle",)
REPORT_JSON, REPORT_MD = "life_report.json", "life_report.md"
NEEDED = {  # variable -> dims the life evaluation reads
    "life_temperature": schema.LIFE_SERIES_DIMS, "life_current": schema.LIFE_SERIES_DIMS,
    "life_voltage": schema.LIFE_SERIES_DIMS, "sei_thickness_end": schema.SUMMARY_DIMS,
    "lli": schema.SUMMARY_DIMS, "capacity": schema.SUMMARY_DIMS,
    "cycles_done": (schema.SCENARIO,)}
PLATING_NEEDED = {"plated_lithium_end": schema.SUMMARY_DIMS}  # with ``plating``
PLATING_EVENTS = {"plating_event": schema.SUMMARY_DIMS,  # scored with ``plating`` where present
                  "plating_margin_min": schema.SUMMARY_DIMS}
PLATING_PARAMS = ("nominal", "truth")


class LifeConfigError(splits.SelectionError):
    """The ``life`` section is malformed, or selects nothing, in the store it is run on."""


@dataclass(frozen=True)
class LifeConfig:
    """The ``life`` section of an experiment config; every field is a key."""

    calibration: dict[str, Any]
    """runs and cycles the estimators are calibrated on: scenario filters, ``cells`` and
    ``upto_cycle`` (K: truth read on cycles <= K only)"""
    splits: dict[str, dict[str, Any]]
    """name -> selection (scenario filters, ``cells``, ``cycles``), judged on cycles > K"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds of the data-only estimator (the others are deterministic)"""
    use_resistance: bool = False
    """the twin and the data-only estimator also read the discharge-start resistance"""
    data_only: DataOnlyConfig = field(default_factory=DataOnlyConfig)
    note: str = ""
    """free text at the top of the life report"""
    plating: str | None = None
    """"nominal" | "truth": also estimate plating per cycle (the core's parameters: the nominal
    cell's, or the store's truth table as an oracle), add the plated lithium to the twin's LLI and
    report plating events and plated lithium per split; None: neither"""
    plating_every: int = 1
    """with ``plating``: the plating core on every N-th cycle only (1, 1+N, ... and the last), the
    plated lithium of the cycles between interpolated, their events not estimated (left out of
    the event scores): for 1000-cycle stores"""
    cell_rates: bool = False
    """each calibration cell keeps its own SEI rate, fitted on its truth SEI of the calibration
    cycles, in every scenario (the twin and its forecast; see :func:`packtwin.eval.life.
    twin_estimates`); False: every cell starts from the nominal rate"""
    rate_from_fade: bool = True
    """the capacity fade corrects each cell's SEI rate (:class:`packtwin.physics.life_state.
    LifeModel`'s ``rate_from_fade``); False: only the dead-lithium rate, the SEI rate stays at its
    prior (the nominal rate for an uncalibrated cell). For 1000-cycle stores, where the fade's
    sensitivity to the SEI rate nearly cancels"""
    use_pulse: bool = True
    """where the store has check-up pulses (``checkup_pulse_resistance``: the generator's
    ``protocol.checkup_pulse_c_rate``), their resistance rise corrects each cell's SEI rate
    (:class:`packtwin.physics.life_state.LifeModel`'s ``use_pulse``); False: they are not read"""
    pulse_gain: str | float = "dfn"
    """what of kappa x (SEI grown) a check-up pulse reads (:func:`packtwin.eval.life.pulse_gains`):
    "dfn" (the nominal cell's gain at each run's measured temperature, from PyBaMM and the
    store's pulse protocol; 1.02 at 25 C, 1.007 at 45 C on the life-long pack) or a number for
    every run (1.0: kappa alone, as before stop 44)"""
    lithium_from: str = "capacity"
    """what measures each cell's lost lithium (:class:`packtwin.physics.life_state.LifeModel`'s
    ``lithium_from``): "capacity" (every regular cycle's fade over the calibrated capacity per
    lithium) or "checkup" (the lithium read from each check-up's slow discharge; the store needs
    check-up cycles)"""


def parse(spec: Mapping[str, Any]) -> LifeConfig:
    """A :class:`LifeConfig` from the config dict, refusing unknown or missing keys by name."""
    if not isinstance(spec, Mapping):
        raise LifeConfigError(f"config 'life' must be a mapping, got {type(spec).__name__}")
    known = {f.name for f in fields(LifeConfig)}
    _no_unknown(spec, known, "config 'life'")
    missing = [k for k in ("calibration", "splits") if not spec.get(k)]
    if missing:
        raise LifeConfigError(f"config 'life' needs {missing} (calibration: runs and upto_cycle; "
                              f"splits: name -> selection)")
    cal = dict(spec["calibration"])
    _no_unknown(cal, {*splits.SCENARIO_KEYS, "cells", *CALIBRATION_ONLY_KEYS},
                "life calibration")
    if not isinstance(cal.get("upto_cycle"), int) or cal["upto_cycle"] < 3:
        raise LifeConfigError(f"life calibration: 'upto_cycle' must be an integer >= 3 (cycles "
                              f"2..K are calibrated on), got {cal.get('upto_cycle')!r}")
    for name, sp in dict(spec["splits"]).items():
        if not isinstance(sp, Mapping):
            raise LifeConfigError(f"life split {name!r} must be a mapping, got {sp!r}")
        _no_unknown(sp, {*splits.SCENARIO_KEYS, "cells", CYCLE_KEY}, f"life split {name!r}")
    seeds = [int(s) for s in spec.get("seeds", [0, 1, 2])]
    if not seeds:
        raise LifeConfigError("config 'life': 'seeds' is empty (the data-only estimator needs one)")
    plating = spec.get("plating")
    if plating is not None and plating not in PLATING_PARAMS:
        raise LifeConfigError(f"config 'life': 'plating' must be one of {PLATING_PARAMS} or "
                              f"absent, got {plating!r}")
    every = spec.get("plating_every", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise LifeConfigError(f"config 'life': 'plating_every' must be an integer >= 1, got "
                              f"{every!r}")
    dcfg = dict(spec.get("data_only") or {})
    _no_unknown(dcfg, {f.name for f in fields(DataOnlyConfig)}, "life data_only")
    return LifeConfig(calibration=cal, splits={k: dict(v) for k, v in spec["splits"].items()},
                      seeds=seeds, use_resistance=bool(spec.get("use_resistance", False)),
                      data_only=DataOnlyConfig(**dcfg), note=str(spec.get("note", "")),
                      plating=plating, plating_every=every,
                      cell_rates=bool(spec.get("cell_rates", False)),
                      rate_from_fade=_flag(spec, "rate_from_fade", True),
                      use_pulse=_flag(spec, "use_pulse", True),
                      pulse_gain=_pulse_gain(spec),
                      lithium_from=_lithium_from(spec))


def _pulse_gain(spec: Mapping[str, Any]) -> str | float:
    value = spec.get("pulse_gain", "dfn")
    if value == "dfn":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise LifeConfigError(f"config 'life': 'pulse_gain' must be \"dfn\" or a number > 0, "
                              f"got {value!r}")
    return float(value)


def _gains(live, setting: str | float) -> dict | None:
    per_run = json.loads(live.attrs.get("pulse_gains", "null"))
    return None if per_run is None else {"setting": setting, "per_run": per_run}


def _lithium_from(spec: Mapping[str, Any]) -> str:
    from packtwin.physics.life_state import LITHIUM_SOURCES

    value = spec.get("lithium_from", "capacity")
    if value not in LITHIUM_SOURCES:
        raise LifeConfigError(f"config 'life': 'lithium_from' must be one of {LITHIUM_SOURCES}, "
                              f"got {value!r}")
    return value


def _flag(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise LifeConfigError(f"config 'life': {key!r} must be true or false, got {value!r}")
    return value


def _no_unknown(spec: Mapping, known: set, where: str) -> None:
    unknown = set(spec) - known
    if unknown:
        raise LifeConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")


def check_store(ds, source: str, plating: bool = False) -> None:
    """Refuse a store the life evaluation cannot read, naming variable, expected and found
    (with ``plating``, also the plating truth)."""
    if schema.CYCLE not in ds.dims:
        raise LifeConfigError(
            f"{source}: the life evaluation needs the {schema.CYCLE!r} dimension (per-cycle truth "
            f"on {schema.SUMMARY_DIMS}); found dims {dict(ds.sizes)}. Make the store with "
            f"`cycle_series: true` (e.g. configs/generate/life-demo.yaml)")
    missing = [n for n in PLATING_NEEDED if n not in ds.variables] if plating else []
    if missing:
        raise LifeConfigError(
            f"{source}: 'plating' needs the per-cycle plating truth {missing} (dims "
            f"{schema.SUMMARY_DIMS}), which this store does not hold; generate it again with "
            f"this packtwin, or drop 'plating' from the config")
    events = {n: d for n, d in PLATING_EVENTS.items() if n in ds.variables} if plating else {}
    for name, dims in {**NEEDED, **(PLATING_NEEDED if plating else {}), **events}.items():
        if name not in ds.variables:
            raise LifeConfigError(f"{source}: variable {name!r} is missing (expected dims {dims}); "
                                  f"make the store with `cycle_series: true`")
        if tuple(ds[name].dims) != tuple(dims):
            raise LifeConfigError(f"{source}: variable {name!r} has dims {tuple(ds[name].dims)}, "
                                  f"expected {dims}")


@dataclass(frozen=True)
class LifeSplit:
    """Positional scenarios and cells, and the judged cycle mask (over the store's cycles)."""

    scenarios: list[int]
    cells: list[int]
    cycles: np.ndarray


def _select(ds, spec: Mapping[str, Any], name: str):
    sel = {k: v for k, v in spec.items() if k not in (CYCLE_KEY, *CALIBRATION_ONLY_KEYS)}
    got = splits.select(ds, sel, name=name)
    return [int(s) for s in got.scenarios], [int(c) for c in got.cells]


def resolve(ds, cfg: LifeConfig) -> tuple[LifeSplit, dict[str, LifeSplit]]:
    """The calibration runs (cycles <= K) and every split's runs and judged cycles (> K and
    finished), refusing a split that selects no cycle."""
    cycles = ds[schema.CYCLE].values
    upto = int(cfg.calibration["upto_cycle"])
    done = life.cycles_done(ds)
    sc, ce = _select(ds, cfg.calibration, "life calibration")
    if max(done[s] for s in sc) <= upto:
        raise LifeConfigError(f"life calibration: upto_cycle {upto} is not below the cycles its "
                              f"scenarios {sc} finished ({[int(done[s]) for s in sc]}): nothing "
                              f"would be left to judge")
    calib = LifeSplit(sc, ce, cycles <= upto)
    out = {}
    for name, spec in cfg.splits.items():
        sc, ce = _select(ds, spec, f"life split {name!r}")
        want = np.ones(cycles.shape, bool)
        if spec.get(CYCLE_KEY) is not None:
            want = splits._mask(cycles, spec[CYCLE_KEY], CYCLE_KEY)  # the same {min, max} | list
            if (want & (cycles <= upto)).any():
                raise LifeConfigError(
                    f"life split {name!r}: cycles {spec[CYCLE_KEY]} reach into the calibration "
                    f"window (cycles <= upto_cycle {upto}, where the calibration and the "
                    f"sqrt(cycle) fit read truth); judge cycles > {upto}")
        judged = want & (cycles > upto) & (cycles <= max(done[s] for s in sc))
        if not judged.any():
            raise LifeConfigError(
                f"life split {name!r} selects no cycles: cycles > upto_cycle {upto}"
                + (f" within {spec[CYCLE_KEY]}" if spec.get(CYCLE_KEY) is not None else "")
                + f" of scenarios {sc}, which finished {[int(done[s]) for s in sc]} cycles "
                f"(store cycles {int(cycles.min())}..{int(cycles.max())})")
        out[name] = LifeSplit(sc, ce, judged)
    return calib, out


def describe(ds, calib: LifeSplit, split: LifeSplit) -> str:
    """What a split holds out relative to the calibration runs, from the store's coordinates."""
    parts = []
    new_cells = sorted(set(split.cells) - set(calib.cells))
    if new_cells:
        parts.append(f"unseen cells {new_cells}")
    for key, unit in (("ambient_temperature", "C"), ("discharge_c_rate", "C-rate"),
                      ("charge_c_rate", "charge C-rate")):
        if key not in ds.coords:
            continue
        vals = ds[key].values.astype(float)
        seen = vals[calib.scenarios]
        lo, hi = float(seen.min()), float(seen.max())
        for v in sorted({float(vals[s]) for s in split.scenarios}):
            if v < lo or v > hi:
                parts.append(f"{key} {v:g} ({v - (hi if v > hi else lo):+g} {unit} beyond the "
                             f"calibration's {lo:g}..{hi:g})")
            elif not np.isclose(seen, v).any():
                parts.append(f"{key} {v:g} (within the calibration's range, not calibrated on)")
    return ", ".join(parts) or "the calibration runs' conditions and cells (cycles only)"


def twin_estimates(ds, cfg: LifeConfig, calib: LifeSplit, source: str = "store") -> tuple:
    """:func:`packtwin.eval.life.twin_estimates` with ``cfg``'s settings, calibrated on ``calib``
    (:func:`resolve`): (model, live, forecast, cost)."""
    upto = int(cfg.calibration["upto_cycle"])
    return life.twin_estimates(ds, calib.scenarios, calib.cells, upto, cfg.use_resistance,
                               cfg.plating, cfg.cell_rates, cfg.plating_every,
                               cfg.rate_from_fade, cfg.lithium_from, cfg.use_pulse,
                               cfg.pulse_gain, source)


def evaluate(ds, cfg: LifeConfig, source: str = "store") -> dict:
    """The life report (a JSON-able dict) of ``cfg`` on a loaded life store."""
    from packtwin.eval import life_data_only
    from packtwin.physics.life_pack import cell_life

    check_store(ds, source, plating=cfg.plating is not None)
    calib, split_sel = resolve(ds, cfg)
    upto = int(cfg.calibration["upto_cycle"])
    model, live, forecast, cost = twin_estimates(ds, cfg, calib, source)
    runs = sorted({(s, c) for sp in split_sel.values() for s in sp.scenarios for c in sp.cells})
    measured = {r: cell_life(ds, *r, use_resistance=cfg.use_resistance) for r in runs}
    truth = {r: life.run_truth(ds, *r) for r in runs}
    fitted = fit_data_only(ds, cfg, calib)
    cycles = ds[schema.CYCLE].values
    done = life.cycles_done(ds)
    sei0 = model.L_0 * 1e9
    report_splits = {}
    for name, sp in split_sel.items():
        per_run = []
        for s in sp.scenarios:
            judged = sp.cycles & (cycles <= done[s])
            if not judged.any():
                continue
            for c in sp.cells:
                n = measured[(s, c)].sizes[schema.CYCLE]
                ests = {"twin": life.run_estimate(live, s, c),
                        "twin_forecast": life.run_estimate(forecast, s, c),
                        "sqrt_fit": life.sqrt_baseline(cycles, truth[(s, c)], upto)}
                for seed, m in fitted.items():
                    pred = life_data_only.predict(m, measured[(s, c)])
                    ests[f"data_only/{seed}"] = {k: _pad(v, len(cycles), n)
                                                 for k, v in pred.items()}
                per_run.append({"scenario": s, "cell": c, **{
                    k: life.run_metrics(truth[(s, c)], e, judged, sei0) for k, e in ests.items()}})
        report_splits[name] = _summarise(ds, calib, sp, per_run, cfg.seeds)
        if cfg.plating is not None:
            report_splits[name]["plating"] = plating_rows(
                ds, sp, {"twin": live, "twin_forecast": forecast})
    has_pulses = "checkup_pulse_resistance" in ds.variables
    return {"store": source, "note": cfg.note,
            "plating": None if cfg.plating is None else {
                "params": cfg.plating, "every": cfg.plating_every, "cost": cost,
                "lli_includes_plated": True,
                "events_scored": "plating_event" in ds.variables,
                "units": {"plated_lithium_mae": "mol/m3", "plated_lithium_true_mean": "mol/m3"}},
            "calibration": {"scenarios": calib.scenarios, "cells": calib.cells,
                            "upto_cycle": upto, "use_resistance": cfg.use_resistance,
                            "pulses": {"in_store": has_pulses,
                                       "read": cfg.use_pulse and has_pulses,
                                       "film_gain": _gains(live, cfg.pulse_gain)},
                            "cell_rates": {int(k): v for k, v in json.loads(
                                live.attrs.get("calibrated_cell_rates", "{}")).items()},
                            "selection": cfg.calibration,
                            "twin_model": {f.name: getattr(model, f.name) for f in fields(model)},
                            "data_only": {**asdict(cfg.data_only), "seeds": cfg.seeds,
                                          "rows": fitted[cfg.seeds[0]].rows,
                                          "features": list(life_data_only.FEATURES)}},
            "targets": life.TARGETS, "splits": report_splits, "coverage": coverage(ds, calib)}


def plating_rows(ds, sp: LifeSplit, estimates: Mapping[str, Any]) -> dict:
    """estimator -> plating scores on a split's judged cycles (None for an estimator without a
    plating estimate): event precision / recall / F1 and counts pooled over the split's runs and
    cycles (:func:`packtwin.eval.metrics.event_scores`), plated lithium at cycle end MAE and true
    mean [mol/m3]."""
    from packtwin.eval.metrics import event_scores

    done = life.cycles_done(ds)
    cycles = ds[schema.CYCLE].values
    sel = np.zeros(tuple(ds.sizes[d] for d in schema.SUMMARY_DIMS), bool)
    for s in sp.scenarios:
        sel[s, sp.cells] = sp.cycles & (cycles <= done[s])
    pl_t = ds["plated_lithium_end"].values[sel]
    # a store without per-cycle events (written before they were added): none scored (NaN)
    truth_ev = ds["plating_event"].values[sel] if "plating_event" in ds.variables else \
        np.full(pl_t.shape, np.nan)
    out: dict[str, Any] = {}
    for name in ESTIMATORS:
        est = estimates.get(name)
        if est is None or "plating_event_est" not in est:
            out[name] = None  # no plating estimate: not a number to compare
            continue
        pl_e = est["plated_lithium_end_est"].values[sel]
        ok = np.isfinite(pl_t) & np.isfinite(pl_e)
        out[name] = {**event_scores(truth_ev, est["plating_event_est"].values[sel]),
                     "plated_lithium_mae": float(np.mean(np.abs(pl_e[ok] - pl_t[ok]))),
                     "plated_lithium_true_mean": float(np.mean(pl_t[ok]))}
    return out


def fit_data_only(ds, cfg: LifeConfig, calib: LifeSplit) -> dict:
    """seed -> the data-only estimator fitted on the calibration runs, reading their truth of
    cycles <= upto_cycle only (:func:`packtwin.eval.life_data_only.fit`), as the twin's
    calibration does."""
    from packtwin.eval import life_data_only
    from packtwin.physics.life_pack import cell_life

    runs = [(cell_life(ds, s, c, use_resistance=cfg.use_resistance), life.run_truth(ds, s, c))
            for s in calib.scenarios for c in calib.cells]
    return {seed: life_data_only.fit(runs, int(cfg.calibration["upto_cycle"]), seed,
                                     cfg.data_only, cfg.use_resistance) for seed in cfg.seeds}


def _pad(v: np.ndarray, n_all: int, n: int) -> np.ndarray:
    out = np.full(n_all, np.nan)
    out[:n] = v
    return out


def _summarise(ds, calib: LifeSplit, sp: LifeSplit, per_run: list, seeds: list[int]) -> dict:
    keys = list(life.TARGETS) + ["sei_growth_nm"]

    def mean_over_runs(est: str) -> dict:
        return {k: float(np.mean([r[est][k] for r in per_run])) for k in keys}

    est = {e: {"deterministic": True, "mean": mean_over_runs(e)} for e in DETERMINISTIC}
    by_seed = [mean_over_runs(f"data_only/{s}") for s in seeds]
    est["data_only"] = {"deterministic": False, "seeds": seeds,
                        "mean": {k: float(np.mean([b[k] for b in by_seed])) for k in keys},
                        "std": {k: float(np.std([b[k] for b in by_seed])) for k in keys},
                        "per_seed": by_seed}
    twin = est["twin"]["mean"]
    judged = ds[schema.CYCLE].values[sp.cycles]
    return {"holds_out": describe(ds, calib, sp), "scenarios": sp.scenarios, "cells": sp.cells,
            "cycles": [int(judged.min()), int(judged.max())], "runs": len(per_run),
            "estimators": est, "twin_meets_targets": life.meets_targets(twin),
            "twin_better_than_baselines": {
                k: bool(twin[k] < est["sqrt_fit"]["mean"][k] and twin[k] <
                        est["data_only"]["mean"][k]) for k in life.TARGETS},
            "per_run": per_run}


def coverage(ds, calib: LifeSplit) -> list[str]:
    """What the store cannot hold out (one line each): a single C-rate or temperature."""
    lines = []
    for key, what in (("discharge_c_rate", "C-rate"),
                      ("ambient_temperature", "ambient temperature")):
        if key in ds.coords:
            vals = sorted({float(v) for v in ds[key].values})
            if len(vals) < 2:
                lines.append(f"no unseen {what} split: the store holds only {key} {vals}")
    return lines


def run(spec: Mapping[str, Any], store_path: str, out: str | Path) -> dict:
    """Parse the ``life`` section, evaluate it on ``store_path`` and write the report files into
    ``out`` (the evaluation's claimed folder)."""
    import xarray as xr

    from packtwin.data import outputs
    from packtwin.data import store as storemod
    from packtwin.eval import life_report

    cfg = parse(spec)
    ds = storemod.open_store(store_path, check=False)
    source = f"store {str(store_path)!r}"
    check_store(ds, source, plating=cfg.plating is not None)
    keep = [v for v in (*NEEDED, *PLATING_NEEDED, *PLATING_EVENTS, "checkup", "status",
                        "checkup_pulse_resistance")
            if v in ds.variables]
    keep += [v for v in ds.data_vars if str(v).startswith("param_")]  # plating: truth
    ds = xr.Dataset({v: ds[v] for v in keep}, attrs=ds.attrs).load()
    rep = evaluate(ds, cfg, source=str(store_path))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_text(out / REPORT_JSON, json.dumps(rep, indent=1))
    outputs.write_text(out / REPORT_MD, life_report.markdown(rep))
    return rep
