"""What each cell's check-up pulse reads over life, split into film and state, in PyBaMM (#10).

    python scripts/diag_pulse_cells.py --store data/life-long.zarr --out reports/diag_pulse_cells.json

Stop 43 left cells whose pulse rise runs above kappa x (their surface-area ratio) x the SEI grown
(draw 0's cell 1 at 25 degC: 211 uOhm above by cycle 1000, rising steadily) and a nominal-cell
scan of the negative stoichiometry that does not reach that size. Here each cell of one scenario
is restarted in PyBaMM with ITS OWN parameters (the store's table, applied as the generator does:
scalars set, function-valued ones scaled) on the store's mesh, 5 minutes at C/5 then the 1C step
read after 0.1 s (``diag_pulse_state.pulse_resistance``), at four states:

- ``late``: the SEI before the last check-up and the electrodes' mean stoichiometries at its
  pulse (the cycle-N snapshot's fields at the pulse's sample; the last check-up is a snapshot);
- ``late_film_early``: the same, with the first check-up's SEI;
- ``early``: the first check-up's SEI at the stoichiometries the lithium lost in between moves
  back (the negative electrode's mean stoichiometry raised by that lithium over its capacity, the
  positive one held: the check-up discharges a fixed charge from a top of charge that the
  positive electrode's voltage sets);
- ``early_film_late``: the early state with the last check-up's SEI.

So ``film`` = late - late_film_early (and early_film_late - early) is what the cell's own film
adds at fixed state, against kappa x area ratio x the SEI grown; ``state`` = late_film_early -
early is what the lithium lost moves at fixed film; ``model`` = late - early against the store's
own rise tells how well a restart from mean stoichiometries stands for the aged cell.
~4 PyBaMM solves per cell, ~8 CPU-s per cell (30-36 CPU-s per 4-cell scenario on the 2-core
machine, beside other jobs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from diag_pulse_film import area_ratios
from diag_pulse_state import pulse_resistance


def cell_parameter_values(ds, cell: int, model_cfg):
    """The generator's nominal parameter values with one cell's from a store's table, applied as
    the generator does (scalars set, function-valued ones scaled at its reference state)."""
    from packtwin import schema
    from packtwin.sim.cell import nominal_parameter_values, reference_value

    pv = nominal_parameter_values(model_cfg)
    nominal = nominal_parameter_values(model_cfg)
    for key, par in schema.PARAMETERS.items():
        name = schema.param_var(key)
        if name not in ds:
            continue
        value = float(ds[name].values[cell])
        if callable(nominal[par.pybamm]):
            scale = value / reference_value(nominal, key)
            func = nominal[par.pybamm]
            pv.update({par.pybamm: (lambda f, k: (lambda *a: f(*a) * k))(func, scale)})
        else:
            pv.update({par.pybamm: value})
    return pv


def main(argv: list[str] | None = None) -> int:
    from packtwin.data import store as storemod
    from packtwin.physics.life_state import life_model
    from packtwin.sim.config import pulse_period
    from packtwin.sim.generate import parse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--config", default="configs/generate/life-long.yaml",
                   help="the store's generator config (mesh, pulse timing)")
    p.add_argument("--scenario", type=int, default=0)
    p.add_argument("--cells", type=int, nargs="+", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t0 = time.process_time()
    cfg, _ = parse(["--config", args.config])
    ds = storemod.open_store(args.store)
    s = args.scenario
    kappa = life_model().kappa
    checkups = np.flatnonzero(ds["checkup"].values[s, 0] == 1)
    first, last = int(checkups[0]), int(checkups[-1])
    snap_cycles = ds["snapshot_cycle"].values
    if last + 1 not in snap_cycles:
        raise SystemExit(f"{args.store}: the last check-up (cycle {last + 1}) is not a snapshot "
                         f"cycle ({snap_cycles.tolist()}): its fields at the pulse are needed")
    k_snap = int(np.flatnonzero(snap_cycles == last + 1)[0])
    k_t = pulse_period(cfg)
    T_c = float(ds["ambient_temperature"].values[s]) if "ambient_temperature" in ds.coords else 25.0
    r_n, r_p = ds["r_n"].values, ds["r_p"].values
    w_n, w_p = r_n ** 2 / (r_n ** 2).sum(), r_p ** 2 / (r_p ** 2).sum()
    rows = []
    cells = args.cells if args.cells is not None else list(range(ds.sizes["cell"]))
    for c in cells:
        pv = cell_parameter_values(ds, c, cfg.model)
        cn = pv["Maximum concentration in negative electrode [mol.m-3]"]
        cp = pv["Maximum concentration in positive electrode [mol.m-3]"]
        c_n = ds["c_s_n"].values[s, c, k_snap, k_t]  # (x_n, r_n)
        c_p = ds["c_s_p"].values[s, c, k_snap, k_t]
        th_n, th_p = float((c_n @ w_n).mean() / cn), float((c_p @ w_p).mean() / cp)
        # lithium lost between the two check-ups, over the negative electrode's capacity
        lli = ds["lli"].values[s, c]
        n_li0 = (pv["Initial concentration in negative electrode [mol.m-3]"]
                 * pv["Negative electrode active material volume fraction"]
                 * pv["Negative electrode thickness [m]"]
                 + pv["Initial concentration in positive electrode [mol.m-3]"]
                 * pv["Positive electrode active material volume fraction"]
                 * pv["Positive electrode thickness [m]"]) * pv["Electrode height [m]"] \
            * pv["Electrode width [m]"]
        cap_n = (cn * pv["Negative electrode active material volume fraction"]
                 * pv["Negative electrode thickness [m]"] * pv["Electrode height [m]"]
                 * pv["Electrode width [m]"])
        d_lli = float(lli[last] - lli[first]) / 100.0  # lost between the two check-ups' pulses
        d_th_n = d_lli * n_li0 / cap_n
        sei = ds["sei_thickness_end"].values[s, c]
        L_early, L_late = 1e-9 * float(sei[first - 1]), 1e-9 * float(sei[last - 1])

        def at(theta_n: float, L: float) -> dict:
            return {"Ambient temperature [K]": 273.15 + T_c, "Initial temperature [K]": 273.15 + T_c,
                    "Initial concentration in negative electrode [mol.m-3]": theta_n * cn,
                    "Initial concentration in positive electrode [mol.m-3]": th_p * cp,
                    "Initial SEI thickness [m]": L,
                    "Contact resistance [Ohm]": pv["Contact resistance [Ohm]"]}

        mesh = dict(var_pts=dict(cfg.model.var_pts), pv=pv, submesh=dict(cfg.model.submesh or {}))
        r = {name: pulse_resistance(at(th, L), cfg.protocol.checkup_pulse_s, **mesh)
             for name, th, L in (("late", th_n, L_late), ("late_film_early", th_n, L_early),
                                 ("early", th_n + d_th_n, L_early),
                                 ("early_film_late", th_n + d_th_n, L_late))}
        area = float(area_ratios(ds, ds.sizes["cell"])[c])
        store_rise = float(ds["checkup_pulse_resistance"].values[s, c, last]
                           - ds["checkup_pulse_resistance"].values[s, c, first])
        film_expected = kappa * area * (L_late - L_early)
        row = {"cell": c, "theta_n_late": round(th_n, 5), "theta_p_late": round(th_p, 5),
               "d_theta_n": round(d_th_n, 5), "sei_nm": [round(1e9 * L_early, 3), round(1e9 * L_late, 3)],
               "area_ratio": round(area, 4),
               "resistance_mohm": {k: round(1e3 * v, 5) for k, v in r.items()},
               "store_rise_uohm": round(1e6 * store_rise, 1),
               "restart_rise_uohm": round(1e6 * (r["late"] - r["early"]), 1),
               "film_uohm": [round(1e6 * (r["late"] - r["late_film_early"]), 1),
                             round(1e6 * (r["early_film_late"] - r["early"]), 1)],
               "film_expected_uohm": round(1e6 * film_expected, 1),
               "state_uohm": round(1e6 * (r["late_film_early"] - r["early"]), 1)}
        rows.append(row)
        print(json.dumps(row))
    out = {"command": "scripts/diag_pulse_cells.py " + " ".join(argv or sys.argv[1:]),
           "store": args.store, "scenario": s, "checkup_cycles": [first + 1, last + 1],
           "kappa_ohm_per_m": kappa, "rows": rows, "cpu_s": round(time.process_time() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
