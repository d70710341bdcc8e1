"""Twin inference latency per cycle vs PyBaMM's DFN solving the same cycle, on this machine.

    .venv/bin/python scripts/bench_inference.py [--ckpt runs/x/best.ckpt] [--out reports/bench_inference.json]

1. PyBaMM: one OKane2022 DFN cell (the generator's default options, mesh and overrides: SEI,
   partially reversible plating, lumped thermal, contact resistance) discharged at 1C, sampled
   every ``--period`` s; build time, first solve and a repeated solve are timed separately.
2. Twin: the same number of samples per cycle, for 1, 16, 100 and 1536 cells in one batched
   forward call (eager, ``torch.no_grad``), with ``torch.set_num_threads(1)`` and with all threads,
   and the TorchScript export (``packtwin.eval.export``) at the same shapes. Without ``--ckpt`` a
   freshly initialised TwinNet on the DFN's mesh is timed: latency does not depend on the weights
   (stated in the JSON).
3. Ratio = (N x DFN repeated-solve time) / (twin time for N cells): how many times faster the
   twin estimates a cycle for N cells than the DFN simulates them one after another.

4. Reduced electrochemical core (``packtwin.physics.core``, key ``core``): one thread,
   ``torch.inference_mode`` (as ``PackStream.step`` runs it), nominal cells at 1C and 25 degC.
   ``stream_step``: one sample (advance + outputs, what the stream does per sample) for 1, 16,
   100, 1536 cells at ``--period``, with the current unchanged since the last sample
   (warm-started Newton) and changed (cold start); ``cycle_1c``: a whole 1C discharge hour for
   100 cells at ``--period`` sampling (``ReducedCore.simulate`` through
   ``scripts/bench_core.py``'s ``pack_speed``). ``--sections core`` runs this part alone and
   keeps the other sections of an existing ``--out`` file; ``--core-key`` stores it under
   another key (e.g. a run of an older checkout of the core, for a before/after comparison).

5. Streaming twin (``packtwin.model.stream``, key ``stream``): latency of one sample for every
   cell of a pack (``StreamStep``: state in, estimates and new state out) for 1, 16, 100, 1536
   cells, one thread: eager (``torch.no_grad``), TorchScript and onnxruntime, the artefacts
   of ``packtwin export --stream`` (exported once at 16 cells; ONNX has a dynamic cell axis, the
   TorchScript trace runs any size), physics and data-only twins, the state some samples into a
   cycle. The net is the same as in 2 (trained checkpoint or freshly initialised on the DFN's
   mesh, taken from the existing ``--out`` file when ``--sections stream`` runs alone). Target
   (issue 11): 100 cells <= 1 ms per sample on one thread.

6. Subspace Kalman observer streamed (``packtwin.physics.subspace_stream``, key ``subspace``):
   latency of one ``SubspaceStream.step`` (advance, the iterated voltage update with its
   forward-difference Jacobian, the outputs) for 1 and 100 nominal cells at 10 s and 60 s
   sampling, one thread, on a 1C discharge made by the core itself (the filter starts 30 mV
   off, so it corrects). Each step moves the stream one sample on; ``profile`` splits the
   time of a further run of steps by where it goes (cProfile cumulative times of the core's
   advance, its measurement inside the Jacobian, the outputs' measurement, and the Newton solve
   and electrolyte inside them). Target (issue 9): 100 cells <= 1 ms per step.
   ``--sections subspace`` runs this part alone and keeps the other sections of ``--out``.
   ``warm_start_step_ms``: the same with the opt-in ``SubspaceConfig(warm_start=True)``.
   ``--subspace-ref REF`` (a git ref, e.g. ``main``): old vs new in one run: this section of
   REF's own checkout (``git archive``, its own bench script and code, in a subprocess) is
   timed right before this one, stored under ``subspace.reference`` and set against it in
   ``subspace.compare`` (the machine's load at both recorded: the cores are shared).

Each timing is the median of ``--repeats`` calls after one warm-up call. A batch whose estimated
memory exceeds ``--mem-limit-gb`` is skipped and recorded as such (never silently dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin.eval import export as export_mod  # noqa: E402
from bench_report import write_report  # noqa: E402  (scripts/ is on sys.path when run)


def dfn_cycle(period_s: float) -> dict:
    """Build, solve and re-solve a 1C discharge of one OKane2022 DFN cell; timings and grid."""
    import pybamm

    from packtwin.sim.config import ModelConfig

    cfg = ModelConfig()
    t0 = time.perf_counter()
    model = pybamm.lithium_ion.DFN(dict(cfg.options))
    pv = pybamm.ParameterValues(cfg.parameter_set)
    pv.update(dict(cfg.parameter_overrides), check_already_exists=False)
    exp = pybamm.Experiment([f"Discharge at 1C until {pv['Lower voltage cut-off [V]']} V"],
                            period=f"{period_s} seconds")
    sim = pybamm.Simulation(model, parameter_values=pv, experiment=exp, var_pts=dict(cfg.var_pts))
    sim.build_for_experiment()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = sim.solve()
    t_first = time.perf_counter() - t0
    repeats = []
    for _ in range(3):
        t0 = time.perf_counter()
        sol = sim.solve()
        repeats.append(time.perf_counter() - t0)
    c_n = sol["Negative particle concentration [mol.m-3]"].entries  # [r, x, t]
    c_p = sol["Positive particle concentration [mol.m-3]"].entries
    return {"pybamm_version": pybamm.__version__, "model": "DFN", "parameter_set": cfg.parameter_set,
            "options": cfg.options, "var_pts": cfg.var_pts,
            "parameter_overrides": cfg.parameter_overrides, "period_s": period_s,
            "n_samples": int(len(sol.t)), "cycle_duration_s": float(sol.t[-1]),
            "build_s": t_build, "first_solve_s": t_first, "solve_s": statistics.median(repeats),
            "solve_repeats_s": repeats, "grid": {"x_n": int(c_n.shape[1]), "r_n": int(c_n.shape[0]),
                                                 "x_p": int(c_p.shape[1]), "r_p": int(c_p.shape[0])}}


DEFAULT_GRID = {"x_n": 8, "r_n": 10, "x_p": 8, "r_p": 10}  # the generator's default DFN mesh


def make_net(ckpt: str | None, grid: dict, physics: bool):
    if ckpt:
        return export_mod.load_net(ckpt), f"trained checkpoint {ckpt}"
    from packtwin.model.twinnet import TwinNet

    info = {"n_cells": 1536, "param_keys": [], "c_max_n": 33133.0, "c_max_p": 63104.0,
            "x_n": np.linspace(0, 1, grid["x_n"]).tolist(), "r_n": np.linspace(0, 1, grid["r_n"]).tolist(),
            "x_p": np.linspace(0, 1, grid["x_p"]).tolist(), "r_p": np.linspace(0, 1, grid["r_p"]).tolist()}
    net = TwinNet(1536, info, physics=physics).eval()
    return net, ("freshly initialised TwinNet (default sizes) on the DFN's mesh: latency does "
                 "not depend on the weights")


def timed(fn, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(3):  # warm-up: allocations, and TorchScript's profiling executor runs
            fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def est_memory_gb(n: int, t: int, grid: dict) -> float:
    # ~8 live float32 copies of each electrode's [B, T, X, R] field (modes, prior, sum, outputs).
    pts = grid["x_n"] * grid["r_n"] + grid["x_p"] * grid["r_p"]
    return 8 * 4 * n * t * pts / 1e9


def _sample_at(core, state, I, T, dt, guess):
    """Arguments of core.measure after one advance (warm-started from ``guess`` if given)."""
    new, j = core.advance(state, I, T, dt, guess)
    return new, I, T, j


def core_section(cells: list[int], period: float, repeats: int, plating: bool = False) -> dict:
    """Streaming-step and whole-cycle latency of the reduced core (one thread; ``plating``:
    the core with plated lithium, CoreConfig.plating)."""
    with torch.inference_mode():
        return _core_section(cells, period, repeats, plating)


def _core_section(cells: list[int], period: float, repeats: int, plating: bool = False) -> dict:
    import subprocess

    from packtwin.physics.core import CoreConfig, ReducedCore
    from packtwin.physics.core_params import CoreParams

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or None
    except OSError:
        commit = None
    out: dict = {"threads": 1, "period_s": period, "core_commit": commit, "mode": "inference_mode",
                 "plating": plating,
                 "loadavg_1_5_15_at_start": list(os.getloadavg()), "stream_step": []}
    config = CoreConfig(plating=plating)
    amps = 5.0  # 1C of the 5 Ah cell
    for n in cells:
        core = ReducedCore(CoreParams.nominal(n), config)
        I = torch.full((n,), amps, dtype=torch.float64)
        T = torch.full((n,), 298.15, dtype=torch.float64)
        state, guess = core.advance(core.initial_state(), I, T, period)
        # one sample as ReducedCore.simulate runs it (advance, then outputs); warm: the current
        # has not changed since the last sample (simulate's rule), cold: it has
        t_warm = timed(lambda: core.measure(*_sample_at(core, state, I, T, period, guess)), repeats)
        t_cold = timed(lambda: core.measure(*_sample_at(core, state, I, T, period, None)), repeats)
        row = {"cells": n, "warm_ms": 1e3 * t_warm, "cold_ms": 1e3 * t_cold}
        if period > 10.0:  # one sub-step instead of ceil(period / 10 s): the 10 s stream
            t10 = timed(lambda: core.measure(*_sample_at(core, state, I, T, 10.0, guess)),
                        repeats)
            row["warm_ms_at_10s_period"] = 1e3 * t10
        out["stream_step"].append(row)
        print(json.dumps(row), flush=True)
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_core import pack_speed  # the same measurement as reports/bench_core.json's

    out["cycle_1c"] = pack_speed(100, period, repeats=max(3, repeats // 2), config=config)
    print(json.dumps(out["cycle_1c"]), flush=True)
    out["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    torch.set_num_threads(threads)
    return out


SUBSPACE_PERIODS = (10.0, 60.0)


def _subspace_stream(n: int, period: float, samples: int, config=None):
    """A fresh SubspaceStream on n nominal cells and the V/I/T [n, samples] of a 1C discharge
    from 90 % made by the same core (the filter's first voltage read 30 mV off); ``config``:
    a :class:`SubspaceConfig` (default: the default one)."""
    from packtwin.physics.core import ReducedCore
    from packtwin.physics.core_params import CoreParams
    from packtwin.physics.observer_stream import cell_lines, cell_soc_window
    from packtwin.physics.subspace_observer import SubspaceConfig
    from packtwin.physics.subspace_stream import SubspaceStream

    core = ReducedCore(CoreParams.nominal(n))
    lo, hi = cell_soc_window(core)
    c = core.design.constants
    sto = lo + 0.9 * (hi - lo)  # at rest on the cell's lithium-inventory line
    start = core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)
    I = torch.full((n, samples), 5.0, dtype=core.dtype)  # 1C of the 5 Ah cell
    T = torch.full((n, samples), 298.15, dtype=core.dtype)
    _, log = core.simulate(start, I, T, period)
    V = log["voltage"]
    stream = SubspaceStream.from_first_sample(core, V[:, 0] + 0.03, I[:, 0], T[:, 0],
                                              config=config or SubspaceConfig())
    return stream, V, I, T


def _profile_split(stats, total: float) -> dict:
    """Fractions of ``total`` spent in the named functions (cProfile cumulative times)."""
    wanted = {"advance": ("core.py", "advance"),
              "jacobian_measure": ("subspace_observer.py", "_voltage_and_jacobian"),
              "measure_all": ("core.py", "measure"),
              "electrode_pair_solve": ("electrode_pair.py", None),
              "electrolyte": ("electrolyte.py", None)}
    out = {}
    for key, (fname, func) in wanted.items():
        cum = [ct for (f, _, name), (_, _, _, ct, _) in stats.stats.items()
               if f.endswith(fname) and (func is None or name == func)]
        # a module's share: its largest cumulative entry (the outermost call; nested ones
        # are inside it)
        out[key] = max(cum) / total if cum else 0.0
    return out


def _timed_steps(stream, V, I, T, period: float, repeats: int) -> float:
    """Median seconds of ``repeats`` SubspaceStream.step calls, each a new sample."""
    k = iter(range(1, V.shape[1]))

    def step():
        i = next(k)
        stream.step(V[:, i], I[:, i], T[:, i], period)

    return timed(step, repeats)


def checkout(ref: str) -> tuple[Path, str]:
    """git ref ``ref``'s tree extracted into a new temporary folder (``git archive``), and its
    short commit: an older version of the code to time or compare against in a subprocess."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="packtwin_ref_"))
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], check=True,
                         capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp, sha


