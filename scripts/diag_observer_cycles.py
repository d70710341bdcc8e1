"""Per-cycle errors of the observers' evaluate rows, and a check of why the second cycle is worse.

    python scripts/diag_observer_cycles.py reports/observer [reports/observer_loaded ...] \
        --out reports/diag_observer_cycles.json

Reads each evaluate output folder made with ``save_predictions: true`` (``metrics.zarr``'s
config names the store; ``predictions/<observer>_<split>.zarr``) and scores every observer on
each cycle (snapshot) alone, from the sample it started at, with the same metrics as evaluate;
``pooled`` repeats the report's figures over both cycles (every row of ``metrics.zarr``).
Per cell and cycle also ``time_to_below_1pct_s`` (from the cycle's first estimate, the time
after which the worse electrode's whole-field c_s RMSE stays below 1 % of c_max to the cycle's
end; null: never) and ``field_error_at_10min_pct`` (that error 10 min after the start).
With ``observer_carry`` a cycle that goes on from the previous one's final estimate is scored
from its sample 0 (as evaluate does) and marked ``carried``; the others from their start.

One suspected cause of the larger second-cycle error is checked on the truth store: a cycle's
first voltage, read as an open-circuit voltage, is not relaxed. Cycle 1 starts from PyBaMM's
rested initial state; cycle 2 starts ``protocol.rest_s`` after the CV hold ends. Per cycle this
writes (a) the observer's SOC error at its first sample (its prior, read from that voltage; the
SOC is the core's own window, the truth's PyBaMM's, so cycle 1's value is the definitional
offset and the cycle-2 minus cycle-1 difference is what the start adds) and its c_s RMSE over
the whole field at that sample (SOC and particle shapes together), and (b) how fast the
truth's voltage still moves at the end of the rest that precedes cycle 2 (the last samples of
cycle 1's log: that rest IS cycle 2's start) [mV per minute]. Also the store's loss of lithium
inventory per cycle (the other suspect: the core starts every cycle with the fresh cell's
lithium and SEI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin import schema  # noqa: E402
from packtwin.data import store  # noqa: E402
from packtwin.eval import evaluate, metrics, observer_bench, observer_predict  # noqa: E402

METRICS = ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse", "soc_mae")


def _first_valid(pred: xr.Dataset) -> np.ndarray:
    """[scenario, cell, snapshot] index of each cycle's first finite estimate."""
    ok = np.isfinite(pred["soc"].transpose(schema.SCENARIO, schema.CELL, schema.SNAPSHOT,
                                           schema.TIME).values)
    return ok.argmax(-1)


def cycle_rows(folder: Path, truth: xr.Dataset, observers: list[str], split_names: list[str]
               ) -> list[dict]:
    rows = []
    for split in split_names:
        for obs in observers:
            path = folder / "predictions" / f"{obs}_{split}.zarr"
            if not path.exists():
                continue
            pred = xr.open_zarr(path, consolidated=False).load()
            period = float(truth.attrs["period_s"])
            first = _first_valid(pred)
            prev = _carried(truth, pred)  # [scenario, snapshot]: -1 where from a prior
            for k, snap in enumerate(pred[schema.SNAPSHOT].values):
                one = pred.isel({schema.SNAPSHOT: [k]})
                # scored from the cycle's first estimate: its start, or 0 where carried
                start = int(first[:, :, k].min())
                m = metrics.compute_metrics(evaluate.from_sample(truth, start), one)
                soc0, cs0 = [], {"c_s_n": [], "c_s_p": []}
                for s in range(pred.sizes[schema.SCENARIO]):
                    for c in range(pred.sizes[schema.CELL]):
                        t0 = int(first[s, c, k])
                        lab = {schema.SCENARIO: pred[schema.SCENARIO].values[s],
                               schema.CELL: pred[schema.CELL].values[c],
                               schema.SNAPSHOT: snap,
                               # a label: the time coordinate is in seconds, t0 a position
                               schema.TIME: truth[schema.TIME].values[t0]}
                        soc0.append(float(pred["soc"].isel({schema.SCENARIO: s, schema.CELL: c,
                                                            schema.SNAPSHOT: k,
                                                            schema.TIME: t0}))
                                    - float(truth["soc"].sel(lab)))
                        for f in cs0:  # the prior's whole-field error, SOC and shape together
                            e = pred[f].isel({schema.SCENARIO: s, schema.CELL: c,
                                              schema.SNAPSHOT: k, schema.TIME: t0}).values \
                                - truth[f].sel(lab).values
                            cs0[f].append(100 * float(np.sqrt(np.mean(e ** 2)))
                                          / metrics.c_max_of(truth, f))
                settle = [settling(pred, truth, s, c, k, int(first[s, c, k]), period)
                          for s in range(pred.sizes[schema.SCENARIO])
                          for c in range(pred.sizes[schema.CELL])]
                rows.append({"folder": str(folder), "split": split, "observer": obs,
                             "snapshot": int(snap), "start_s": start * period,
                             "carried": bool((prev[:, k] >= 0).all()),
                             **{n: float(m[f"pack_{n}"]) for n in METRICS},
                             "start_soc_error_points": [100 * e for e in soc0],
                             **{f"start_{f}_rmse_pct": v for f, v in cs0.items()},
                             # per cell (scenario-major): from the cycle's first estimate on
                             "time_to_below_1pct_s": [x[0] for x in settle],
                             "field_error_at_10min_pct": [x[1] for x in settle]})
    return rows


