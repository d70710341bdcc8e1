"""Why the life twin misses the SEI of cells it never calibrated on: its capacity-corrected SEI
rate against the truth, and the unseen cells' SEI error with the correction as it is, with the
rate not corrected by the fade, and without the dead-lithium random walk. Writes JSON.

    .venv/bin/python scripts/diag_life_rate.py --store data/life-long.zarr --upto 500 \
        [--calib-cells 0 1] [--out reports/diag_life_rate.json]

The twin is ``packtwin.eval.life.twin_estimates`` as ``packtwin evaluate``'s ``life:`` section runs
it (calibration on scenario 0, ``--calib-cells``, cycles <= ``--upto``; calibration cells keep
their own fitted rates), without plating (the plated lithium moves the SEI rate by ~0.1 nm). Each
variant changes one thing:

* ``as_is``: the twin;
* ``rate_from_fade_off``: ``life.rate_from_fade: false`` (the fade corrects the dead-lithium
  rate only; an uncalibrated cell keeps the nominal SEI rate);
* ``resistance``: ``rate_from_fade_off`` plus ``life.use_resistance: true`` (the 60 s voltage
  step at each discharge's start, :func:`packtwin.physics.life_pack.step_resistance`, corrects
  the SEI rate through the film);
* ``no_walk``: the dead-lithium parameter's random walk fixed at 0 (the calibration otherwise
  picks one of ``life_twin.WALKS`` on the calibration cells).

Per scenario: the unseen cells' SEI MAE [nm] on cycles > upto; per cell: the true SEI solvent
diffusivity and the twin's at the last cycle (``as_is``; per variant under ``variants``); and
the truth's lost lithium at the last cycle split into SEI lithium (gamma (L - L_0)), lithium
still plated and the rest (dead lithium) [mmol], with each part's a + b sqrt(cycle) fit over
cycles 10..upto extrapolated to the last cycle (relative error): what the capacity fade is made
of, per cell; and the fade's sensitivity to the SEI rate there, d(ln lost lithium)/d(ln D) ~
(SEI lithium - dead lithium) / (2 lost lithium) (SEI lithium ~ sqrt(D), SEI-limited dead lithium
~ 1 / sqrt(D) once L >> L_0). Per run, the capacity fade per lithium lost over all its regular
cycles (``capacity_per_lithium``), next to the twin's calibrated one (``twin_beta``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np


def _variant(ds, name: str, calib_cells: list[int], upto: int):
    from packtwin.eval import life
    from packtwin.physics import life_twin

    walks = life_twin.WALKS
    if name == "no_walk":
        life_twin.WALKS = (0.0,)
    try:
        return life.twin_estimates(ds, [0], calib_cells, upto, name == "resistance", None, True,
                                   rate_from_fade=name not in ("rate_from_fade_off",
                                                               "resistance"))
    finally:
        life_twin.WALKS = walks


def _capacity_per_lithium(ds) -> list[dict]:
    """Per scenario and cell: beta, the capacity fade [A h] per lithium lost [A h] since cycle 2
    over every finished regular cycle (least squares through the origin, as the twin's
    calibration fits it on its own cycles), from the measured capacity and the truth's LLI."""
    from packtwin import schema
    from packtwin.physics.life_pack import cell_life
    from packtwin.physics.life_state import AH_PER_MOL, life_model

    m = life_model()
    out = []
    for s in range(ds.sizes[schema.SCENARIO]):
        for c in range(ds.sizes[schema.CELL]):
            one = cell_life(ds, s, c, truth=True)
            q = one["capacity"].values.ravel()
            lost = AH_PER_MOL * one["lli"].values.ravel() / 100.0 * m.n_li0
            x, y = lost[2:] - lost[1], q[1] - q[2:]
            ok = np.isfinite(x) & np.isfinite(y)
            out.append({"scenario": s, "cell": c,
                        "beta": float(x[ok] @ y[ok] / (x[ok] @ x[ok]))})
    return out


