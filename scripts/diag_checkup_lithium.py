"""How well a check-up's slow discharge reads the lost lithium, and what the life twin makes of it.
Writes JSON.

    .venv/bin/python scripts/diag_checkup_lithium.py --store data/life-long.zarr --upto 500 \
        [--calib-cells 0 1] [--out reports/diag_checkup_lithium.json]

``fit``: per run (scenario, cell), each check-up's OCV fit
(:func:`packtwin.physics.checkup_inventory.fit_checkup`) and the change of its lithium since the
run's first check-up against PyBaMM's (the truth's lost lithium less the lithium still plated,
at the end of the cycle before each check-up: the state the check-up starts from), in LLI
points; variants: ``nominal`` (what the twin uses), ``true_capacities`` (each cell's own active
fractions from the truth table), ``no_skip`` (the discharge's first samples fitted too).
``resistance``: per run the fitted resistance's rise from the first to the last check-up against
the truth's SEI grown meanwhile [mOhm / nm].

``twin``: the life twin without plating, calibrated as ``packtwin evaluate``'s ``life:`` section
does (scenario 0, ``--calib-cells``, cycles <= ``--upto``, calibration cells keep their own SEI
rates, ``rate_from_fade`` off), per variant and run on cycles > upto: lost lithium (SEI and dead
lithium, against the truth less the lithium still plated) MAE [points], capacity MAE [%] over
regular cycles, SEI MAE [nm]. Variants: ``capacity`` (lithium from the fade), ``checkup`` (from
the check-ups, the cell's beta with forgetting 0.97), ``checkup_forget_0.99``,
``checkup_forget_1`` (no forgetting), ``checkup_rate_from_fade`` (the check-up lithium also
corrects the SEI rate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

VARIANTS = {
    "capacity": dict(lithium_from="capacity"),
    "checkup": dict(lithium_from="checkup"),
    "checkup_forget_0.99": dict(lithium_from="checkup", beta_forget=0.99),
    "checkup_forget_1": dict(lithium_from="checkup", beta_forget=1.0),
    "checkup_rate_from_fade": dict(lithium_from="checkup", rate_from_fade=True),
}


def _cell_constants(ds, cell: int):
    from packtwin.physics.constants import okane2022

    c = okane2022()
    eps = {k: float(np.ravel(ds[f"param_{k}_am_fraction"].values)[cell]) for k in ("neg", "pos")}
    return dataclasses.replace(c, neg=dataclasses.replace(c.neg, eps_s=eps["neg"]),
                               pos=dataclasses.replace(c.pos, eps_s=eps["pos"]))


def _truth_lost_points(ds, s: int, c: int) -> np.ndarray:
    from packtwin.physics.lli import plated_points

    return ds["lli"].values[s, c] - plated_points(ds["plated_lithium_end"].values[s, c])


def fit_section(ds) -> dict:
    from packtwin.physics.checkup_inventory import fit_checkup
    from packtwin.physics.life_state import life_model

    n_li0 = life_model().n_li0
    period = float(ds.attrs["period_s"])
    runs, ratios = [], []
    for s in range(ds.sizes["scenario"]):
        for c in range(ds.sizes["cell"]):
            ck = np.flatnonzero(ds["checkup"].values[s, c] == 1)
            lost = _truth_lost_points(ds, s, c)
            true_change = lost[ck - 1] - lost[ck[0] - 1]
            row = {"scenario": s, "cell": c, "checkup_cycles": (ck + 1).tolist(),
                   "true_change_points": true_change.round(5).tolist()}
            for name, kw in (("nominal", {}), ("true_capacities",
                                                {"cell": _cell_constants(ds, c)}),
                             ("no_skip", {"skip": 0})):
                fits = [fit_checkup(ds["life_voltage"].values[s, c, k],
                                    ds["life_current"].values[s, c, k], period, **kw) for k in ck]
                n = np.array([f.n_li_mol for f in fits])
                change = 100.0 * (n[0] - n) / n_li0
                err = change - true_change
                row[name] = {"change_points": change.round(5).tolist(),
                             "abs_error_mean_points": float(np.mean(np.abs(err[1:]))),
                             "abs_error_max_points": float(np.max(np.abs(err[1:]))),
                             "rms_mv_max": float(1e3 * max(f.rms_v for f in fits)),
                             "resistance_mohm": [round(1e3 * f.resistance_ohm, 4) for f in fits]}
            L = ds["sei_thickness_end"].values[s, c]
            grown = float(L[ck[-1] - 1] - L[ck[0] - 1])
            rise = row["nominal"]["resistance_mohm"][-1] - row["nominal"]["resistance_mohm"][0]
            row["resistance"] = {"rise_mohm": rise, "sei_grown_nm": grown,
                                 "mohm_per_nm": rise / grown}
            ratios.append(rise / grown)
            runs.append(row)
    summary = {name: {"abs_error_mean_points": float(np.mean([r[name]["abs_error_mean_points"]
                                                              for r in runs])),
                      "abs_error_max_points": float(np.max([r[name]["abs_error_max_points"]
                                                            for r in runs]))}
               for name in ("nominal", "true_capacities", "no_skip")}
    summary["resistance_mohm_per_nm_range"] = [float(min(ratios)), float(max(ratios))]
    return {"summary": summary, "runs": runs}


def twin_section(ds, calib_cells: list[int], upto: int) -> dict:
    from packtwin.physics.life_pack import calibrate_pack, calibrate_rates, track_pack
    from packtwin.physics.life_state import life_model

    out = {}
    for name, kw in VARIANTS.items():
        base = life_model(**{"rate_from_fade": False, **kw})
        model = calibrate_pack(ds, [0], calib_cells, upto_cycle=upto, model=base,
                               plated_apart=True)
        rates = calibrate_rates(ds, [0], calib_cells, upto, model)
        est = track_pack(ds, model, rates=rates)
        rows = []
        for s in range(ds.sizes["scenario"]):
            for c in range(ds.sizes["cell"]):
                judged = slice(upto, None)
                lli = est["lli_est"].values[s, c] - _truth_lost_points(ds, s, c)
                regular = ds["checkup"].values[s, c] == 0
                cap = np.where(regular, est["capacity_est"].values[s, c]
                               / ds["capacity"].values[s, c] - 1, np.nan)
                sei = est["sei_thickness_est"].values[s, c] - ds["sei_thickness_end"].values[s, c]
                rows.append({"scenario": s, "cell": c, "calibration_cell": c in calib_cells,
                             "lli_mae_points": float(np.nanmean(np.abs(lli[judged]))),
                             "capacity_mae_pct": float(100 * np.nanmean(np.abs(cap[judged]))),
                             "sei_mae_nm": float(np.nanmean(np.abs(sei[judged])))})
        out[name] = {"beta": model.beta, "psi_walk_fraction": model.psi_walk / abs(
            model.psi_prior), "noise_checkup_mol": model.noise_checkup_mol, "runs": rows}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--upto", type=int, default=500)
    ap.add_argument("--calib-cells", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="reports/diag_checkup_lithium.json")
    args = ap.parse_args(argv)
    import torch
    import xarray as xr

    torch.set_num_threads(1)
    ds = xr.open_zarr(args.store, consolidated=False).load()
    report = {"command": " ".join(["scripts/diag_checkup_lithium.py", *(argv or sys.argv[1:])]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "store": args.store, "upto": args.upto, "calib_cells": args.calib_cells,
              "fit": fit_section(ds), "twin": twin_section(ds, args.calib_cells, args.upto)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report["fit"]["summary"], indent=1))
    for name, v in report["twin"].items():
        print(name, "lli", [round(r["lli_mae_points"], 3) for r in v["runs"]], "cap",
              [round(r["capacity_mae_pct"], 3) for r in v["runs"]], "sei",
              [round(r["sei_mae_nm"], 2) for r in v["runs"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
