"""One observer row traced minute by minute: per cell, from its first estimate, the current, the
SOC error [points], each electrode's whole-field c_s RMSE [% of c_max] and the model voltage
minus the measured one [mV].

    python scripts/diag_observer_trace.py \\
        reports/observer-check-s16_loaded-loaded_window-identified-w100000/predictions/subspace_identified_-10C_1C_pulses.zarr \\
        data/observer-check-s16.zarr --minutes 30

The predictions come from ``packtwin evaluate`` with ``save_predictions: true``; the store is
the truth they were made on. Why: a per-cycle figure (scripts/diag_observer_cycles.py) says
that a row failed, this says how (README, the seed 16 -10 degC diagnosis).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import xarray as xr

from packtwin import schema
from packtwin.eval import metrics


def trace(pred: xr.Dataset, truth: xr.Dataset, snapshot: int = 0, minutes: float = 30.0,
          every_s: float = 60.0) -> list[str]:
    """Lines of the trace of every (scenario, cell) of ``pred`` on its ``snapshot`` position."""
    period = float(truth.attrs["period_s"])
    step = max(1, int(round(every_s / period)))
    c_max = {f: metrics.c_max_of(truth, f) for f in ("c_s_n", "c_s_p")}
    lines = []
    for s in range(pred.sizes[schema.SCENARIO]):
        for c in range(pred.sizes[schema.CELL]):
            pos = {schema.SCENARIO: s, schema.CELL: c, schema.SNAPSHOT: snapshot}
            p = pred.isel(pos)
            t = truth.sel({d: pred[d].values[i] for d, i in pos.items()})
            ok = np.flatnonzero(np.isfinite(p["soc"].values))
            if not len(ok):
                lines.append(f"scenario {int(pred[schema.SCENARIO][s])} cell "
                             f"{int(pred[schema.CELL][c])}: no estimate")
                continue
            t0, end = int(ok[0]), int(ok[-1]) + 1
            err = {f: 100 * np.sqrt(np.mean((p[f].transpose(schema.TIME, ...).values
                                             - t[f].transpose(schema.TIME, ...).values)
                                            .reshape(p.sizes[schema.TIME], -1) ** 2, 1))
                   / c_max[f] for f in c_max}
            lines.append(f"scenario {int(pred[schema.SCENARIO][s])} cell "
                         f"{int(pred[schema.CELL][c])}: first estimate at {t0 * period:g} s")
            for j in range(t0, min(end, t0 + int(round(minutes * 60 / period)) + 1), step):
                lines.append(
                    f"  t+{(j - t0) * period:5.0f} s  I {float(t['current'][j]):6.2f} A  "
                    f"SOC error {100 * float(p['soc'][j] - t['soc'][j]):7.2f}  "
                    f"c_s n {err['c_s_n'][j]:6.2f} %  p {err['c_s_p'][j]:6.2f} %  "
                    f"dV {1e3 * float(p['voltage'][j] - t['voltage'][j]):7.1f} mV")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", help="an observer's predictions store (save_predictions)")
    ap.add_argument("truth", help="the truth store it was made on")
    ap.add_argument("--snapshot", type=int, default=0, help="cycle position (default 0)")
    ap.add_argument("--minutes", type=float, default=30.0)
    args = ap.parse_args(argv)
    pred = xr.open_zarr(args.predictions, consolidated=False)
    truth = xr.open_zarr(args.truth, consolidated=False)
    print("\n".join(trace(pred, truth, args.snapshot, args.minutes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
