"""Does the current-distribution Newton settle? The core's solves with and without the settling
rounds (issue 9, stop 40).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/diag_newton_settle.py --seed 15 \
        --out reports/diag_newton_settle_s15.json

Why: in the CV taper after a 3C charge the plating core's instantaneous measurement solve had
stopped 60-66 mV off after its fixed iteration budget, and the identified-parameter filter's
voltage swung by ~90 mV there (held-out draw 15, cell 1). Since stop 40 the solve goes on
until its steps settle (``electrode_pair.STEP_TOL_V``, at most ``MAX_ROUNDS`` rounds) and
halves steps that turn back (``BACK_STEP``). This runs evaluate's observer core open loop
(each cell's true parameters, from rest) over every scenario's first cycle of a check pack,
with and without plating, in both modes: "settle" (the code as it is) and "fixed" (the
earlier rule: STEP_TOL_V = inf, MAX_ROUNDS = 1 + EXTRA_ROUNDS, BACK_STEP = 1). Per run: Newton
steps per sample, solves that ended at their cap, solves' cells that one more Newton
step would still move by more than 1 uV (``unsettled``; the largest such move), the voltage RMSE against the store, the
wall time; and the voltage of a CV-taper state (``taper_state``) from a uniform start in both
modes against 48 iterations. ~2 min on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from packtwin.data.store import open_store  # noqa: E402
from packtwin.eval.observer_predict import OBSERVER_CORE, oracle_params  # noqa: E402
from packtwin.physics import electrode_pair  # noqa: E402
from packtwin.physics.core import CoreConfig, ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from _report import add_store_arguments, store_of, write_json  # noqa: E402
from bench_identify import store_log  # noqa: E402

SETTLED_V = 1e-6  # a solve's cell counts as unsettled where one more step would move this much
FIXED = {"STEP_TOL_V": float("inf"), "MAX_ROUNDS": 1 + electrode_pair.EXTRA_ROUNDS,
         "BACK_STEP": 1.0}


@contextmanager
def mode(name: str):
    """The electrode pair's settling constants of ``name`` ("settle": as they are, "fixed":
    :data:`FIXED`) while inside, and its counts: Newton steps, solves, capped solves and
    unsettled cell-solves (one uncounted extra step per solve measures that; it is inside the
    rows' wall time in both modes)."""
    saved = {k: getattr(electrode_pair, k) for k in FIXED}
    counts = {"steps": 0, "solves": 0, "capped": 0, "unsettled": 0, "worst_next_step_V": 0.0}
    step, iterate = (electrode_pair.ElectrodePair._newton_step,
                     electrode_pair.ElectrodePair._iterate)

    def counted_step(self, *a, **k):
        counts["steps"] += 1
        return step(self, *a, **k)

    def counted_iterate(self, st, iterations, j_init):
        before = counts["steps"]
        out = iterate(self, st, iterations, j_init)
        counts["solves"] += 1
        counts["capped"] += counts["steps"] - before >= iterations * electrode_pair.MAX_ROUNDS
        # one more (uncounted) Newton step from the answer: how far it would still move a
        # particle's potential difference (linearised) [V], per cell
        nxt, _, _, d = step(self, st, out[0])
        moved = (d * nxt).abs().amax(1)
        counts["unsettled"] += int((moved > SETTLED_V).sum())
        counts["worst_next_step_V"] = max(counts["worst_next_step_V"], float(moved.max()))
        return out

    try:
        if name == "fixed":
            for k, v in FIXED.items():
                setattr(electrode_pair, k, v)
        electrode_pair.ElectrodePair._newton_step = counted_step
        electrode_pair.ElectrodePair._iterate = counted_iterate
        yield counts
    finally:
        for k, v in saved.items():
            setattr(electrode_pair, k, v)
        electrode_pair.ElectrodePair._newton_step = step
        electrode_pair.ElectrodePair._iterate = iterate


def taper_state(core: ReducedCore):
    """A CV-taper state after a 3C charge, shaped like held-out draw 15's cell 1 (plated
    lithium stripping next to the separator of a nearly full negative electrode; also
    tests/unit/test_plating_current.py's)."""
    n_x, n_r = core.config.n_x_n, core.config.n_r
    x = torch.linspace(0.0, 1.0, n_x, dtype=torch.float64)
    s = core.initial_state()
    return s._replace(
        c_n=(21900.0 + 11200.0 * x ** 1.5)[None, :, None].expand(1, n_x, n_r).clone(),
        c_p=torch.full((1, core.config.n_x_p, n_r), 19500.0, dtype=torch.float64),
        c_e=torch.linspace(715.0, 1229.0, s.c_e.shape[1], dtype=torch.float64)[None],
        c_pl=(60.0 * torch.exp(1.8 * x ** 2))[None])


def taper(modes: list[str]) -> dict:
    cfg = CoreConfig(plating=True, n_x_n=12, n_x_p=12)
    core = ReducedCore(CoreParams.nominal(1), cfg)
    I, T = torch.tensor([-2.0], dtype=torch.float64), torch.tensor([299.0], dtype=torch.float64)
    out = {}
    with torch.no_grad():
        for m in modes:
            with mode(m) as counts:
                out[m] = {"voltage_V": float(core.measure(taper_state(core), I, T).voltage[0]),
                          **counts}
        many = ReducedCore(core.params, dataclasses.replace(cfg, newton_iterations=48))
        with mode("fixed"):
            out["fixed_48_iterations_V"] = float(many.measure(taper_state(many), I, T).voltage[0])
    return out


def open_loop(store: str, modes: list[str]) -> list[dict]:
    ds = open_store(store)
    params = oracle_params(ds, list(range(ds.sizes["cell"])), store)
    rows = []
    for plating in (True, False):
        for s in range(ds.sizes["scenario"]):
            V, I, T, period = store_log(store, 10 ** 9, scenario=s)
            V, n = V.numpy(), V.shape[1]
            for m in modes:
                core = ReducedCore(params, dataclasses.replace(OBSERVER_CORE, plating=plating))
                with mode(m) as counts, torch.no_grad():
                    t0 = time.perf_counter()
                    _, out = core.simulate(core.initial_state(), I, T, period)
                    wall = time.perf_counter() - t0
                v = out["voltage"].numpy()
                row = {"scenario": int(ds["scenario"][s]), "plating": plating, "mode": m,
                       "samples": n, "steps_per_sample": counts["steps"] / n,
                       "solves": counts["solves"], "capped_solves": counts["capped"],
                       "unsettled_cell_solves": counts["unsettled"],
                       "worst_next_step_mV": 1e3 * counts["worst_next_step_V"],
                       "voltage_rmse_mV": float(1e3 * np.sqrt(np.nanmean((v - V) ** 2))),
                       "wall_s": round(wall, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_store_arguments(ap)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    store = store_of(args)
    modes = ["settle", "fixed"]
    out = {"store": store, "core": dataclasses.asdict(OBSERVER_CORE), "modes": FIXED,
           "taper": taper(modes), "open_loop": open_loop(store, modes),
           "note": "fixed: the rule before stop 40 (no settling rounds, no halved back-steps); "
                   "open loop: each cell's true parameters from rest over every scenario's "
                   "first cycle"}
    return write_json(args.out, out)


if __name__ == "__main__":
    sys.exit(main())