def settling(pred: xr.Dataset, truth: xr.Dataset, s: int, c: int, k: int, t0: int,
             period: float, level: float = 1.0) -> tuple[float | None, float | None]:
    """One cell's cycle k from its first estimate t0: the time after which the worse
    electrode's whole-field c_s RMSE stays below ``level`` % of c_max to the cycle's end
    (issue #9 item 4; None: not within the cycle), and that error 10 min after t0 (None where
    the cycle is shorter)."""
    ok = np.isfinite(pred["soc"].isel({schema.SCENARIO: s, schema.CELL: c,
                                       schema.SNAPSHOT: k}).values)
    end = int(np.flatnonzero(ok)[-1]) + 1
    lab = {schema.SCENARIO: pred[schema.SCENARIO].values[s],
           schema.CELL: pred[schema.CELL].values[c],
           schema.SNAPSHOT: pred[schema.SNAPSHOT].values[k]}
    worst = None
    for f in ("c_s_n", "c_s_p"):
        e = pred[f].isel({schema.SCENARIO: s, schema.CELL: c, schema.SNAPSHOT: k}) \
            .transpose(schema.TIME, ...).values[t0:end] \
            - truth[f].sel(lab).transpose(schema.TIME, ...).values[t0:end]
        rms = 100 * np.sqrt(np.mean(e.reshape(len(e), -1) ** 2, axis=1)) \
            / metrics.c_max_of(truth, f)
        worst = rms if worst is None else np.maximum(worst, rms)
    t = np.arange(len(worst)) * period
    i10 = int(round(600.0 / period))
    return (observer_bench.time_below(t, worst, level),
            float(worst[i10]) if i10 < len(worst) else None)


def _carried(truth: xr.Dataset, pred: xr.Dataset) -> np.ndarray:
    """[scenario, snapshot] of the prediction: the snapshot each cycle went on from, -1 where it
    started from a prior (``attrs["carry"]`` 0 or absent: every cycle)."""
    if not int(pred.attrs.get("carry", 0)):
        return np.full((pred.sizes[schema.SCENARIO], pred.sizes[schema.SNAPSHOT]), -1)
    pos = {d: [int(np.flatnonzero(truth[d].values == v)[0]) for v in pred[d].values]
           for d in (schema.SCENARIO, schema.CELL, schema.SNAPSHOT)}
    return observer_predict.carried_selection(truth, pos[schema.SCENARIO], pos[schema.CELL],
                                              pos[schema.SNAPSHOT])


