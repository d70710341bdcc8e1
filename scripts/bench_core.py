"""The reduced electrochemical core against PyBaMM's DFN, each cell with its TRUE parameters.

    .venv/bin/python scripts/bench_core.py [--out reports/bench_core.json] [--cells 4]

Cells: the generator's default seeded draw (``packtwin.sim.generate.draw_cells``, seed 0, 2s2p).
For every cell and condition the DFN (generator options and overrides, a fine mesh
``--dfn-r``/``--dfn-x``, through ``packtwin.sim.reference.run_profile``) is solved from the
charged rest state and the core (``packtwin.physics.core``, default resolution) is driven by the
DFN's current and its lumped temperature at the same sampling period. Reported per condition
(mean and max over cells):

* voltage RMSE [mV] over all samples after the first;
* c_s(x, r) RMSE in % of c_max per electrode, the core interpolated onto the DFN's mesh
  (linear in r through shell centres and the surface, linear in x);
* outer-node c_s RMSE (the DFN's outermost radial node, its closest stored value to the surface);
* plating-margin RMSE [mV];
* cost: DFN solve time and core time for one cell, and the core for all cells in one batch,
  in seconds per simulated hour of one cell (one thread).

Then a resolution study of the core (particles per electrode, shells, sub-step) on cell 0 and a
DFN mesh check (the DFN at ``--dfn-r``/``--dfn-x`` against a finer one), so the floors are stated
against the reference's own mesh error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin.physics.core import CoreConfig, ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.sim.config import GenerateConfig  # noqa: E402
from packtwin.sim.generate import draw_cells  # noqa: E402
from packtwin.sim.reference import fine_model_config, run_profile  # noqa: E402

CAPACITY_AH = 5.0
C_MAX_N, C_MAX_P = 33133.0, 63104.0


def conditions(period: float) -> dict[str, dict]:
    pulse = GenerateConfig().protocol.pulse_pattern  # the generator's drive-like pattern
    pulses = [(CAPACITY_AH * m, s) for m, s in pulse]
    return {
        "0.5C_25degC": {"segments": [(0.5 * CAPACITY_AH, 6300.0)], "ambient_c": 25.0},
        "3C_25degC": {"segments": [(3.0 * CAPACITY_AH, 900.0)], "ambient_c": 25.0},
        "1C_-10degC": {"segments": [(CAPACITY_AH, 2400.0)], "ambient_c": -10.0},
        "pulses_1C_0degC": {"segments": pulses + pulses, "ambient_c": 0.0},
    }


def run_core(cells: list[dict], refs: list[dict], period: float, config: CoreConfig
             ) -> tuple[list[dict], float]:
    """The core for all cells in one batch, driven by each DFN's current and temperature."""
    params = CoreParams.from_truth({k: [c[k] for c in cells] for k in cells[0]})
    core = ReducedCore(params, config)
    I = torch.tensor(np.stack([r["current"][1:] for r in refs]), dtype=torch.float64)
    T = torch.tensor(np.stack([r["temperature"][1:] for r in refs]), dtype=torch.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        _, out = core.simulate(core.initial_state(), I, T, period)
    elapsed = time.perf_counter() - t0
    metrics = [compare(core, out, b, ref) for b, ref in enumerate(refs)]
    return metrics, elapsed


def compare(core: ReducedCore, out: dict, b: int, ref: dict) -> dict:
    """Errors of cell ``b`` of a core run against its DFN reference (samples 1..K)."""
    V = out["voltage"][b].numpy()
    xn = core.grid_x.x_n()
    xp = core.grid_x.x_p()
    cn = core.particle_field(out["c_n"][b], out["c_n_surf"][b], xn, torch.tensor(ref["x_n"]),
                             torch.tensor(ref["r_n"])).numpy()
    cp = core.particle_field(out["c_p"][b], out["c_p_surf"][b], xp, torch.tensor(ref["x_p"]),
                             torch.tensor(ref["r_p"])).numpy()
    dn, dp = cn - ref["c_s_n"][1:], cp - ref["c_s_p"][1:]

    def rms(a):
        return float(np.sqrt(np.mean(a ** 2)))

    return {
        "voltage_rmse_mV": 1e3 * rms(V - ref["voltage"][1:]),
        "voltage_max_abs_mV": 1e3 * float(np.abs(V - ref["voltage"][1:]).max()),
        "c_s_n_rmse_pct": 100 * rms(dn) / C_MAX_N,
        "c_s_p_rmse_pct": 100 * rms(dp) / C_MAX_P,
        "c_s_n_max_abs_pct": 100 * float(np.abs(dn).max()) / C_MAX_N,
        "c_s_p_max_abs_pct": 100 * float(np.abs(dp).max()) / C_MAX_P,
        "c_s_n_outer_node_rmse_pct": 100 * rms(dn[..., -1]) / C_MAX_N,
        "c_s_p_outer_node_rmse_pct": 100 * rms(dp[..., -1]) / C_MAX_P,
        "plating_margin_rmse_mV": 1e3 * rms(out["plating_margin"][b].numpy()
                                            - ref["plating_margin"][1:]),
    }


def summarise(per_cell: list[dict]) -> dict:
    keys = per_cell[0].keys()
    return {k: {"mean": float(np.mean([m[k] for m in per_cell])),
                "max": float(np.max([m[k] for m in per_cell]))} for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/bench_core.json")
    ap.add_argument("--cells", type=int, default=4)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--dfn-r", type=int, default=30)
    ap.add_argument("--dfn-x", type=int, default=16)
    ap.add_argument("--only", nargs="*", help="condition names to run (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load0 = os.getloadavg()
    cells, nominal = draw_cells(GenerateConfig())
    cells = cells[:args.cells]
    dfn_cfg = fine_model_config(args.dfn_r, args.dfn_x)
    result: dict = {
        "command": "scripts/bench_core.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads": 1,
                    "note": "2-core dev machine shared with other engineers' jobs",
                    "loadavg_at_start": list(load0)},
        "dfn": {"var_pts": dfn_cfg.var_pts, "options": dfn_cfg.options,
                "overrides": dfn_cfg.parameter_overrides},
        "core": {"config": CoreConfig().__dict__},
        "cells": cells, "period_s": args.period, "conditions": {},
    }
    conds = conditions(args.period)
    refs_by_cond = {}
    for name, cond in conds.items():
        if args.only and name not in args.only:
            continue
        refs, t_dfn = [], []
        for c in cells:
            t0 = time.perf_counter()
            refs.append(run_profile(c, nominal, cond["segments"], 273.15 + cond["ambient_c"],
                                    args.period, dfn_cfg))
            t_dfn.append(time.perf_counter() - t0)
        refs_by_cond[name] = refs
        hours = refs[0]["time"][-1] / 3600.0
        metrics, t_batch = run_core(cells, refs, args.period, CoreConfig())
        _, t_one = run_core(cells[:1], refs[:1], args.period, CoreConfig())
        result["conditions"][name] = {
            "ambient_c": cond["ambient_c"], "duration_s": float(refs[0]["time"][-1]),
            "errors": summarise(metrics), "per_cell": metrics,
            "cost_s_per_simulated_hour_per_cell": {
                "dfn_solve": float(np.median(t_dfn)) / hours,
                "core_one_cell": t_one / hours,
                "core_batched": t_batch / hours / len(cells),
            },
        }
        print(name, json.dumps(result["conditions"][name]["errors"]["voltage_rmse_mV"]),
              json.dumps(result["conditions"][name]["errors"]["c_s_n_rmse_pct"]), flush=True)
    # Resolution study of the core on cell 0 (3C and -10 degC): what x, r and dt cost.
    study = {}
    variants = {"x5_r12": CoreConfig(n_x_n=5, n_x_p=5), "default": CoreConfig(),
                "x12_r12": CoreConfig(n_x_n=12, n_x_p=12), "x8_r20": CoreConfig(n_r=20),
                "x8_r12_sub2s": CoreConfig(max_substep_s=2.0)}
    for name in ("3C_25degC", "1C_-10degC"):
        if name not in refs_by_cond:
            continue
        study[name] = {}
        for vname, cfg in variants.items():
            m, t = run_core(cells[:1], refs_by_cond[name][:1], args.period, cfg)
            study[name][vname] = {"config": cfg.__dict__, **m[0], "core_time_s": t}
    result["core_resolution_study_cell0"] = study
    # DFN mesh check: the reference mesh against a finer one, cell 0 at 3C.
    if "3C_25degC" in refs_by_cond:
        finer = fine_model_config(2 * args.dfn_r, 2 * args.dfn_x)
        ref_f = run_profile(cells[0], nominal, conds["3C_25degC"]["segments"], 298.15,
                            args.period, finer)
        ref = refs_by_cond["3C_25degC"][0]
        result["dfn_mesh_check_3C_cell0"] = {
            "finer_var_pts": finer.var_pts,
            "voltage_rmse_mV": 1e3 * float(np.sqrt(np.mean(
                (ref["voltage"][1:] - ref_f["voltage"][1:]) ** 2))),
        }
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
