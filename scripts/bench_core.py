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

EKF (``--ekf``): the core's EKF (``packtwin.physics.ekf``) on a DFN log that starts under load:
each cell discharged at 1C from full for 20 min, then the generator's pulse pattern; the filter
sees only the samples after 20 min (10 mV Gaussian noise added to the voltage) and starts at rest
at the true SOC -30 % (cell 0) / +30 % (cell 1), with the cell's true parameters. Errors against
the DFN's fields vs time since the start, time until they stay below 1 % of c_max, and the same
core run open loop from the same wrong start for comparison.

Then a resolution study of the core (particles per electrode, shells, sub-step) on cell 0 and a
DFN mesh check (the DFN at ``--dfn-r``/``--dfn-x`` against a finer one), so the floors are stated
against the reference's own mesh error; and the core's time for a 100-cell pack's 1C discharge
hour at 60 s sampling (``pack_speed``).
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

from packtwin.eval.observer_bench import time_below  # noqa: E402
from packtwin.physics.core import CoreConfig, ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.ekf import CoreEKF, EKFConfig  # noqa: E402
from packtwin.physics.ocv_inversion import StoichiometryLine, soc_window  # noqa: E402
from packtwin.sim.config import GenerateConfig  # noqa: E402
from packtwin.sim.generate import draw_cells  # noqa: E402
from packtwin.sim.reference import fine_model_config, run_profile  # noqa: E402
from bench_report import write_report  # noqa: E402  (scripts/ is on sys.path when run)

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


def pack_speed(n_cells: int = 100, period: float = 60.0, repeats: int = 3,
               config: CoreConfig | None = None) -> dict:
    """Core time for a 1C discharge hour of ``n_cells`` nominal cells at ``period`` sampling
    (one thread, no autograd; median of ``repeats``), the core of ``config`` (default: the
    default one)."""
    core = ReducedCore(CoreParams.nominal(n_cells), config or CoreConfig())
    K = int(round(3600.0 / period))
    I = torch.full((n_cells, K), CAPACITY_AH, dtype=torch.float64)
    T = torch.full_like(I, 298.15)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            core.simulate(core.initial_state(), I, T, period)
        times.append(time.perf_counter() - t0)
    return {"n_cells": n_cells, "period_s": period, "samples": K,
            "seconds_per_1C_discharge_hour": float(np.median(times)),
            "ms_per_sample": 1e3 * float(np.median(times)) / K}


def _fv_average(c: np.ndarray, rho: np.ndarray) -> np.ndarray:
    edges = np.concatenate([[0.0], 0.5 * (rho[1:] + rho[:-1]), [1.0]])
    w = edges[1:] ** 3 - edges[:-1] ** 3
    return (c * w).sum(-1) / w.sum()