def start_relaxation(truth: xr.Dataset, rest_s: float) -> list[dict]:
    """Per scenario and cell: the truth's voltage drift at the end of the rest before cycle 2
    (the last samples of snapshot 0) and the loss of lithium inventory per cycle."""
    period = float(truth.attrs["period_s"])
    out = []
    valid = truth["valid"].values > 0  # [scenario, snapshot, time]
    for s in range(truth.sizes[schema.SCENARIO]):
        n = int(valid[s, 0].sum())
        if n < 2:  # a scenario that failed to generate (its status and message in the store)
            continue
        last = max(1, int(round(60.0 / period)))  # samples in the last minute
        for c in range(truth.sizes[schema.CELL]):
            v = truth["voltage"].isel({schema.SCENARIO: s, schema.CELL: c,
                                       schema.SNAPSHOT: 0}).values[:n]
            i = truth["current"].isel({schema.SCENARIO: s, schema.CELL: c,
                                       schema.SNAPSHOT: 0}).values[:n]
            rest = int(round(rest_s / period))
            out.append({
                "scenario": s, "cell": c,
                "current_in_final_rest_a": float(np.abs(i[-rest:]).max()),
                "voltage_drift_last_minute_mv_per_min": 1e3 * float(v[-1] - v[-1 - last])
                * 60.0 / (last * period),
                "voltage_drift_over_final_rest_mv": 1e3 * float(v[-1] - v[-rest]),
                "lli_pct_by_cycle": [float(x) for x in truth["lli"].isel(
                    {schema.SCENARIO: s, schema.CELL: c}).values],
                "soc_at_cycle_start": [float(x) for x in truth["soc"].isel(
                    {schema.SCENARIO: s, schema.CELL: c, schema.TIME: 0}).values]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="evaluate output folders (save_predictions)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "diag_observer_cycles.json"))
    args = ap.parse_args(argv)
    rows, truth, cfg0, pooled = [], None, None, {}
    for f in map(Path, args.folders):
        ds = xr.open_zarr(f / "metrics.zarr", consolidated=False)
        cfg = json.loads(ds.attrs["config"])
        # the report's pooled figures (both cycles), next to the per-cycle ones
        pooled[str(f)] = {str(sp): {str(v): {n: float(ds[f"pack_{n}"].sel(split=sp, variant=v)
                                                      .isel(seed=0))
                                             for n in METRICS if f"pack_{n}" in ds}
                                    for v in ds["variant"].values if v != "pybamm"}
                          for sp in ds["split"].values}
        truth = truth if truth is not None and cfg0["store"] == cfg["store"] else \
            store.open_store(cfg["store"]).load()
        cfg0 = cfg
        rows += cycle_rows(f, truth, cfg["observers"], list(ds["split"].values))
    gen = json.loads(truth.attrs.get("generator_config", "{}"))
    rest_s = float(gen.get("protocol", {}).get("rest_s", 300.0))
    result = {"command": " ".join(["scripts/diag_observer_cycles.py"] + (argv or sys.argv[1:])),
              "store": cfg0["store"], "rest_s": rest_s, "pooled": pooled, "cycles": rows,
              "start_relaxation": start_relaxation(truth, rest_s)}
    for r in rows:
        print(f"{Path(r['folder']).name:18s} {r['split']:16s} {r['observer']:9s} cycle "
              f"{r['snapshot'] + 1} ({'carried' if r['carried'] else 'prior'}): "
              f"n {r['c_s_n_rmse_pct']:.2f} % p {r['c_s_p_rmse_pct']:.2f} % "
              f"V {r['voltage_rmse']:.1f} mV, start SOC error "
              f"{np.round(r['start_soc_error_points'], 2).tolist()} points, start c_s n "
              f"{np.round(r['start_c_s_n_rmse_pct'], 2).tolist()} p "
              f"{np.round(r['start_c_s_p_rmse_pct'], 2).tolist()} %")
    for r in result["start_relaxation"]:
        print(f"scenario {r['scenario']} cell {r['cell']}: drift at the end of the rest before "
              f"cycle 2 {r['voltage_drift_last_minute_mv_per_min']:.2f} mV/min "
              f"({r['voltage_drift_over_final_rest_mv']:.1f} mV over the rest), LLI "
              f"{r['lli_pct_by_cycle']} %, SOC at cycle starts {r['soc_at_cycle_start']}")
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
