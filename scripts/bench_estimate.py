"""Coverage of ``packtwin estimate``'s seed-ensemble band, raw and calibrated, on a simulated pack.

    .venv/bin/python scripts/bench_estimate.py --store data/demo.zarr \
        --checkpoints reports/ablation_demo/runs/physics/seed{0,1,2}/model.ckpt \
        [--scenarios 2,6,7,8,10,12 --calibrate-scenarios 2,6,7 --calibrate-cells 0,1 \
         --snapshots 1 --steps 150] [--out reports/bench_estimate.json]

Every cell of the selected scenarios is estimated as ``packtwin estimate`` does (each cell new,
its embedding fitted from V/I/T alone, once per checkpoint, over all the selected scenarios at
once), then compared with the store's hidden truth, which the estimate never reads:

- for each nominal level, the share of truth values inside mean +- k std (the Student-t band
  recorded in the estimate's attrs), per variable, over every valid sample, cell and grid point;
- the same for the members' [min, max] (nominal (K-1)/(K+1));
- the ratio of the mean's RMSE to the RMS spread (1 would be a spread as large as the error);
- coverage at the default level per cell and per scenario;
- ``calibrated``: for each level, the band calibrated (``packtwin.eval.estimate.make_calibration``,
  split-conformal scaling) on the calibration scenarios x calibration cells only, and its raw
  and calibrated coverage on four splits: the calibration entries themselves, the test scenarios
  (the other ones), the held-out cells (the other ones), and both held out.

The default scenarios of the demo pack (``configs/generate/demo.yaml``) are one per condition:
10 and 25 degC 1C constant current and 25 degC pulse (train-like conditions: the calibration
ones), 45 and -10 degC 1C, 25 degC 2C (the test ones); the default snapshot is the second cycle,
never trained on. Cells 0-2 were trained on (as other cells in the demo ablation), cell 3 never;
here all four are fitted as new cells; cells 0-1 calibrate, 2-3 are held out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from packtwin.data import store
from packtwin.eval import estimate, uncertainty

VARIABLES = ("soc", "c_s_n", "c_s_p", "plating_margin", "sei_thickness_avg", "voltage")
LEVELS = (0.5, 0.8, 0.9, 0.95)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def coverage_table(truth_arr, members_arr, mean, std, n_members: int) -> dict:
    out = {"levels": {}}
    for level in LEVELS:
        k = uncertainty.band_factor(n_members, level)
        c = uncertainty.coverage(truth_arr, mean, std, k)
        out["levels"][f"{level:g}"] = {"nominal": level, "achieved": c["coverage"], "k": k,
                                       "n": c["n"]}
    r = uncertainty.range_coverage(truth_arr, members_arr)
    out["range"] = {"nominal": uncertainty.range_level(n_members), "achieved": r["coverage"],
                    "n": r["n"]}
    ok = np.isfinite(truth_arr) & np.isfinite(mean) & np.isfinite(std)
    rmse = float(np.sqrt(np.mean((truth_arr[ok] - mean[ok]) ** 2)))
    rms_std = float(np.sqrt(np.mean(std[ok] ** 2)))
    out.update({"rmse_of_mean": rmse, "rms_spread": rms_std,
                "error_to_spread": rmse / rms_std if rms_std > 0 else float("inf")})
    return out


SPLITS = {  # (scenarios, cells): True = the calibration ones, False = the others
    "calibration": (True, True),
    "test scenarios, calibration cells": (False, True),
    "calibration scenarios, held-out cells": (True, False),
    "test scenarios, held-out cells": (False, False),
}


def calibrated_coverage(est, truth, args) -> dict:
    """For each level: the band calibrated on the calibration scenarios x cells, and its
    raw and calibrated coverage on each split of scenarios x cells."""
    scen = {True: [s for s in est["scenario"].values if int(s) in args.calibrate_scenarios],
            False: [s for s in est["scenario"].values if int(s) not in args.calibrate_scenarios]}
    cells = {True: [c for c in est["cell"].values if int(c) in args.calibrate_cells],
             False: [c for c in est["cell"].values if int(c) not in args.calibrate_cells]}
    calib = est.sel(scenario=scen[True])
    out = {"calibrate_scenarios": args.calibrate_scenarios,
           "calibrate_cells": args.calibrate_cells,
           "test_scenarios": [int(s) for s in scen[False]],
           "held_out_cells": [int(c) for c in cells[False]], "variables": {}}
    for level in LEVELS:
        cal = estimate.make_calibration(calib, truth, level, names=VARIABLES,
                                        cells=cells[True], source=str(args.store))
        fixed = estimate.apply_calibration(est, cal)
        k = cal["k"]
        for name in VARIABLES:
            entry = {"scale": cal["variables"][name]["scale"],
                     "floor": cal["variables"][name]["floor"],
                     "units": cal["variables"][name]["units"], "coverage": {}}
            for split, (s_cal, c_cal) in SPLITS.items():
                if not scen[s_cal] or not cells[c_cal]:
                    continue
                sub = dict(scenario=scen[s_cal], cell=cells[c_cal])
                t = estimate.truth_aligned(truth, est.sel(**sub), name)
                mean = est[name].sel(**sub).values.astype(np.float64)
                raw = uncertainty.coverage(t, mean, est[f"{name}_std"].sel(**sub).values, k)
                new = uncertainty.coverage(t, mean, fixed[f"{name}_std"].sel(**sub).values, k)
                entry["coverage"][split] = {"nominal": level, "raw": raw["coverage"],
                                            "calibrated": new["coverage"], "n": new["n"]}
            out["variables"].setdefault(name, {})[f"{level:g}"] = entry
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="data/demo.zarr")
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--scenarios", type=_ints, default=[2, 6, 7, 8, 10, 12],
                   help="every scenario estimated (calibration and test)")
    p.add_argument("--calibrate-scenarios", type=_ints, default=[2, 6, 7],
                   help="scenario labels the band is calibrated on (the others: test)")
    p.add_argument("--calibrate-cells", type=_ints, default=[0, 1],
                   help="cell labels the band is calibrated on (the others: held-out cells)")
    p.add_argument("--snapshots", type=_ints, default=[1])
    p.add_argument("--steps", type=int, default=150, help="embedding fit steps per checkpoint")
    p.add_argument("--level", type=float, default=estimate.DEFAULT_LEVEL)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="reports/bench_estimate.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    members, record = estimate.estimate_members(args.checkpoints, args.store, steps=args.steps,
                                                level=args.level, scenarios=args.scenarios,
                                                snapshots=args.snapshots, log=print)
    est = estimate.combine(members, record)
    seconds = time.perf_counter() - t0
    truth = store.open_store(args.store)
    n = len(members)
    k = uncertainty.band_factor(n, args.level)
    result = {"variables": {}, "per_cell": {}, "per_scenario": {}}
    for name in VARIABLES:
        t = estimate.truth_aligned(truth, est, name)
        mem = np.stack([m[name].values.astype(np.float64) for m in members])
        mean = est[name].values.astype(np.float64)
        std = est[f"{name}_std"].values.astype(np.float64)
        result["variables"][name] = {"units": est[name].attrs["units"],
                                     **coverage_table(t, mem, mean, std, n)}
        for i, c in enumerate(est["cell"].values):
            cov = uncertainty.coverage(t[:, i], mean[:, i], std[:, i], k)["coverage"]
            result["per_cell"].setdefault(str(int(c)), {})[name] = cov
        for i, s in enumerate(est["scenario"].values):
            label = (f"{float(est['ambient_temperature'][i]):g}degC "
                     f"{float(est['discharge_c_rate'][i]):g}C "
                     f"{['cccv', 'pulse'][int(est['protocol'][i])]}")
            cov = uncertainty.coverage(t[i], mean[i], std[i], k)["coverage"]
            result["per_scenario"].setdefault(f"{int(s)} ({label})", {})[name] = cov
    result["calibrated"] = calibrated_coverage(est, truth, args)
    report = {
        "command": "python scripts/bench_estimate.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.processor() or '?'}",
        "load_average": os.getloadavg(),
        "store": str(args.store), "checkpoints": args.checkpoints,
        "scenarios": args.scenarios, "snapshots": args.snapshots,
        "cells": int(est.sizes["cell"]), "ensemble": "seeds", "members": n,
        "band": json.loads(est.attrs["uncertainty"]),
        "level_for_per_cell_and_scenario": args.level,
        "embedding_fit": record, "seconds_total": round(seconds, 2),
        **result}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for name, r in result["variables"].items():
        lv = r["levels"][f"{args.level:g}"]
        print(f"{name:>18}: nominal {lv['nominal']:.2f} achieved {lv['achieved']:.3f}; "
              f"range nominal {r['range']['nominal']:.2f} achieved {r['range']['achieved']:.3f}; "
              f"RMSE/spread {r['error_to_spread']:.2f}")
    for name, r in result["calibrated"]["variables"].items():
        lv = r[f"{args.level:g}"]
        print(f"{name:>18}: calibrated at {args.level:g} (scale {lv['scale']:.3g}): "
              + ", ".join(f"{split} {lv['coverage'][split]['calibrated']:.3f}"
                          for split in lv["coverage"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
