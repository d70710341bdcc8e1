"""The reduced core stepped alone from a subspace filter's own state: is a jump in the filter's
one-step voltage the filter's doing or the core's?

    python scripts/diag_filter_step.py data/observer-check-s17.zarr --scenario 4 --step 251 \
        --core '{"plating": true, "n_x_n": 12, "n_x_p": 12}' --subspace '{"line_search": true}' \
        --eta-step inf

The subspace filter runs as ``packtwin evaluate`` runs it (carried over the stored cycles, oracle
parameters; :func:`packtwin.eval.observer_predict.observer_dataset`) until its ``--step``-th
step (counted from the start of the scenario's first cycle, 10 s each on the check packs);
the state it enters that step with is then advanced by one sample with the measured current
and temperature through cores that differ only in their Newton iterations and sub-step
(``--settings``), and each one's voltage is printed beside the measured one.
``--eta-step``: the plating Newton's overpotential limit
(:data:`packtwin.physics.electrode_pair.PLATING_ETA_STEP`, RT/F) while the filter runs and the
core steps; ``inf`` is the Newton before stop 31.

Why (README, stops 30-31): the 12-particle filter's voltage jumped by hundreds of mV near the
end of a -10 degC charge; from that state the core with 10 s sub-steps gave a different
voltage at every Newton iteration count (draw 17, step 251, cell 1: 3.77 / 3.91 / 6.54 / 3.93 V
at 6 / 12 / 30 / 60 iterations for a measured 4.164 V), with 2 s sub-steps one answer. With
the limit every setting gives 4.1645 V.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packtwin.eval import observer_predict  # noqa: E402
from packtwin.physics import electrode_pair, subspace_observer  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402

# (newton_iterations, warm_iterations, max_substep_s)
SETTINGS = ((6, 4, 10.0), (12, 8, 10.0), (30, 30, 10.0), (60, 60, 10.0), (6, 4, 2.0),
            (60, 60, 2.0))


class _Captured(Exception):
    pass


def state_at_step(truth: xr.Dataset, scenario: int, step: int, core: dict, subspace: dict):
    """(core the filter ran on, the state it entered step ``step`` with, I, T, V of that step)."""
    original = subspace_observer.SubspaceObserver._step
    seen = {"k": 0}

    def capture(self, est, I, T, V, dt, I_end=None):
        if seen["k"] == step:
            seen["out"] = (self.core, est.state, I, T, V, dt)
            raise _Captured
        seen["k"] += 1
        return original(self, est, I, T, V, dt, I_end)

    subspace_observer.SubspaceObserver._step = capture
    try:
        observer_predict.observer_dataset(
            "subspace", truth, scenarios=[scenario],
            snapshots=list(range(truth.sizes["snapshot"])), carry=True, core=core,
            subspace=subspace)
    except _Captured:
        return seen["out"]
    finally:
        subspace_observer.SubspaceObserver._step = original
    raise SystemExit(f"diag_filter_step: the filter made only {seen['k']} steps, "
                     f"fewer than --step {step}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--scenario", type=int, required=True, help="scenario position")
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--core", type=json.loads, default={}, help="observer_core, JSON")
    ap.add_argument("--subspace", type=json.loads, default={}, help="observer_subspace, JSON")
    ap.add_argument("--eta-step", type=float, default=electrode_pair.PLATING_ETA_STEP,
                    help="the plating Newton's overpotential limit [RT/F]; inf: none")
    args = ap.parse_args(argv)
    electrode_pair.PLATING_ETA_STEP = args.eta_step
    truth = xr.open_zarr(args.store, consolidated=False)
    core, state, I, T, V, dt = state_at_step(truth, args.scenario, args.step, args.core,
                                             args.subspace)
    I, T = torch.as_tensor(I, dtype=core.dtype), torch.as_tensor(T, dtype=core.dtype)
    print(f"step {args.step}: measured V {[round(float(v), 4) for v in torch.as_tensor(V)]}")
    for newton, warm, sub in SETTINGS:
        cfg = dataclasses.replace(core.config, newton_iterations=newton, warm_iterations=warm,
                                  max_substep_s=sub)
        alone = ReducedCore(core.params, cfg, core.design)
        with torch.no_grad():
            out = alone.measure(alone.step(state, I, T, dt), I, T)
        c_max = alone.design.constants.neg.c_max
        print(f"  Newton {newton:2d} / {warm:2d}, sub-step {sub:4.1f} s: V "
              f"{[round(float(v), 4) for v in out.voltage]}, highest negative surface "
              f"{[round(float(v), 3) for v in out.c_n_surf.max(1).values / c_max]} of c_max, "
              f"lowest plating current {[round(float(v), 2) for v in out.j_pl_n.min(1).values]} "
              f"A/m2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