def _lli_split(ds, upto: int) -> list[dict]:
    from packtwin import schema
    from packtwin.physics.life_state import life_model
    from packtwin.physics.lli import plated_mol

    m = life_model()
    out = []
    for s in range(ds.sizes[schema.SCENARIO]):
        last = int(np.nan_to_num(ds["cycles_done"].values[s])) - 1
        n = np.arange(1, last + 2)
        fit = slice(9, upto)
        A = np.vstack([np.sqrt(n[fit]), np.ones(n[fit].size)]).T
        for c in range(ds.sizes[schema.CELL]):
            lli = ds["lli"].values[s, c, :last + 1] / 100.0 * m.n_li0
            sei = m.gamma * (ds["sei_thickness_end"].values[s, c, :last + 1] * 1e-9 - m.L_0)
            plated = plated_mol(ds["plated_lithium_end"].values[s, c, :last + 1])
            dead = lli - sei - plated
            row = {"scenario": s, "cell": c, "cycle": last + 1}
            for name, y in (("lli", lli), ("sei_lithium", sei), ("plated", plated),
                            ("dead", dead)):
                coef = np.linalg.lstsq(A, y[fit], rcond=None)[0]
                pred = coef[0] * np.sqrt(n[-1]) + coef[1]
                row[f"{name}_mmol"] = float(1e3 * y[-1])
                row[f"{name}_sqrt_fit_rel_error"] = float((pred - y[-1]) / y[-1])
            row["lli_sensitivity_to_ln_D"] = float(0.5 * (sei[-1] - dead[-1]) / lli[-1])
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--upto", type=int, required=True)
    ap.add_argument("--calib-cells", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="reports/diag_life_rate.json")
    args = ap.parse_args(argv)

    from packtwin import schema
    from packtwin.data import store as storemod

    ds = storemod.open_store(args.store).load()
    true = ds["sei_thickness_end"].values
    done = np.nan_to_num(ds["cycles_done"].values).astype(int)
    unseen = [c for c in range(ds.sizes[schema.CELL]) if c not in args.calib_cells]
    res = {"store": args.store, "upto": args.upto, "calib_cells": args.calib_cells,
           "unseen_cells": unseen, "variants": {}}
    for name in ("as_is", "rate_from_fade_off", "resistance", "no_walk"):
        model, live, _, _ = _variant(ds, name, args.calib_cells, args.upto)
        est = live["sei_thickness_est"].values
        rows = []
        for s in range(ds.sizes[schema.SCENARIO]):
            judged = slice(args.upto, done[s])
            rows.append({"scenario": s, "ambient_c": float(ds["ambient_temperature"].values[s]),
                         "c_rate": float(ds["discharge_c_rate"].values[s]),
                         "unseen_sei_mae_nm": float(np.nanmean(np.abs(
                             est[s, unseen, judged] - true[s, unseen, judged])))})
        d_est = live["sei_diffusivity_est"].values
        d_last = [[float(d_est[s, c, done[s] - 1]) for c in range(ds.sizes[schema.CELL])]
                  for s in range(ds.sizes[schema.SCENARIO])]
        res["variants"][name] = {
            "psi_walk_per_cycle_of_mean": model.psi_walk / abs(model.psi_prior),
            "per_scenario": rows, "sei_diffusivity_at_last_cycle": d_last}
        if name == "as_is":
            res["sei_diffusivity"] = {
                "units": "m2/s", "truth": ds["param_sei_solvent_diffusivity"].values.tolist(),
                "twin_at_last_cycle": d_last}
        print(name, [round(r["unseen_sei_mae_nm"], 3) for r in rows], flush=True)
    res["lost_lithium_split"] = _lli_split(ds, args.upto)
    res["capacity_per_lithium"] = _capacity_per_lithium(ds)
    res["twin_beta"] = float(model.beta)  # calibrated on the calibration runs' cycles <= upto
    res["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
