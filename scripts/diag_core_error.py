"""Where the reduced core's error against PyBaMM's DFN comes from (true parameters, one cell).

    .venv/bin/python scripts/diag_core_error.py [--out reports/diag_core_error.json] [--cell 0]

One cell of the generator's seeded draw (``packtwin.sim.generate.draw_cells``) through the
conditions of ``scripts/bench_core.py`` (0.5C and 3C at 25 degC, 1C at -10 degC; 10 s samples),
the core driven by the DFN's current and temperature from the charged rest state, as the bench
does. Each row changes one thing against the baseline (the core's default resolution against
the DFN with the generator's options on the bench's fine mesh), so its change of the error is
that term's share:

* ``dfn_no_side_reactions``: the DFN without SEI growth and plating (what the core leaves out);
* ``dfn_isothermal``: the DFN isothermal at ambient (the core gets the DFN's temperature either
  way; this shows how much self-heating the cold run has);
* ``core_x12``: 12 particles per electrode instead of 8 (through-thickness discretisation);
* ``core_r20``: 20 shells instead of 12 (radial discretisation);
* ``core_sub2s``: 2 s backward-Euler sub-steps instead of 10 s (time discretisation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_core import conditions, run_core  # noqa: E402
from packtwin.physics.core import CoreConfig  # noqa: E402
from packtwin.sim.config import GenerateConfig  # noqa: E402
from packtwin.sim.generate import draw_cells  # noqa: E402
from packtwin.sim.reference import fine_model_config, run_profile  # noqa: E402

CONDITIONS = ("0.5C_25degC", "3C_25degC", "1C_-10degC")
KEYS = ("voltage_rmse_mV", "c_s_n_rmse_pct", "c_s_p_rmse_pct")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/diag_core_error.json")
    ap.add_argument("--cell", type=int, default=0)
    ap.add_argument("--period", type=float, default=10.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cells, nominal = draw_cells(GenerateConfig())
    cell = [cells[args.cell]]
    base_dfn = fine_model_config(30, 16)
    dfns = {
        "baseline": base_dfn,
        "dfn_no_side_reactions": dataclasses.replace(
            base_dfn, options={**base_dfn.options, "SEI": "none", "lithium plating": "none"}),
        "dfn_isothermal": dataclasses.replace(
            base_dfn, options={**base_dfn.options, "thermal": "isothermal"}),
    }
    cores = {"core_x12": CoreConfig(n_x_n=12, n_x_p=12), "core_r20": CoreConfig(n_r=20),
             "core_sub2s": CoreConfig(max_substep_s=2.0)}
    result = {"command": "scripts/diag_core_error.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch": torch.__version__, "threads": 1,
                          "note": "2-core dev machine shared with other engineers' jobs",
                          "loadavg_at_start": list(os.getloadavg())},
              "cell": cell[0], "conditions": {}}
    conds = conditions(args.period)
    for name in CONDITIONS:
        seg, amb = conds[name]["segments"], 273.15 + conds[name]["ambient_c"]
        rows = {}
        refs = {}
        for variant, cfg in dfns.items():
            t0 = time.perf_counter()
            try:
                refs[variant] = [run_profile(cell[0], nominal, seg, amb, args.period, cfg)]
            except Exception as err:  # noqa: BLE001  (a DFN variant that fails is recorded)
                rows[variant] = {"dfn_failed": f"{type(err).__name__}: {err}"[:300]}
                continue
            m, _ = run_core(cell, refs[variant], args.period, CoreConfig())
            rows[variant] = {k: m[0][k] for k in KEYS}
            rows[variant]["dfn_peak_temperature_c"] = float(
                refs[variant][0]["temperature"].max() - 273.15)
            rows[variant]["seconds"] = time.perf_counter() - t0
        for variant, cfg in cores.items():
            m, _ = run_core(cell, refs["baseline"], args.period, cfg)
            rows[variant] = {k: m[0][k] for k in KEYS}
        result["conditions"][name] = rows
        print(name, json.dumps({v: round(r["voltage_rmse_mV"], 2) if "voltage_rmse_mV" in r
                                else "failed" for v, r in rows.items()}),
              flush=True)
    result["loadavg_at_end"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
