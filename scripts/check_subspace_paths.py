"""How far the streamed subspace observer's estimates move with the speed work (issue 9).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/check_subspace_paths.py --ref main \\
        --out reports/subspace_paths_check.json

Three logs made by the core itself for ``--cells`` nominal cells from 80 % SOC (5 mV noise, the
filter's first voltage read 30 mV off, as in ``bench_inference.py``'s subspace section):
1C at 10 s, 25 degC; a 2C / rest / regen pulse pattern at 10 s, -10 degC; the same pattern at
60 s, 25 degC. Each is streamed (``SubspaceStream.step``) with

* ``default``: this checkout's default configuration;
* ``warm``: ``SubspaceConfig(warm_start=True)`` (the opt-in Newton warm starts);
* ``cold12``: the default with 12 instead of 6 cold Newton iterations (a converged reference:
  how far any Newton-level change can move the estimates on that log);
* ``ref``: the default configuration of git ref ``--ref``'s own checkout (subprocess).

Reported per log: max |difference| over all samples and cells of the particle shells and
surface concentrations [mol/m3] and of the model voltage [mV], and whether the two runs are
bit for bit equal. ``--dump`` is the subprocess side (whatever ``packtwin`` is importable).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LOGS = {"1C_10s_25C": (10.0, 298.15, False), "pulses_10s_-10C": (10.0, 263.15, True),
        "pulses_60s_25C": (60.0, 298.15, True)}
FIELDS = ("c_n", "c_p", "c_n_surf", "c_p_surf", "voltage")


def _log(core, period: float, K: int, temp: float, pulses: bool):
    from packtwin.physics.observer_stream import cell_lines, cell_soc_window

    n = core.params.n_cells
    lo, hi = cell_soc_window(core)
    c = core.design.constants
    sto = lo + 0.8 * (hi - lo)
    start = core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)
    if pulses:  # 2C, 2C, rest, regen C/1, 1C, rest
        pat = torch.tensor([10.0, 10.0, 0.0, -5.0, 5.0, 0.0], dtype=core.dtype)
        I = pat.repeat(K // 6 + 1)[:K][None].expand(n, K).clone()
    else:
        I = torch.full((n, K), 5.0, dtype=core.dtype)
    T = torch.full((n, K), temp, dtype=core.dtype)
    _, out = core.simulate(start, I, T, period)
    noise = torch.randn(n, K, generator=torch.Generator().manual_seed(0), dtype=core.dtype)
    return out["voltage"] + 0.005 * noise, I, T


def dump(path: str, cells: int, samples: int) -> None:
    """Stream every log with every configuration this checkout has; save the estimates."""
    from packtwin.physics.core import CoreConfig, ReducedCore
    from packtwin.physics.core_params import CoreParams
    from packtwin.physics.subspace_observer import SubspaceConfig
    from packtwin.physics.subspace_stream import SubspaceStream

    torch.set_num_threads(1)
    configs = {"default": (SubspaceConfig(), CoreConfig()),
               "cold12": (SubspaceConfig(), CoreConfig(newton_iterations=12))}
    if "warm_start" in SubspaceConfig.__dataclass_fields__:
        configs["warm"] = (SubspaceConfig(warm_start=True), CoreConfig())
    res = {}
    for name, (period, temp, pulses) in LOGS.items():
        V, I, T = _log(ReducedCore(CoreParams.nominal(cells)), period, samples, temp, pulses)
        for cname, (cfg, core_cfg) in configs.items():
            core = ReducedCore(CoreParams.nominal(cells), core_cfg)
            s = SubspaceStream.from_first_sample(core, V[:, 0] + 0.03, I[:, 0], T[:, 0],
                                                 config=cfg)
            rows = []
            for k in range(1, samples):
                e = s.step(V[:, k], I[:, k], T[:, k], period)
                st = s.estimate.state
                rows.append({"c_n": st.c_n.clone(), "c_p": st.c_p.clone(),
                             "c_n_surf": e.c_n_surf.clone(), "c_p_surf": e.c_p_surf.clone(),
                             "voltage": e.voltage.clone()})
            res[(name, cname)] = rows
    torch.save(res, path)


def difference(a: list[dict], b: list[dict]) -> dict:
    c = max(float((x[f] - y[f]).abs().max()) for x, y in zip(a, b, strict=True)
            for f in FIELDS[:4])
    v = max(float((x["voltage"] - y["voltage"]).abs().max()) for x, y in zip(a, b, strict=True))
    same = all(torch.equal(x[f], y[f]) for x, y in zip(a, b, strict=True) for f in FIELDS)
    return {"max_abs_c_s_mol_m3": c, "max_abs_voltage_mv": 1e3 * v, "bitwise_equal": same}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=None, help="git ref to compare the default path with")
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--out", default=None, help="JSON report (default: print only)")
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dump:
        dump(args.dump, args.cells, args.samples)
        return 0
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_inference import checkout

    env = dict(os.environ, OMP_NUM_THREADS="1")
    trees = {"new": (ROOT, None)}
    if args.ref:
        trees["ref"] = checkout(args.ref)
    runs = {}
    for key, (tree, _) in trees.items():
        path = Path(tree) / f"_paths_{key}.pt"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--dump", str(path),
                        "--cells", str(args.cells), "--samples", str(args.samples)],
                       check=True, cwd=tree, env=dict(env, PYTHONPATH=str(tree)))
        runs[key] = torch.load(path)
        path.unlink()
    new = runs["new"]
    report = {"command": " ".join(["scripts/check_subspace_paths.py"] + (argv or sys.argv[1:])),
              "cells": args.cells, "samples": args.samples,
              "ref_commit": trees["ref"][1] if args.ref else None, "logs": {}}
    for name in LOGS:
        row = {"warm_vs_default": difference(new[(name, "default")], new[(name, "warm")]),
               "cold12_vs_default": difference(new[(name, "default")], new[(name, "cold12")])}
        if args.ref:
            row["default_vs_ref_default"] = difference(runs["ref"][(name, "default")],
                                                       new[(name, "default")])
        report["logs"][name] = row
        print(name, json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
