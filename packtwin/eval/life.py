"""The twin over life on a pack store, judged: ``python -m packtwin.eval.life --store S --out E``.

Calibrates :mod:`packtwin.physics.life_twin` on some scenarios' cells and early cycles (truth read
only there), runs :func:`packtwin.physics.life_pack.track_pack` on every cell of the store (live:
corrected by every cycle's measurements; forecast: corrected only up to the calibration window,
then carried by the growth law and the measured temperature), writes the estimates as a Zarr store
on the truth store's (scenario, cell, cycle) grid and reports errors beyond the calibration window
against a per-cell sqrt(cycle) fit of the truth over that window:

* seen cells at the calibration scenarios, unseen cells there, and the other scenarios (another
  ambient temperature or C-rate than calibration);
* SEI MAE in nm and in % of the SEI grown, lost lithium MAE in percentage points, capacity MAE in %
  (regular cycles only: a check-up's slow capacity is another quantity);
* plating (``--plating``, :mod:`packtwin.eval.plating_life`): per-cycle plating events from the
  reduced core driven by each cycle's V/I/T and the live twin's lithium and SEI, scored against
  PyBaMM's (margin below 0 V) over every cycle, with the plated lithium's error. The twin's (and
  its forecast's) lost lithium then includes its estimated lithium still plated at each cycle's
  end, as PyBaMM's LLI does (:mod:`packtwin.physics.lli`); without ``--plating`` it leaves that
  out (the report's ``calibration.lli_includes_plated``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from packtwin import schema
from packtwin.errors import PacktwinError

ESTIMATE_KIND = "life_estimate"
LIFE_VARIANT = "life twin"  # its name in the pack explorer (``packtwin app --predictions``)
TARGETS = {"sei_mae_nm": 1.0, "sei_mae_pct_of_growth": 5.0, "lli_mae_points": 0.2,
           "capacity_mae_pct": 0.5}  # issue 10


def sqrt_fit(cycles: np.ndarray, values: np.ndarray, upto: int) -> np.ndarray:
    """Baseline: a + b sqrt(cycle) fitted on cycles 2..upto of one run, evaluated everywhere
    (NaN values, e.g. check-ups, left out of the fit)."""
    sel = (cycles >= 2) & (cycles <= upto) & np.isfinite(values)
    A = np.stack([np.ones(sel.sum()), np.sqrt(cycles[sel])], axis=1)
    coef, *_ = np.linalg.lstsq(A, values[sel], rcond=None)
    return coef[0] + coef[1] * np.sqrt(cycles)


def run_metrics(truth: dict, est: dict, judged: np.ndarray, sei_start: float) -> dict:
    """Errors of one run over the judged cycles (``capacity`` judged where both are finite)."""
    sei_t = truth["sei_thickness_end"][judged]
    growth = float(np.nanmax(truth["sei_thickness_end"]) - sei_start)
    sei_mae = float(np.nanmean(np.abs(est["sei"][judged] - sei_t)))
    cap = judged & np.isfinite(truth["capacity"]) & np.isfinite(est["capacity"])
    return {
        "sei_mae_nm": sei_mae,
        "sei_mae_pct_of_growth": 100.0 * sei_mae / growth,
        "sei_growth_nm": growth,
        "lli_mae_points": float(np.nanmean(np.abs(est["lli"][judged] - truth["lli"][judged]))),
        "capacity_mae_pct": float(100 * np.mean(np.abs(est["capacity"][cap]
                                                        / truth["capacity"][cap] - 1))),
    }


def cycles_done(ds) -> np.ndarray:
    """Cycles each scenario finished (0 where never run)."""
    return np.nan_to_num(ds["cycles_done"].values).astype(int)


def run_truth(ds, s: int, c: int) -> dict:
    """Truth of one run by cycle: SEI [nm], lost lithium [%], capacity [A h] (NaN at check-ups:
    a slow capacity is another quantity than the regular cycles' one)."""
    truth = {v: ds[v].values[s, c].astype(float) for v in ("sei_thickness_end", "lli", "capacity")}
    if "checkup" in ds.variables:
        truth["capacity"] = np.where(ds["checkup"].values[s, c] == 1, np.nan, truth["capacity"])
    return truth


def run_estimate(est, s: int, c: int) -> dict:
    """One run of an estimate store (``sei_thickness_est``, ``lli_est``, ``capacity_est``) in
    :func:`run_metrics`' keys."""
    return {k: est[v].values[s, c] for k, v in (("sei", "sei_thickness_est"), ("lli", "lli_est"),
                                                ("capacity", "capacity_est"))}


def sqrt_baseline(cycles: np.ndarray, truth: dict, upto: int) -> dict:
    """:func:`sqrt_fit` of each truth of one run (:func:`run_truth`) on its cycles <= upto."""
    return {k: sqrt_fit(cycles, truth[v], upto) for k, v in
            (("sei", "sei_thickness_end"), ("lli", "lli"), ("capacity", "capacity"))}


def meets_targets(metrics: dict) -> dict:
    return {k: bool(metrics[k] <= v) for k, v in TARGETS.items()}


def judge(ds, live, forecast, calib_scenarios: Sequence[int], calib_cells: Sequence[int],
          upto: int, sei_start: float) -> dict:
    """Per-run and grouped errors of the live twin, the forecast and the sqrt(cycle) fit."""
    cycles = ds[schema.CYCLE].values
    done = cycles_done(ds)
    rows = []
    for s in range(ds.sizes[schema.SCENARIO]):
        judged = (cycles > upto) & (cycles <= done[s])
        if not judged.any():
            continue
        for c in range(ds.sizes[schema.CELL]):
            truth = run_truth(ds, s, c)
            methods = {name: run_estimate(e, s, c)
                       for name, e in (("twin", live), ("twin_forecast", forecast))}
            methods["sqrt_fit"] = sqrt_baseline(cycles, truth, upto)
            group = ("other_scenarios" if s not in calib_scenarios else
                     "seen_cells" if c in calib_cells else "unseen_cells")
            rows.append({"scenario": s, "cell": c, "group": group,
                         "ambient_c": float(ds["ambient_temperature"].values[s]),
                         **{m: run_metrics(truth, e, judged, sei_start)
                            for m, e in methods.items()}})
    groups = {}
    for g in ("seen_cells", "unseen_cells", "other_scenarios"):
        sel = [r for r in rows if r["group"] == g]
        if sel:
            groups[g] = {"runs": len(sel), **{m: {k: float(np.mean([r[m][k] for r in sel]))
                                                  for k in sel[0][m]}
                                              for m in ("twin", "twin_forecast", "sqrt_fit")}}
            groups[g]["twin_meets_targets"] = meets_targets(groups[g]["twin"])
    return {"groups": groups, "per_run": rows}


def twin_estimates(ds, calib_scenarios: Sequence[int], calib_cells: Sequence[int], upto: int,
                   use_resistance: bool = False, plating: str | None = None,
                   cell_rates: bool = False, plating_every: int = 1,
                   rate_from_fade: bool = True, lithium_from: str = "capacity",
                   use_pulse: bool = True, pulse_gain: str | float = "dfn",
                   source: str = "store") -> tuple:
    """The twin calibrated on the given runs' cycles <= upto, and its estimates of every run:
    (model, live: corrected by every cycle, forecast: corrected only up to ``upto``, cost).

    With ``plating`` ("nominal" | "truth": the core's parameters, see
    :mod:`packtwin.eval.plating_life`) each of the two also estimates plating per cycle from
    V/I/T and its own lost lithium and SEI, and its ``lli_est`` is PyBaMM's LLI: SEI and dead
    lithium plus the estimated lithium still plated at the cycle's end; the calibration then
    fits the SEI and dead lithium alone (truth LLI less the true plated lithium, calibration
    cycles only). Without, ``lli_est`` leaves the plated lithium out. ``cost``: the plating
    estimates' cost per estimator (empty without plating). ``cell_rates``: each calibration
    cell keeps its own SEI rate fitted on its truth SEI of cycles <= upto
    (:func:`packtwin.physics.life_pack.calibrate_rates`; in every scenario, since a store's cells
    are physical cells); the other cells start from the nominal rate. ``plating_every``: the
    plating core on every N-th cycle only, the plated lithium between interpolated
    (:func:`packtwin.physics.plating.plating_over_life`'s ``every``). ``rate_from_fade``: the
    twin's :class:`packtwin.physics.life_state.LifeModel` field of that name, as is
    ``lithium_from`` ("capacity" | "checkup": what measures the lost lithium) and ``use_pulse``
    (read the check-up pulses' resistance where the store has them). ``pulse_gain``: what of
    kappa x (SEI grown) a pulse reads: "dfn" (the nominal cell's gain at each run's measured
    temperature, computed in PyBaMM from the store's pulse protocol,
    :mod:`packtwin.sim.pulse_gain`) or a number for every run (1.0: kappa alone); ``source``
    names the store in its errors."""
    from packtwin.eval import plating_life
    from packtwin.physics.life_pack import calibrate_pack, calibrate_rates, track_pack
    from packtwin.physics.life_state import life_model

    model = calibrate_pack(ds, calib_scenarios, calib_cells, upto_cycle=upto,
                           model=life_model(rate_from_fade=rate_from_fade,
                                            lithium_from=lithium_from, use_pulse=use_pulse),
                           use_resistance=use_resistance, plated_apart=plating is not None)
    rates = calibrate_rates(ds, calib_scenarios, calib_cells, upto, model) if cell_rates else None
    gains = pulse_gains(ds, model, pulse_gain, source)
    live = track_pack(ds, model, use_resistance=use_resistance, rates=rates, pulse_gains=gains)
    forecast = track_pack(ds, model, update_until=upto, use_resistance=use_resistance,
                          rates=rates, pulse_gains=gains)
    cost = {}
    if plating is not None:
        live, cost["twin"] = plating_life.add_plated(ds, live, params=plating,
                                                     every=plating_every)
        forecast, cost["twin_forecast"] = plating_life.add_plated(ds, forecast, params=plating,
                                                                  every=plating_every)
    return model, live, forecast, cost


def pulse_gains(ds, model, pulse_gain: str | float, source: str = "store") -> np.ndarray | None:
    """Each run's pulse film gain (scenario, cell), or None where no pulse is read (the store has
    none, or ``model.use_pulse`` is off). ``pulse_gain``: "dfn" | a number > 0."""
    if not model.use_pulse or "checkup_pulse_resistance" not in ds.variables:
        return None
    shape = (ds.sizes[schema.SCENARIO], ds.sizes[schema.CELL])
    if isinstance(pulse_gain, str):
        if pulse_gain != "dfn":
            raise ValueError(f"pulse_gain must be 'dfn' or a number > 0, got {pulse_gain!r}")
        from packtwin.sim.pulse_gain import store_gains

        return store_gains(ds, model.kappa, source)
    if isinstance(pulse_gain, bool) or not float(pulse_gain) > 0:
        raise ValueError(f"pulse_gain must be 'dfn' or a number > 0, got {pulse_gain!r}")
    return np.full(shape, float(pulse_gain))


def run(store: str, out: str | None, calib_scenarios: Sequence[int],
        calib_cells: Sequence[int] | None, upto: int, use_resistance: bool = False,
        plating: str | None = None) -> dict:
    import dataclasses

    from packtwin.data import outputs
    from packtwin.data import store as storemod
    from packtwin.eval import plating_life

    ds = storemod.open_store(store).load()
    n_cells = ds.sizes[schema.CELL]
    cells = list(range(max(1, n_cells // 2))) if calib_cells is None else list(calib_cells)
    bad = [c for c in cells if not 0 <= c < n_cells] + \
        [s for s in calib_scenarios if not 0 <= s < ds.sizes[schema.SCENARIO]]
    if bad:
        raise ValueError(f"calibration cells/scenarios {bad} are not in the store {store!r} "
                         f"({n_cells} cells, {ds.sizes[schema.SCENARIO]} scenarios)")
    if out:
        outputs.guard(out, ESTIMATE_KIND, [store], what="--out")
    if plating:  # before the twin's run: a store without the plating truth is refused first
        schema.require_summaries(ds, plating_life.TRUTH[:2], "the plating-event score",
                                 f"store {str(store)!r}")
    model, live, forecast, cost = twin_estimates(ds, calib_scenarios, cells, upto, use_resistance,
                                                 plating, source=str(store))
    report = {"store": str(store), "calibration": {
        "scenarios": list(calib_scenarios), "cells": cells, "upto_cycle": upto,
        "use_resistance": use_resistance, "lli_includes_plated": bool(plating),
        **{f.name: getattr(model, f.name) for f in dataclasses.fields(model)}},
        "judged": f"cycles > {upto} of every cell",
        **judge(ds, live, forecast, calib_scenarios, cells, upto, model.L_0 * 1e9)}
    if plating:
        report["plating"] = {**plating_life.judge(ds, live, f"store {str(store)!r}"),
                             "cost": cost["twin"], "cost_forecast": cost["twin_forecast"]}
    if out:
        est = live.copy()
        # the pack explorer's predictions contract: a schema version and a variant name
        est.attrs.update({"schema_version": schema.SCHEMA_VERSION, "variant": LIFE_VARIANT,
                          "source_store": str(store), "calibration": json.dumps(
                              report["calibration"])})
        with outputs.replace(out, ESTIMATE_KIND) as tmp:
            est.to_zarr(tmp, consolidated=False)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m packtwin.eval.life",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True, help="pack store made with cycle_series: true")
    ap.add_argument("--out", default=None, help="Zarr store for the estimates (optional)")
    ap.add_argument("--report", default=None, help="JSON report path (default: print only)")
    ap.add_argument("--calib-scenarios", type=int, nargs="+", default=[0])
    ap.add_argument("--calib-cells", type=int, nargs="+", default=None,
                    help="default: the first half of the cells")
    ap.add_argument("--calib-cycles", type=int, default=50)
    ap.add_argument("--plating", choices=("nominal", "truth"), default=None,
                    help="also estimate and score plating per cycle, the core with the nominal "
                         "cell's parameters or (oracle) the store's truth table, and add the "
                         "estimated lithium still plated to the twin's lost lithium")
    ap.add_argument("--use-resistance", action="store_true",
                    help="also correct by the discharge-start resistance (see life_pack)")
    args = ap.parse_args(argv)
    try:
        report = run(args.store, args.out, args.calib_scenarios, args.calib_cells,
                     args.calib_cycles, args.use_resistance, args.plating)
    except (PacktwinError, ValueError, OSError) as exc:
        print(f"packtwin.eval.life: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=1)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text)
    print(json.dumps(report["groups"], indent=1))
    if "plating" in report:
        print(json.dumps({"plating": {k: report["plating"][k] for k in ("pooled", "cost")}},
                         indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
