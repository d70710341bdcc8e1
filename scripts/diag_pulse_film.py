"""What a store's check-up pulses read of the SEI film, against the truth (issue #10).

    python scripts/diag_pulse_film.py --store data/life-long.zarr --out reports/diag_pulse_film_life-long.json

For every run (scenario, cell) of a store made with ``protocol.checkup_pulse_c_rate > 0``: the
pulse resistance at each check-up, the true x-averaged SEI the check-up cycle started with (the
previous cycle's ``sei_thickness_end``), and

- ``ratio``: the rise of the pulse resistance from the first check-up to the last over
  kappa x the SEI grown between them (kappa = rho_SEI / (a L_n A) of the nominal cell, the life
  twin's film term): 1 where the pulse reads the film and nothing else;
- ``residual_uohm``: R - kappa L at each check-up, less the first one's [micro-Ohm]: what the
  pulse reads besides the film (charge transfer at the pulse's stoichiometry, the cell's own
  surface area);
- ``grown_nm``: the SEI grown between the first and the last check-up;
- ``area_ratio``: the film term of the cell's own surface area over the nominal cell's,
  (R_n / eps_n) / (R_n,nom / eps_n,nom) from the store's parameter table (PyBaMM's film is
  rho L / (a L_n A) with a = 3 eps_n / R_n): the ``ratio`` a pulse reading the film alone would
  give (stop 43: at 45 C the ratios of draw 1's four cells lie within 0.008 of it).

Truth is read here only to judge the measurement; the twin reads the pulses alone. ~10 s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def area_ratios(ds, n_cells: int) -> np.ndarray:
    """Each cell's (R_n / eps_n) over the nominal cell's (NaN where the store lacks them)."""
    from packtwin import schema
    from packtwin.physics.constants import okane2022

    c = okane2022()
    nominal = c.neg.R / c.neg.eps_s
    try:
        R = ds[schema.param_var("neg_radius")].values.astype(float)
        eps = ds[schema.param_var("neg_am_fraction")].values.astype(float)
    except KeyError:
        return np.full(n_cells, np.nan)
    return (R / eps) / nominal


def film_rows(ds, kappa: float) -> list[dict]:
    r = ds["checkup_pulse_resistance"].values.astype(float)
    L = ds["sei_thickness_end"].values.astype(float) * 1e-9
    area = area_ratios(ds, ds.sizes["cell"])
    rows = []
    for s in range(ds.sizes["scenario"]):
        for c in range(ds.sizes["cell"]):
            ck = np.flatnonzero(np.isfinite(r[s, c]))
            ck = ck[ck > 0]  # a check-up in cycle 1 has no previous cycle's SEI
            if ck.size < 2:
                continue
            before = L[s, c, ck - 1]
            resid = (r[s, c, ck] - kappa * before) - (r[s, c, ck[0]] - kappa * before[0])
            grown = before[-1] - before[0]
            rows.append({"scenario": s, "cell": c,
                         "ambient_temperature": float(ds["ambient_temperature"].values[s]),
                         "discharge_c_rate": float(ds["discharge_c_rate"].values[s])
                         if "discharge_c_rate" in ds else None,
                         "checkup_cycles": (ck + 1).tolist(),
                         "pulse_resistance_mohm": (1e3 * r[s, c, ck]).round(5).tolist(),
                         "sei_before_nm": (1e9 * before).round(4).tolist(),
                         "grown_nm": round(float(1e9 * grown), 4),
                         "ratio": round(float((r[s, c, ck[-1]] - r[s, c, ck[0]])
                                              / (kappa * grown)), 4),
                         "area_ratio": round(float(area[c]), 4),
                         "residual_uohm": (1e6 * resid).round(1).tolist(),
                         "residual_nm_equivalent_max": round(
                             float(np.abs(resid).max() / kappa * 1e9), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True, help="JSON report")
    args = p.parse_args(argv)
    from packtwin.data import store as storemod
    from packtwin.physics.life_state import life_model

    ds = storemod.open_store(args.store)
    missing = [n for n in ("checkup_pulse_resistance", "sei_thickness_end") if n not in ds]
    if missing:
        raise SystemExit(f"store {args.store!r} lacks {missing}: make it with "
                         f"protocol.checkup_pulse_c_rate > 0 (e.g. configs/generate/life-long.yaml)")
    from packtwin import schema

    keep = ["checkup_pulse_resistance", "sei_thickness_end"] + [
        schema.param_var(k) for k in ("neg_radius", "neg_am_fraction")
        if schema.param_var(k) in ds]
    ds = ds[keep].load()
    kappa = life_model().kappa
    rows = film_rows(ds, kappa)
    out = {"store": args.store, "kappa_ohm_per_m": kappa, "runs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    for row in rows:
        print(f"scenario {row['scenario']} ({row['ambient_temperature']:g} C, "
              f"{row['discharge_c_rate']}C) cell {row['cell']}: ratio {row['ratio']:.3f} "
              f"(its surface area's {row['area_ratio']:.3f}) over "
              f"{row['grown_nm']:.1f} nm grown; largest residual "
              f"{row['residual_nm_equivalent_max']:.2f} nm of film")
    return 0


if __name__ == "__main__":
    sys.exit(main())
