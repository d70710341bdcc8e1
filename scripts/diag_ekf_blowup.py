"""The EKF's state around its first one-step-ahead voltage far off the measured one.

    python scripts/diag_ekf_blowup.py data/observer-check-s15.zarr --scenario 4 --cells 0 1 \\
        --snapshots 0 1

Runs evaluate's EKF row (rested start, carry on) on the selection and records, at every filter
step, the model voltage, the measured voltage and current, and the extremes of the state it
started from: the smallest and largest particle shell as a fraction of c_max (and which state
component) and the smallest electrolyte concentration [mol/m3]. Prints the steps around the first
one-step-ahead voltage more than ``--threshold`` V off. Why: the README's seed 15 -10 degC EKF row
(one sample at 626.6 V) is a full-state correction running away in the constant-voltage phase,
not a bad start; this shows it.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import xarray as xr

from packtwin.eval import observer_predict
from packtwin.physics import ekf as ekf_module


def trace_ekf(truth: xr.Dataset, scenarios: list[int], cells: list[int], snapshots: list[int],
              source: str = "truth store", core: dict | None = None
              ) -> tuple[xr.Dataset, list[dict[str, np.ndarray]]]:
    """evaluate's EKF prediction of the selection and, per filter step, the record above
    (arrays over the cycles filtered together; ``core``: CoreConfig overrides)."""
    records: list[dict[str, np.ndarray]] = []
    step = ekf_module.CoreEKF.step

    def recording(self, est, I, T, V, dt, I_end=None):
        new, innov = step(self, est, I, T, V, dt, I_end)
        x = est.x
        frac = torch.where(self._is_ce, torch.full_like(x, 0.5), x / self._c_max)
        ce = torch.where(self._is_ce, x, torch.full_like(x, float("inf")))
        records.append({"v_model": (V - innov).numpy().copy(), "V": V.numpy().copy(),
                        "I": I.numpy().copy(), "shell_min": frac.min(1).values.numpy().copy(),
                        "shell_max": frac.max(1).values.numpy().copy(),
                        "at_min": frac.argmin(1).numpy().copy(),
                        "ce_min": ce.min(1).values.numpy().copy()})
        return new, innov

    ekf_module.CoreEKF.step = recording
    try:
        pred = observer_predict.observer_dataset("ekf", truth, scenarios, cells, snapshots,
                                                 source=source, core=core, carry=True)
    finally:
        ekf_module.CoreEKF.step = step
    return pred, records


def first_blowup(records: list[dict[str, np.ndarray]], threshold: float) -> tuple[int, int] | None:
    """(step, row) of the first model voltage more than ``threshold`` V off the measured one."""
    for k, r in enumerate(records):
        off = np.flatnonzero(np.abs(r["v_model"] - r["V"]) > threshold)
        if len(off):
            return k, int(off[0])
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--scenario", type=int, required=True, help="scenario position")
    p.add_argument("--cells", type=int, nargs="+", default=[0], help="cell positions")
    p.add_argument("--snapshots", type=int, nargs="+", default=[0], help="snapshot positions")
    p.add_argument("--threshold", type=float, default=1.0, help="[V]")
    p.add_argument("--around", type=int, default=4, help="steps printed either side")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    truth = xr.open_zarr(args.store, consolidated=False)
    _, records = trace_ekf(truth, [args.scenario], args.cells, args.snapshots, args.store)
    hit = first_blowup(records, args.threshold)
    if hit is None:
        print(f"no one-step-ahead voltage more than {args.threshold} V off in {len(records)} "
              f"steps")
        return 0
    k0, row = hit
    print(f"first at filter step {k0}, row {row} (rows: the cycles filtered together)")
    for k in range(max(0, k0 - args.around), min(len(records), k0 + args.around + 1)):
        r = {n: float(a[row]) for n, a in records[k].items()}
        print(f"step {k}: model {r['v_model']:.4f} V, measured {r['V']:.4f} V, I {r['I']:.3f} A, "
              f"shells {r['shell_min']:.4f}-{r['shell_max']:.4f} of c_max (min at component "
              f"{int(r['at_min'])}), c_e min {r['ce_min']:.1f} mol/m3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