def ekf_experiment(cells: list[dict], nominal: dict, dfn_cfg, period: float,
                   soc_errors=(-0.3, 0.3), config: CoreConfig | None = None,
                   ekf_config: EKFConfig | None = None) -> dict:
    """The EKF from a wrong SOC on a DFN log that starts under load (see the module doc)."""
    config = config or CoreConfig(n_x_n=5, n_x_p=5, n_r=10)
    pulse = GenerateConfig().protocol.pulse_pattern
    lead = 1200.0
    segments = [(CAPACITY_AH, lead)] + [(CAPACITY_AH * m, d) for m, d in pulse]
    cells = cells[:len(soc_errors)]
    refs = [run_profile(c, nominal, segments, 298.15, period, dfn_cfg) for c in cells]
    k0 = int(round(lead / period))
    params = CoreParams.from_truth({k: [c[k] for c in cells] for k in cells[0]})
    core = ReducedCore(params, config)
    const = core.design.constants
    B = len(cells)
    # each cell's stoichiometry line (its inventory and active fractions) and SOC window
    windows, theta, soc_true = [], [], []
    for b in range(B):
        vn = float(params.eps_s_n[b]) * const.neg.L * const.neg.A
        vp = float(params.eps_s_p[b]) * const.pos.L * const.pos.A
        line = StoichiometryLine(float(params.c_n_init[b]) * vn + core.design.c_p_init * vp,
                                 const.neg.c_max * vn, const.pos.c_max * vp)
        s0, s100 = soc_window(const, line)
        th = float(_fv_average(refs[b]["c_s_n"][k0], refs[b]["r_n"]).mean()) / const.neg.c_max
        soc = (th - s0) / (s100 - s0)
        th_prior = s0 + float(np.clip(soc + soc_errors[b], 0.02, 0.98)) * (s100 - s0)
        windows.append(s100 - s0)
        theta.append((th_prior, float(line.sto_p(th_prior))))
        soc_true.append(soc)
    dtype = torch.float64
    prior = core.initial_state(torch.tensor([t[0] for t in theta], dtype=dtype) * const.neg.c_max,
                               torch.tensor([t[1] for t in theta], dtype=dtype) * const.pos.c_max)
    I = torch.tensor(np.stack([r["current"][k0 + 1:] for r in refs]), dtype=dtype)
    T = torch.tensor(np.stack([r["temperature"][k0 + 1:] for r in refs]), dtype=dtype)
    rng = np.random.default_rng(0)
    V = torch.tensor(np.stack([r["voltage"][k0 + 1:] for r in refs])
                     + 0.01 * rng.standard_normal(I.shape), dtype=dtype)
    ekf_config = ekf_config or EKFConfig()
    ekf = CoreEKF(core, ekf_config)
    est = ekf.init(prior, torch.tensor(windows, dtype=dtype),
                   torch.tensor(np.stack([r["current"][k0] for r in refs]), dtype=dtype), T[:, 0])
    open_loop = est  # the same prior, never corrected
    K = I.shape[1]
    rows = {"ekf": [], "open_loop": []}
    t0 = time.perf_counter()
    step_times = []
    for k in range(K):
        ts = time.perf_counter()
        est, _ = ekf.step(est, I[:, k], T[:, k], V[:, k], period)
        step_times.append(time.perf_counter() - ts)
        with torch.no_grad():
            ol_state = core.step(ekf.state(open_loop), I[:, k], T[:, k], period)
        open_loop = open_loop._replace(x=torch.cat([ol_state.c_n.flatten(1), ol_state.c_p.flatten(1),
                                                    ol_state.c_e], 1), L_sei=ol_state.L_sei)
        for name, e in (("ekf", est), ("open_loop", open_loop)):
            st = ekf.state(e)
            with torch.no_grad():
                out = core.measure(st, I[:, k], T[:, k])
            row = []
            for b, ref in enumerate(refs):
                cn = core.particle_field(st.c_n[b], out.c_n_surf[b], core.grid_x.x_n(),
                                         torch.tensor(ref["x_n"]), torch.tensor(ref["r_n"])).numpy()
                cp = core.particle_field(st.c_p[b], out.c_p_surf[b], core.grid_x.x_p(),
                                         torch.tensor(ref["x_p"]), torch.tensor(ref["r_p"])).numpy()
                tn, tp = ref["c_s_n"][k0 + 1 + k], ref["c_s_p"][k0 + 1 + k]
                row.append({
                    "c_s_n_rmse_pct": 100 * float(np.sqrt(np.mean((cn - tn) ** 2))) / C_MAX_N,
                    "c_s_p_rmse_pct": 100 * float(np.sqrt(np.mean((cp - tp) ** 2))) / C_MAX_P,
                    "c_n_mean_error_pct": 100 * float(
                        _fv_average(cn, ref["r_n"]).mean() - _fv_average(tn, ref["r_n"]).mean())
                    / C_MAX_N,
                    "voltage_error_mV": 1e3 * float(out.voltage[b] - ref["voltage"][k0 + 1 + k]),
                })
            rows[name].append(row)
    t_total = time.perf_counter() - t0
    t = (np.arange(K) + 1) * period
    result = {"config": config.__dict__, "ekf_config": ekf_config.__dict__,
              "log_start_s_into_discharge": lead,
              "soc_true_at_start": soc_true, "soc_error_of_prior": list(soc_errors[:B]),
              "voltage_noise_mV": 10.0, "period_s": period, "duration_s": float(t[-1]),
              "ekf_step_ms_for_batch": 1e3 * float(np.median(step_times)), "batch": B,
              "total_s": t_total, "per_cell": []}
    for b in range(B):
        cell = {}
        for name in ("ekf", "open_loop"):
            series = {m: np.array([r[b][m] for r in rows[name]]) for m in rows[name][0][b]}
            cell[name] = {
                "time_to_below_1pct_s": {m: time_below(t, np.abs(series[m]), 1.0)
                                         for m in ("c_s_n_rmse_pct", "c_s_p_rmse_pct",
                                                   "c_n_mean_error_pct")},
                "final": {m: float(v[-1]) for m, v in series.items()},
                "last_5min_rmse": {m: float(np.sqrt(np.mean(v[t > t[-1] - 300] ** 2)))
                                   for m, v in series.items()},
                "series_every_30s": {m: v[2::3].round(4).tolist() for m, v in series.items()},
            }
        result["per_cell"].append(cell)
    return result


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
    ap.add_argument("--ekf", action="store_true", help="also run the EKF experiment")
    ap.add_argument("--ekf-only", action="store_true",
                    help="run only the EKF experiment, merging it into an existing --out")
    ap.add_argument("--speed-only", action="store_true",
                    help="run only the 100-cell speed check, merging it into an existing --out")
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
    if args.ekf_only:
        out = Path(args.out)
        command = result["command"]
        result = json.loads(out.read_text()) if out.exists() else result
        result["ekf"] = ekf_experiment(cells, nominal, dfn_cfg, args.period)
        result["ekf"]["command"] = command
        result["ekf"]["loadavg_at_end"] = list(os.getloadavg())
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return 0
    if args.speed_only:
        out = Path(args.out)
        command = result["command"]
        result = json.loads(out.read_text()) if out.exists() else result
        result["pack_speed"] = {"command": command, **pack_speed(),
                                "loadavg_at_end": list(os.getloadavg())}
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return 0
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
    if args.ekf:
        result["ekf"] = ekf_experiment(cells, nominal, dfn_cfg, args.period)
    result["pack_speed"] = pack_speed()
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
