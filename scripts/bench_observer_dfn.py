"""State estimators on the reduced core against PyBaMM DFN logs (the core is no longer exact).

    .venv/bin/python scripts/bench_observer_dfn.py [--out reports/bench_observer_dfn.json]
        [--seeds 0 1 2] [--train-cells 8] [--test-cells 4] [--iterations 30] [--period 10]
        [--only COND ...] [--nominal] [--identified] [--skip ROW ...] [--ekf JSON]

``--ekf '{"gate_sigma": Infinity, "ce_guard": 0, "bounded_step": false, "salt_neutral": false}'``
runs the EKF row as it was before stop 27 (EKFConfig overrides;
reports/bench_observer_dfn_ekf_*.json compare the variants).

Truth: PyBaMM's DFN with the generator's options (SEI, partially reversible plating, lumped
thermal; ``packtwin.sim.reference.run_profile`` on a 30-radial-point, 16/8/16 mesh), the
generator's cell-to-cell draws (``packtwin.eval.dfn_logs.draw``: seed 100 + s for training,
200 + s for testing, so every test cell is unseen), 10 s sampling, 10 mV voltage noise, the DFN's
lumped temperature as the measured T. Fields are compared on the core's grid: the DFN's c_s(x, r)
interpolated linearly onto the core's 8 particles x 12 shell centres per electrode
(``packtwin.eval.dfn_logs.to_core_grid``); RMSE over all of them in % of c_max.

Logs (``packtwin.eval.dfn_logs.Condition``): every cell first runs a lead-in from full (1C for a
drawn 2-30 min), then the log starts UNDER LOAD with the condition's current, and every
estimator starts at rest at the true SOC +-30 % (random sign). Training (25 degC only): random
0.5-1C drives and the generator's pulse pattern scaled 0.5-1, 10 min logs. Held out: 2C at
45 degC, 3C at 25 degC, pulses at 0 degC and at -10 degC, and a rested start (25 degC, 30 min
rest after the lead-in, prior = the first noisy voltage read as an OCV).

Estimators, all on the core with each cell's TRUE parameters from the draw (oracle-parameter
setting; ``--nominal`` adds the same rows with nominal parameters, a new cell without a truth
table; ``--identified`` adds them with parameters identified from each test cell's own V/I/T by
``packtwin.physics.identify``, on a separate identification log of that cell, :data:`IDENT`):
the open-loop core, coulomb counting (uniform particles), the EKF
(``packtwin.physics.ekf``), the learned observer trained on core-made logs (the recipe of
``scripts/bench_observer.py``: before) and trained on the DFN training logs (after), and, as the
floor of the core's model-form error, the open-loop core started from the DFN's true state.
Reported per condition: c_s RMSE per electrode at 2 / 10 min and over the last 5 min, time after
which both stay below 1 % of c_max (per cell), model-voltage RMSE against the noise-free DFN
voltage; then mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin.eval.dfn_logs import Condition, cat_logs, dfn_logs, draw, pulses  # noqa: E402
from packtwin.eval.observer_bench import (ESTIMATORS, core_made_logs, core_made_pack,  # noqa: E402
                                         mean_std, run_estimator, run_learned, run_open_loop,
                                         summarise, train_observer)
from packtwin.eval.observer_predict import ekf_config  # noqa: E402  (unknown keys named)
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.identify import IdentifyConfig, identify, parameter_errors  # noqa: E402
from packtwin.physics.learned_observer import ObserverNet  # noqa: E402
from packtwin.physics.observer_stream import cell_soc_window  # noqa: E402
from packtwin.sim.reference import fine_model_config  # noqa: E402
from bench_report import write_report  # noqa: E402  (scripts/ is on sys.path when run)

TRAIN = (
    Condition("drive_25degC", 25.0, drive=True, drive_s=600.0, lead_s=(120.0, 2400.0),
              lead_c=(0.5, 1.0), soc_error=(0.15, 0.30)),
    Condition("pulses_25degC", 25.0, profile=pulses(1), scale=(0.5, 1.0), lead_s=(120.0, 2400.0),
              lead_c=(0.5, 1.0), soc_error=(0.15, 0.30)),
)
TEST = (
    Condition("2C_45degC", 45.0, profile=((2.0, 900.0),), lead_s=(120.0, 900.0)),
    Condition("3C_25degC", 25.0, profile=((3.0, 600.0),), lead_s=(120.0, 600.0)),
    Condition("pulses_0degC", 0.0, profile=pulses(2), lead_s=(120.0, 1800.0)),
    Condition("pulses_-10degC", -10.0, profile=pulses(2), lead_s=(120.0, 1200.0)),
    Condition("pulses_25degC_rested", 25.0, profile=pulses(2), lead_s=(600.0, 1800.0),
              rest_s=1800.0, prior="ocv"),
)
# The identification log of each test cell (its "training data"; never a held-out log): a rested
# start after the lead-in, then a 20 min random drive at 0.75-2C (rest, regen) at 25 degC.
IDENT = Condition("ident_drive_25degC", 25.0, drive=True, drive_s=1200.0, scale=(1.5, 2.0),
                  lead_s=(120.0, 1200.0), rest_s=600.0, prior="ocv")
SETTINGS = ("oracle_parameters", "nominal_parameters", "identified_parameters")


def core_for(cells: list[dict]) -> ReducedCore:
    return ReducedCore(CoreParams.from_truth({k: [c[k] for c in cells] for k in cells[0]}))


def _train(args, seed, core, log, label, closure_mv=0.0, voltage_weight=0.0):
    lo, hi = cell_soc_window(core)
    torch.manual_seed(seed)
    net = ObserverNet(closure_v=closure_mv / 1000).double()
    t0 = time.perf_counter()
    losses = train_observer(net, core, log, lo, hi, args.period, args.iterations, args.lr,
                            f" ({label})", voltage_weight)
    return net, {"seconds": time.perf_counter() - t0, "loss_first": losses[0],
                 "loss_last": losses[-1], "logs": label, "closure_mV": closure_mv,
                 "voltage_weight": voltage_weight}


def train_nets(args, seed: int, dfn_cfg) -> tuple[dict, dict]:
    """The learned observers of ``args.nets``: trained on core-made logs (the recipe of
    scripts/bench_observer.py: before), on DFN logs (after), on DFN logs with a voltage
    closure head and a voltage loss term."""
    nets, info = {}, {}
    if "learned_observer_core_trained" in args.nets:
        g = torch.Generator().manual_seed(1000 + seed)
        core, lo, hi = core_made_pack(args.train_cells * len(TRAIN), g)
        log = core_made_logs(core, lo, hi, int(round(600 / args.period)), args.period, g)
        key = "learned_observer_core_trained"
        nets[key], info[key] = _train(args, seed, core, log, "core logs")
    if not {"learned_observer", "learned_observer_closure"} & set(args.nets):
        return nets, info  # no net needs the DFN training logs
    g = torch.Generator().manual_seed(3000 + seed)
    cells, nominal = draw(100 + seed, args.train_cells)
    core = core_for(cells * len(TRAIN))
    single = core_for(cells)
    log = cat_logs([dfn_logs(single, cells, nominal, cond, args.period, g, dfn_cfg)
                    for cond in TRAIN])
    dfn_info = {"dfn_seconds": log["dfn_seconds"], "train_cells": args.train_cells,
                "conditions": [c.name for c in TRAIN]}
    if "learned_observer" in args.nets:
        nets["learned_observer"], info["learned_observer"] = _train(args, seed, core, log,
                                                                    "DFN logs")
        info["learned_observer"].update(dfn_info)
    if "learned_observer_closure" in args.nets:
        key = "learned_observer_closure"
        nets[key], info[key] = _train(args, seed, core, log, "DFN logs, closure",
                                      args.closure_mv, args.voltage_weight)
        info[key].update(dfn_info)
    return nets, info


def evaluate(core, log, nets: dict, period: float, with_floor: bool, skip=(),
             ekf: dict | None = None) -> dict:
    lo, hi = cell_soc_window(core)
    out = {}
    runs = [(name, None) for name in ESTIMATORS if name != "learned_observer"]
    runs += [(name, net) for name, net in nets.items()]
    for name, net in runs:
        if name in skip:
            continue
        t0 = time.perf_counter()
        if net is None:
            c_n, c_p, v = run_estimator(name, core, log, lo, hi, period,
                                        ekf_config=ekf_config(ekf) if ekf else None)
        else:
            with torch.no_grad():
                c_n, c_p, v = run_learned(core, net, log, lo, hi, period)
        out[name] = summarise(core, c_n, c_p, v, log, period)
        out[name]["seconds"] = time.perf_counter() - t0
        print(name, {k: v for k, v in out[name].items() if "series" not in k}, flush=True)
    if with_floor:
        c_n, c_p, v = run_open_loop(core, log, lo, hi, period, start=log["true_start"])
        out["open_loop_core_true_start"] = summarise(core, c_n, c_p, v, log, period)
    return out


def nominal_params(cells: list[dict], nominal: dict) -> CoreParams:
    return CoreParams.from_truth({k: [nominal[k]] * len(cells) for k in cells[0]})


def identify_cells(args, seed: int, core, cells, nominal, dfn_cfg) -> tuple[CoreParams, dict]:
    """Each test cell's parameters identified from its own :data:`IDENT` log (measured V/I/T
    only; the truth enters only the reported errors)."""
    g = torch.Generator().manual_seed(5000 + seed)
    log = dfn_logs(core, cells, nominal, IDENT, args.period, g, dfn_cfg)
    nom = nominal_params(cells, nominal)
    t0 = time.perf_counter()
    res = identify(nom, log["V"], log["I"], log["T"], args.period,
                   IdentifyConfig(iterations=args.ident_iterations))
    seconds = time.perf_counter() - t0
    err = parameter_errors(res.params, core.params)
    err_nom = parameter_errors(nom, core.params)
    info = {"condition": IDENT.__dict__, "samples": int(log["V"].shape[1]),
            "dfn_seconds": log["dfn_seconds"], "seconds": seconds,
            "objective_evaluations": len(res.loss_history),
            "loss_first": res.loss_history[0] if res.loss_history else None,
            "loss_last": res.loss_history[-1] if res.loss_history else None,
            "fit_voltage_rmse_mV": (1e3 * res.voltage_rmse).tolist(),
            "relative_error_identified": {k: v.tolist() for k, v in err.items()},
            "relative_error_nominal": {k: v.tolist() for k, v in err_nom.items()},
            "mean_abs_error_pct_identified": {k: 100 * float(v.abs().mean())
                                              for k, v in err.items()},
            "mean_abs_error_pct_nominal": {k: 100 * float(v.abs().mean())
                                           for k, v in err_nom.items()}}
    print("identification", {k: round(v, 1) for k, v in
                             info["mean_abs_error_pct_identified"].items()}, flush=True)
    return res.params, info


def one_seed(args, seed: int, dfn_cfg, progress=None) -> dict:
    """Train the nets, then every held-out condition; ``progress(partial result)`` after each
    condition (so a failure later loses nothing computed)."""
    nets, info = train_nets(args, seed, dfn_cfg)
    res: dict = {"training": info, "conditions": {}}
    cells, nominal = draw(200 + seed, args.test_cells)
    core = core_for(cells)
    identified = None
    if args.identified:
        identified, res["identification"] = identify_cells(args, seed, core, cells, nominal,
                                                           dfn_cfg)
    g = torch.Generator().manual_seed(4000 + seed)
    for cond in TEST:
        if args.only and cond.name not in args.only:
            continue
        log = dfn_logs(core, cells, nominal, cond, args.period, g, dfn_cfg)
        entry = {"ambient_c": cond.ambient_c, "prior": cond.prior, "lead_s": log["lead_s"],
                 "soc_start": log["soc_start"].tolist(),
                 "prior_soc_error": log["prior_soc_error"].tolist(),
                 "first_current_a": log["I"][:, 0].tolist(),
                 "duration_s": args.period * log["I"].shape[1], "dfn_seconds": log["dfn_seconds"],
                 "dfn_failures_redrawn": log["dfn_failures"]}
        print(f"seed {seed} {cond.name}", flush=True)
        entry["oracle_parameters"] = evaluate(core, log, nets, args.period, True, args.skip, args.ekf)
        if args.nominal:
            nom = ReducedCore(nominal_params(cells, nominal))
            entry["nominal_parameters"] = evaluate(nom, log, nets, args.period, False, args.skip, args.ekf)
        if identified is not None:
            entry["identified_parameters"] = evaluate(ReducedCore(identified), log, nets,
                                                      args.period, False, args.skip,
                                                      args.ekf)
        res["conditions"][cond.name] = entry
        if progress is not None:
            progress(res)
    return res


def summary_over_seeds(per_seed: dict) -> dict:
    """Per condition, parameter setting and estimator: mean and std over the seeds that ran it
    (``seeds`` lists them: a run cut short leaves a condition with fewer)."""
    out: dict = {}
    for run in per_seed.values():
        for cond, entry in run["conditions"].items():
            for setting in SETTINGS:
                for name in entry.get(setting, {}):
                    out.setdefault(cond, {}).setdefault(setting, {}).setdefault(name, None)
    for cond, settings in out.items():
        for setting, rows in settings.items():
            for name in rows:
                have = {k: r["conditions"][cond][setting][name] for k, r in per_seed.items()
                        if name in r["conditions"].get(cond, {}).get(setting, {})}
                rows[name] = {"seeds": sorted(have), **mean_std(list(have.values()))}
    return out


ROW_NAMES = {"open_loop_core": "open-loop core", "coulomb_counting": "coulomb counting",
             "ekf": "EKF", "subspace_observer": "subspace Kalman (SOC direction, loaded prior)",
             "subspace_observer_dR": "subspace Kalman + resistance bias dR (every sample)",
             "subspace_observer_dR_step": "subspace Kalman + dR (updated at current steps)",
             "learned_observer_core_trained": "learned, trained on core logs",
             "learned_observer": "learned, trained on DFN logs",
             "learned_observer_closure": "learned + voltage closure, DFN logs",
             "open_loop_core_true_start": "core from the true state (floor)"}


def markdown_table(summary: dict, setting: str = "oracle_parameters") -> str:
    """The README's table: one row per condition and estimator, mean +- std over seeds."""

    def cell(m: dict, key: str, fmt: str = "{:.2f}") -> str:
        if key not in m or not isinstance(m[key], dict):
            return "-"
        return (fmt + "±" + fmt).format(m[key]["mean"], m[key]["std"])

    lines = ["| condition | estimator | c_s n / p at 2 min [% c_max] | at 10 min | last 5 min "
             "| cells < 1 % by the end | voltage RMSE [mV] | after 10 min / last 5 min [mV] |",
             "|---|---|---|---|---|---|---|---|"]
    for cond, settings in summary.items():
        for name, m in settings.get(setting, {}).items():
            lines.append(
                f"| {cond} | {ROW_NAMES.get(name, name)} "
                f"| {cell(m, 'c_s_n_rmse_pct_at_s_120')} / {cell(m, 'c_s_p_rmse_pct_at_s_120')} "
                f"| {cell(m, 'c_s_n_rmse_pct_at_s_600')} / {cell(m, 'c_s_p_rmse_pct_at_s_600')} "
                f"| {cell(m, 'c_s_n_rmse_pct_last_5min')} / {cell(m, 'c_s_p_rmse_pct_last_5min')} "
                f"| {cell(m, 'cells_below_1pct_by_end', '{:.1f}')} "
                f"| {cell(m, 'voltage_rmse_mV', '{:.1f}')} "
                f"| {cell(m, 'voltage_rmse_mV_after_10min', '{:.1f}')} / "
                f"{cell(m, 'voltage_rmse_mV_last_5min', '{:.1f}')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_observer_dfn.json"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-cells", type=int, default=8,
                    help="cells per training condition (one DFN log each)")
    ap.add_argument("--test-cells", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--only", nargs="*", help="held-out condition names (default: all)")
    ap.add_argument("--nominal", action="store_true",
                    help="also run every estimator with nominal parameters")
    ap.add_argument("--identified", action="store_true",
                    help="also run every estimator with parameters identified from each test "
                         "cell's own V/I/T (an identification log, IDENT)")
    ap.add_argument("--ident-iterations", type=int, default=20,
                    help="L-BFGS iterations of the identification")
    ap.add_argument("--nets", nargs="*", default=["learned_observer_core_trained",
                                                  "learned_observer"],
                    help="learned observers to train: learned_observer_core_trained (core "
                         "logs), learned_observer (DFN logs), learned_observer_closure (DFN "
                         "logs, voltage closure head)")
    ap.add_argument("--closure-mv", type=float, default=30.0,
                    help="bound of learned_observer_closure's voltage closure term [mV]")
    ap.add_argument("--voltage-weight", type=float, default=1.0,
                    help="weight of the voltage term in the closure observer's training loss")
    ap.add_argument("--ekf", type=json.loads, default=None,
                    help='EKFConfig overrides of the ekf row, JSON, e.g. \'{"gate_sigma": 4}\'')
    ap.add_argument("--skip", nargs="*", default=[], help="estimator rows to leave out")
    ap.add_argument("--dfn-r", type=int, default=30)
    ap.add_argument("--dfn-x", type=int, default=16)
    ap.add_argument("--merge", nargs="*", help="per-seed JSON files of earlier runs to merge "
                    "into --out instead of running (e.g. seeds run as separate processes)")
    ap.add_argument("--table", action="store_true",
                    help="print the markdown table of an existing --out and exit")
    args = ap.parse_args(argv)
    if args.ekf:
        ekf_config(args.ekf)  # unknown keys refused before any DFN log is made
    if args.table:
        summary = json.loads(Path(args.out).read_text())["summary"]
        for setting in SETTINGS:
            if any(setting in v for v in summary.values()):
                print(f"{setting}:\n" + markdown_table(summary, setting))
        return 0
    torch.set_num_threads(1)
    command = " ".join(["scripts/bench_observer_dfn.py"] + (argv if argv is not None
                                                            else sys.argv[1:]))
    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        result = json.loads(json.dumps(parts[0]))
        result["merged_from"] = [p["command"] for p in parts]
        result["command"] = command
        result["per_seed"] = {}
        for p in parts:  # seeds side by side; the same seed's rows from several runs united
            for k, run in p["per_seed"].items():
                if k not in result["per_seed"]:
                    result["per_seed"][k] = run
                    continue
                have = result["per_seed"][k]
                have["training"].update(run["training"])
                if "identification" in run:  # the later run's identified rows come with it
                    have["identification"] = run["identification"]
                for cond, entry in run["conditions"].items():
                    for setting in SETTINGS:
                        if setting in entry:
                            have["conditions"][cond].setdefault(setting, {}).update(
                                entry[setting])
        result["summary"] = summary_over_seeds(result["per_seed"])
        write_report(result, args.out)
        return 0
    dfn_cfg = fine_model_config(args.dfn_r, args.dfn_x)
    result: dict = {"command": command,
                    "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                "torch_version": torch.__version__, "threads": 1,
                                "note": "2-core dev machine shared with other engineers' jobs",
                                "loadavg_1_5_15_at_start": list(os.getloadavg())},
                    "config": vars(args), "dfn_var_pts": dfn_cfg.var_pts,
                    "comparison_grid": "DFN fields interpolated onto the core's grid "
                                       "(8 particles x 12 shell centres per electrode)",
                    "parameters": "oracle: each cell's true parameters from the draw",
                    "train_conditions": [c.__dict__ for c in TRAIN],
                    "test_conditions": [c.__dict__ for c in TEST], "per_seed": {}}
    t0 = time.perf_counter()
    for seed in args.seeds:
        def progress(res, seed=seed):
            result["per_seed"][str(seed)] = res
            Path(args.out + ".partial").parent.mkdir(parents=True, exist_ok=True)
            Path(args.out + ".partial").write_text(json.dumps(result, indent=1))

        result["per_seed"][str(seed)] = one_seed(args, seed, dfn_cfg, progress)
    result["total_seconds"] = time.perf_counter() - t0
    result["summary"] = summary_over_seeds(result["per_seed"])
    write_report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
