"""Where the life twin's lost-lithium (LLI) error comes from: its estimate of the lithium still
plated at each cycle's end against the rest (SEI and dead lithium). Writes JSON.

    .venv/bin/python scripts/diag_life_lli.py --config configs/experiments/life-long.yaml \
        --store data/life-long-s2.zarr --out reports/diag_life_lli_life-long-s2.json

The twin is ``packtwin evaluate``'s (``life:`` section of ``--config``: calibration, splits,
plating core and every other setting; ``--store`` replaces the config's store). PyBaMM's LLI,
which the twin estimates, counts the lithium still plated at the cycle's end; the twin's is its
SEI and dead lithium plus the plating core's plated lithium (:func:`packtwin.physics.lli.
with_plated`). Per split, over its judged cycles, in percentage points: the twin's LLI MAE and
mean error; the plated part's (estimate minus truth, :func:`packtwin.physics.lli.plated_points`)
MAE and mean; the LLI MAE with the plated part's error taken out (the twin's SEI and dead lithium
plus the TRUE plated lithium: what the twin would score with a perfect plating estimate); and the
per-run sqrt(cycle) fit's LLI MAE, the baseline it is judged against. Costs one evaluation's
twin (~10 CPU-minutes on a life-long store, most of it the plating core).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def decompose(ds, live, split, upto: int) -> dict:
    """The split's LLI errors (module doc) from the twin's estimates ``live``."""
    from packtwin.eval.life import sqrt_fit
    from packtwin.physics.lli import plated_points

    cycles = ds["cycle"].values
    j = split.cycles
    err, plated, sqrt_err = [], [], []
    for s in split.scenarios:
        for c in split.cells:
            true_lli = ds["lli"].values[s, c]
            err.append(live["lli_est"].values[s, c, j] - true_lli[j])
            plated.append(plated_points(live["plated_lithium_end_est"].values[s, c, j])
                          - plated_points(ds["plated_lithium_end"].values[s, c, j]))
            sqrt_err.append(sqrt_fit(cycles, true_lli.astype(float), upto)[j] - true_lli[j])
    err, plated, sqrt_err = (np.concatenate(a) for a in (err, plated, sqrt_err))
    return {"runs": len(split.scenarios) * len(split.cells), "cycles": int(j.sum()),
            "twin_lli_mae": float(np.nanmean(np.abs(err))),
            "twin_lli_mean_error": float(np.nanmean(err)),
            "plated_part_mae": float(np.nanmean(np.abs(plated))),
            "plated_part_mean_error": float(np.nanmean(plated)),
            "twin_lli_mae_with_true_plated": float(np.nanmean(np.abs(err - plated))),
            "sqrt_fit_lli_mae": float(np.nanmean(np.abs(sqrt_err)))}


def main(argv: list[str] | None = None) -> int:
    import yaml

    from packtwin.data import store as storemod
    from packtwin.eval import life_evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="experiment config with a life: section")
    ap.add_argument("--store", default=None, help="life store (default: the config's)")
    ap.add_argument("--out", required=True, help="JSON report")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text())
    cfg = life_evaluate.parse(raw["life"])
    if cfg.plating is None:
        raise SystemExit(f"{args.config}: its life section estimates no plating "
                         f"(life.plating); the twin's LLI has no plated part to split off")
    store = args.store or raw["store"]
    ds = storemod.open_store(store).load()
    calib, splits = life_evaluate.resolve(ds, cfg)
    upto = int(cfg.calibration["upto_cycle"])
    t0 = time.process_time()
    _, live, _, _ = life_evaluate.twin_estimates(ds, cfg, calib, str(store))
    out = {"command": "python scripts/diag_life_lli.py " + " ".join(argv or sys.argv[1:]),
           "store": str(store), "config": args.config, "units": "LLI percentage points",
           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
           "cpu_s": round(time.process_time() - t0, 1),
           "splits": {name: decompose(ds, live, sp, upto) for name, sp in splits.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for name, row in out["splits"].items():
        print(f"{name}: twin {row['twin_lli_mae']:.4f} (plated part {row['plated_part_mae']:.4f}, "
              f"mean {row['plated_part_mean_error']:+.4f}); with the true plated lithium "
              f"{row['twin_lli_mae_with_true_plated']:.4f}; sqrt fit {row['sqrt_fit_lli_mae']:.4f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
