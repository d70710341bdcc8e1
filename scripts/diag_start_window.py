"""The loaded start's roots and the window's choice among them, per cell, against the truth
(packtwin/physics/start_window.py; issue #9 item 4).

    python scripts/diag_start_window.py --store data/observer.zarr --sample 60 \
        --out reports/diag_start_window_s11.json

For every scenario and cell of the store at ``--snapshot``'s sample ``--sample`` (600 s at 10 s,
the evaluate configs' loaded start): the true SOC, the OCV reading, the nearest root of the
loaded voltage (``invert_loaded``, the prior before the window's choice), every further root,
and the root the next ``--window-s`` of samples choose; with each cell's TRUE parameters, as
evaluate's observer rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin import schema  # noqa: E402
from packtwin.data import store  # noqa: E402
from packtwin.eval.observer_predict import oracle_params  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.observer_stream import cell_lines, cell_soc_window  # noqa: E402
from packtwin.physics.ocv_inversion import invert_ocv  # noqa: E402
from packtwin.physics.loaded_inversion import invert_loaded  # noqa: E402
from packtwin.physics.start_window import WINDOW_S, window_start  # noqa: E402


def roots_at(path: str, snapshot: int, sample: int, window_s: float) -> list[dict]:
    truth = store.open_store(path).load()
    cells = list(range(truth.sizes[schema.CELL]))
    core = ReducedCore(oracle_params(truth, cells))
    lo, hi = cell_soc_window(core)
    line = cell_lines(core)
    period = float(truth.attrs["period_s"])
    w = int(round(window_s / period))
    soc = lambda s: ((s - lo) / (hi - lo)).numpy()  # noqa: E731
    rows = []
    for sc in range(truth.sizes[schema.SCENARIO]):
        sel = {schema.SCENARIO: sc, schema.SNAPSHOT: snapshot}
        win = slice(sample, sample + w + 1)
        V, I, T = (torch.as_tensor(truth[v].isel(sel).values[:, win], dtype=torch.float64)
                   for v in ("voltage", "current", "temperature"))
        valid = torch.isfinite(V) & torch.isfinite(I) & torch.isfinite(T)  # NaN past the end
        with torch.no_grad():
            nearest = invert_loaded(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi)
            chosen, flagged = window_start(core, torch.nan_to_num(V), torch.nan_to_num(I),
                                           torch.nan_to_num(T, nan=298.15), valid, period,
                                           line, lo, hi)
        true = truth["soc"].isel(sel).values[:, sample]
        if not bool(torch.isfinite(V[:, 0]).all() & torch.isfinite(I[:, 0]).all()):
            # a scenario that failed to generate (its status and message in the store)
            print(f"scenario {sc}: no sample {sample} (store status "
                  f"{float(truth['status'].values[sc]) if 'status' in truth else 'n/a'}): skipped")
            continue
        for c in cells:
            rows.append({"scenario": sc, "cell": c, "current_a": float(I[c, 0]),
                         "temperature_c": float(T[c, 0]) - 273.15, "true_soc": float(true[c]),
                         "ocv_soc": float(soc(invert_ocv(V[:, 0], line))[c]),
                         "nearest_soc": float(soc(nearest)[c]),
                         "window_chose": bool(flagged[c]),
                         "chosen_soc": float(soc(chosen)[c])})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--snapshot", type=int, default=0)
    ap.add_argument("--sample", type=int, default=60)
    ap.add_argument("--window-s", type=float, default=WINDOW_S)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    rows = roots_at(args.store, args.snapshot, args.sample, args.window_s)
    for r in rows:
        print(f"scenario {r['scenario']} cell {r['cell']}: I {r['current_a']:6.2f} A "
              f"T {r['temperature_c']:5.1f} C  true {r['true_soc']:.3f}  ocv {r['ocv_soc']:.3f}  "
              f"nearest {r['nearest_soc']:.3f}  window {r['window_chose']!s:5}  "
              f"chosen {r['chosen_soc']:.3f}")
    err = lambda k: float(np.mean([abs(r[k] - r["true_soc"]) for r in rows]))  # noqa: E731
    res = {"store": args.store, "snapshot": args.snapshot, "sample": args.sample,
           "window_s": args.window_s, "mean_abs_error_soc_points":
               {"ocv": 100 * err("ocv_soc"), "nearest": 100 * err("nearest_soc"),
                "chosen": 100 * err("chosen_soc")},
           "rows": rows,
           "command": " ".join(["scripts/diag_start_window.py"] + (argv or sys.argv[1:]))}
    print(json.dumps(res["mean_abs_error_soc_points"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