def reference_subspace(ref: str, cells: list[int], repeats: int) -> dict:
    """The subspace section of git ref ``ref``'s own checkout (code and bench script), run in a
    subprocess with the same arguments: the "old" of an old-vs-new comparison."""
    import subprocess

    tmp, sha = checkout(ref)
    out = tmp / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(tmp), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(tmp / "scripts" / "bench_inference.py"), "--sections",
                    "subspace", "--subspace-cells", *map(str, cells), "--repeats", str(repeats),
                    "--out", str(out)], check=True, cwd=tmp, env=env)
    sub = json.loads(out.read_text())["subspace"]
    return {"ref": ref, "commit": sha, "loadavg_1_5_15_at_start": sub["loadavg_1_5_15_at_start"],
            "loadavg_1_5_15_at_end": sub["loadavg_1_5_15_at_end"],
            "runs": [{k: r[k] for k in ("cells", "period_s", "step_ms")} for r in sub["runs"]]}


def subspace_section(cells: list[int], repeats: int, ref: str | None = None) -> dict:
    """Per-sample latency of the streamed subspace Kalman observer, one thread (and, with
    ``ref``, of git ref ``ref``'s checkout right before, for an old-vs-new comparison)."""
    import cProfile
    import pstats

    from packtwin.physics.subspace_observer import SubspaceConfig

    reference = reference_subspace(ref, cells, repeats) if ref else None

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict = {"threads": 1, "repeats": repeats, "cells": cells,
                 "statistic": "median seconds per SubspaceStream.step over repeats (each a new "
                              "sample), after 3 warm-up steps",
                 "loadavg_1_5_15_at_start": list(os.getloadavg()), "runs": []}
    n_prof = 10
    for period in SUBSPACE_PERIODS:
        for n in cells:
            stream, V, I, T = _subspace_stream(n, period, 3 + repeats + n_prof + 1)
            t = _timed_steps(stream, V, I, T, period, repeats)
            t_warm = _timed_steps(*_subspace_stream(n, period, 3 + repeats + 1,
                                                    SubspaceConfig(warm_start=True)),
                                  period, repeats)
            k = iter(range(4 + repeats, V.shape[1]))

            def step():
                i = next(k)
                stream.step(V[:, i], I[:, i], T[:, i], period)

            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            for _ in range(n_prof):
                step()
            prof.disable()
            total = time.perf_counter() - t0
            split = _profile_split(pstats.Stats(prof), total)
            split["outputs_measure"] = max(split["measure_all"] - split["jacobian_measure"], 0.0)
            # own time (tottime) per function, largest first: torch ops vs Python
            own = sorted(((tt, f"{Path(f).name}:{name}") for (f, _, name), (_, _, tt, _, _)
                          in pstats.Stats(prof).stats.items()), reverse=True)[:8]
            row = {"cells": n, "period_s": period, "step_ms": 1e3 * t,
                   "per_cell_us": 1e6 * t / n, "warm_start_step_ms": 1e3 * t_warm,
                   "profile": {"steps": n_prof, "seconds_profiled": total,
                               "fraction_of_step": split,
                               "top_own_time": [[name, tt / total] for tt, name in own]}}
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
    out["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    if reference is not None:
        out["reference"] = reference
        old = {(r["cells"], r["period_s"]): r["step_ms"] for r in reference["runs"]}
        out["compare"] = [{"cells": r["cells"], "period_s": r["period_s"],
                           "reference_ms": old[(r["cells"], r["period_s"])],
                           "new_ms": r["step_ms"], "new_warm_start_ms": r["warm_start_step_ms"],
                           "speedup": old[(r["cells"], r["period_s"])] / r["step_ms"],
                           "speedup_warm_start": old[(r["cells"], r["period_s"])]
                           / r["warm_start_step_ms"]}
                          for r in out["runs"] if (r["cells"], r["period_s"]) in old]
        for row in out["compare"]:
            print(json.dumps(row), flush=True)
    torch.set_num_threads(threads)
    return out


def stream_section(ckpt: str | None, grid: dict, cells: list[int], period: float,
                   repeats: int) -> dict:
    """Per-sample latency of the streaming twin (eager, TorchScript, onnxruntime), one thread."""
    from packtwin.eval import export_stream

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out: dict = {"threads": 1, "period_s": period, "grid": grid, "repeats": repeats,
                 "statistic": "median seconds per step call over repeats, after 3 warm-up calls",
                 "loadavg_1_5_15_at_start": list(os.getloadavg()), "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="packtwin_bench_stream_"))
    for physics in (True, False):
        net, source = make_net(ckpt, grid, physics)
        if ckpt and bool(net.physics) != physics:
            continue  # a checkpoint is one twin
        variant = "physics" if net.physics else "data_only"
        reports, graphs = {}, {}
        for fmt, name in (("torchscript", "stream.pt"), ("onnx", "stream.onnx")):
            t0 = time.perf_counter()
            reports[fmt] = export_stream.export_stream(net, tmp / f"{variant}_{name}", fmt,
                                                       n_cells=16, period_s=period)
            reports[fmt]["export_s"] = time.perf_counter() - t0
        graphs["torchscript"] = export_mod.load_torchscript(tmp / f"{variant}_stream.pt")
        sess = export_stream.onnx_session(tmp / f"{variant}_stream.onnx", threads=1)
        step = export_stream.StreamGraph(net).eval()
        for n in cells:
            args, _ = export_stream.example(net, n, period, seed=0)
            feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
            row = {"twin": variant, "cells": n,
                   "eager_ms": 1e3 * timed(lambda: step(*args), repeats),
                   "torchscript_ms": 1e3 * timed(lambda: graphs["torchscript"](*args), repeats),
                   "onnxruntime_ms": 1e3 * timed(lambda: sess.run(None, feeds), repeats)}
            row["per_cell_us"] = {k[:-3]: 1e3 * v / n for k, v in row.items()
                                  if k.endswith("_ms")}
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
        out[f"{variant}_export"] = {
            "source": source, "n_parameters": sum(p.numel() for p in net.parameters()),
            **{fmt: {"max_rel_error_vs_eager": max(r["max_rel_error"].values()),
                     "export_s": r["export_s"], "cell_axis": r["cell_axis"]}
               for fmt, r in reports.items()}}
    out["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    torch.set_num_threads(threads)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="trained TwinModule checkpoint (optional)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_inference.json"))
    ap.add_argument("--period", type=float, default=60.0, help="sample period [s] (generator default)")
    ap.add_argument("--cells", type=int, nargs="+", default=[1, 16, 100, 1536])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-only", action="store_true", help="time the data-only twin instead")
    ap.add_argument("--mem-limit-gb", type=float, default=6.0)
    ap.add_argument("--sections", nargs="+", choices=["twin", "core", "stream", "subspace"],
                    default=["twin", "core", "stream", "subspace"],
                    help="'twin': PyBaMM and TwinNet (1-3); 'core': the reduced core (4); "
                         "'stream': the streaming twin (5); 'subspace': the streamed subspace "
                         "Kalman observer (6)")
    ap.add_argument("--subspace-cells", type=int, nargs="+", default=[1, 100],
                    help="pack sizes of the 'subspace' section")
    ap.add_argument("--core-key", default="core", help="JSON key of the core section")
    ap.add_argument("--plating", action="store_true",
                    help="core section: the core with plated lithium (CoreConfig.plating, the "
                         "observers' core in evaluate); use with --core-key")
    ap.add_argument("--subspace-ref", default=None,
                    help="git ref whose own checkout's subspace section is timed right before "
                         "this one (old vs new in one run)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = " ".join(["scripts/bench_inference.py"] + (argv or sys.argv[1:]))
    if "twin" not in args.sections:  # core/stream alone: keep the other sections of the file
        result = json.loads(out.read_text()) if out.exists() else {}
        if "core" in args.sections:
            result[args.core_key] = core_section(args.cells, args.period, args.repeats,
                                                 args.plating)
            result[args.core_key]["command"] = command
        if "stream" in args.sections:
            grid = result.get("pybamm_dfn", {}).get("grid") or DEFAULT_GRID
            result["stream"] = stream_section(args.ckpt, grid, args.cells, args.period,
                                              max(args.repeats, 20))
            result["stream"]["command"] = command
        if "subspace" in args.sections:
            result["subspace"] = subspace_section(args.subspace_cells, args.repeats, args.subspace_ref)
            result["subspace"]["command"] = command
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        return 0

    all_threads = torch.get_num_threads()
    result: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "cpu_count": os.cpu_count(), "torch_version": torch.__version__,
                                "torch_threads_all": all_threads,
                                # other processes share the cores: read timings against this
                                "loadavg_1_5_15_at_start": list(os.getloadavg())},
                    "command": " ".join(["scripts/bench_inference.py"] + (argv or sys.argv[1:]))}
    print("PyBaMM DFN cycle ...", flush=True)
    dfn = dfn_cycle(args.period)
    result["pybamm_dfn"] = dfn
    n_time = dfn["n_samples"]
    net, source = make_net(args.ckpt, dfn["grid"], physics=not args.data_only)
    result["twin"] = {"source": source, "physics": bool(net.physics), "n_time": n_time,
                      "n_parameters": sum(p.numel() for p in net.parameters()), "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="packtwin_bench_"))
    for n in args.cells:
        mem = est_memory_gb(n, n_time, dfn["grid"])
        row: dict = {"cells": n, "est_memory_gb": round(mem, 3)}
        if mem > args.mem_limit_gb:
            row["skipped"] = f"estimated {mem:.1f} GB > --mem-limit-gb {args.mem_limit_gb}"
            result["twin"]["runs"].append(row)
            continue
        feats, cell, valid = export_mod.example_inputs(net, n, n_time, args.period, seed=0)
        cell = cell % max(int(net.n_cells), 1)
        ts_path = tmp / f"twin_{n}.pt"
        info = export_mod.export_model(net, ts_path, "torchscript", batch=n, n_time=n_time,
                                       period_s=args.period)
        traced = export_mod.load_torchscript(ts_path)
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            t_eager = timed(lambda: net(feats, cell, valid), args.repeats)
            t_ts = timed(lambda: traced(feats, cell, valid), args.repeats)
            row[f"threads_{threads}"] = {
                "eager_s": t_eager, "torchscript_s": t_ts,
                "eager_per_cell_ms": 1e3 * t_eager / n,
                "ratio_dfn_vs_eager": n * dfn["solve_s"] / t_eager,
                "ratio_dfn_vs_torchscript": n * dfn["solve_s"] / t_ts}
        torch.set_num_threads(all_threads)
        row["torchscript_max_rel_error"] = info["max_rel_error"]
        result["twin"]["runs"].append(row)
        print(json.dumps(row), flush=True)
    if "core" in args.sections:
        result[args.core_key] = core_section(args.cells, args.period, args.repeats)
    if "stream" in args.sections:
        result["stream"] = stream_section(args.ckpt, dfn["grid"], args.cells, args.period,
                                          max(args.repeats, 20))
    if "subspace" in args.sections:
        result["subspace"] = subspace_section(args.subspace_cells, args.repeats, args.subspace_ref)
    write_report(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
