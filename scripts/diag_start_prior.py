"""How far off the observers' start prior is: the SOC read from one sample under load, by the OCV
prior and by the loaded prior (packtwin/physics/loaded_inversion.py; issue #9 item 4).

    python scripts/diag_start_prior.py [--store data/observer.zarr] [--start-s 600] \
        [--out reports/diag_start_prior.json]

Two sets of samples, both with the cells' TRUE parameters (the oracle setting of evaluate's
observer rows):

* ``core_logs``: logs the reduced core made itself (known truth, no model-form error): each of
  the store's cells from rest at a SOC, then ``HISTORY_S`` (20 min, not the prior's 10 min) at a
  constant current and temperature; the prior reads the last sample (V, I, T) and is compared
  with the core's own mean negative stoichiometry. Cases whose truth leaves the SOC window are
  dropped.
* ``store``: the DFN store (PyBaMM truth; the SOC is PyBaMM's, the prior's the core's window, so
  a rested cycle-1 start shows their definitional offset, ~0.1-0.3 points) at every cycle's first
  sample (the rested start of observer.yaml; cycle 2's parallel cells then carry a small
  balancing current) and at ``--start-s`` (observer_loaded.yaml's loaded start).

SOC errors are prior minus truth in points of each cell's own SOC window (100 = the window).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packtwin import schema  # noqa: E402
from packtwin.data import store  # noqa: E402
from packtwin.eval.observer_predict import oracle_params  # noqa: E402
from packtwin.physics.core import ReducedCore  # noqa: E402
from packtwin.physics.core_params import CoreParams  # noqa: E402
from packtwin.physics.loaded_inversion import PRIORS, start_stoichiometry  # noqa: E402
from packtwin.physics.observer_stream import cell_lines, cell_soc_window  # noqa: E402

HISTORY_S = 1200.0  # the core-made logs' time under load before the read sample
SOCS = (0.4, 0.8)  # start SOC of the core-made logs (fraction of the window)
C_RATES = (1.0, 2.0, -1.0)  # discharge > 0
TEMPS_C = (25.0, -10.0)
CAPACITY_AH = 5.0  # the OKane2022 cell's nominal capacity: 1C [A]


def _sub(params: CoreParams, idx) -> CoreParams:
    idx = torch.as_tensor(idx)
    return CoreParams(**{k: getattr(params, k)[idx] for k in params.names()})


def _errors(core: ReducedCore, V, I, T, truth_sto) -> dict[str, list[float]]:
    lo, hi = cell_soc_window(core)
    line = cell_lines(core)
    return {p: (100 * (start_stoichiometry(core, V, I, T, line, p, lo, hi) - truth_sto)
                / (hi - lo)).tolist() for p in PRIORS}


def core_logs(params: CoreParams) -> dict:
    """Prior SOC errors on logs the core made (see the module docstring)."""
    cells, socs, rates, temps = np.meshgrid(np.arange(params.n_cells), SOCS, C_RATES, TEMPS_C,
                                            indexing="ij")
    cells, socs, rates, temps = (a.ravel() for a in (cells, socs, rates, temps))
    core = ReducedCore(_sub(params, cells.tolist()))
    c = core.design.constants
    lo, hi = cell_soc_window(core)
    sto0 = lo + (hi - lo) * torch.as_tensor(socs)
    rest = core.initial_state(sto0 * c.neg.c_max, cell_lines(core).sto_p(sto0) * c.pos.c_max)
    steps = int(HISTORY_S // 60)
    I = torch.as_tensor(rates * CAPACITY_AH)[:, None].expand(-1, steps).contiguous()
    T = torch.as_tensor(temps + 273.15)[:, None].expand(-1, steps).contiguous()
    with torch.no_grad():
        end, _ = core.simulate(rest, I, T, 60.0)
        V = core.measure(end, I[:, -1], T[:, -1]).voltage
    vol = core.sphere["volumes"]
    truth = ((end.c_n * vol).sum(-1) / vol.sum()).mean(-1) / c.neg.c_max  # mean stoichiometry
    keep = ((truth >= lo) & (truth <= hi) & torch.isfinite(V)).numpy()
    err = _errors(core, V, I[:, -1], T[:, -1], truth)
    cases = [{"cell": int(cells[i]), "start_soc": float(socs[i]), "c_rate": float(rates[i]),
              "temperature_c": float(temps[i]), "voltage_v": float(V[i]),
              "true_soc": float((truth[i] - lo[i]) / (hi[i] - lo[i])),
              **{f"{p}_soc_error_points": err[p][i] for p in PRIORS}}
             for i in range(len(cells)) if keep[i]]
    return {"history_s": HISTORY_S, "cases": cases, "dropped_outside_window": int((~keep).sum()),
            "mean_abs_points": {p: float(np.mean([abs(r[f"{p}_soc_error_points"])
                                                  for r in cases])) for p in PRIORS}}


def store_samples(truth, params: CoreParams, start: int) -> dict:
    """Prior SOC errors on the store at every cycle's first sample and at sample ``start``."""
    n_sc, n_ce, n_sn = (truth.sizes[d] for d in (schema.SCENARIO, schema.CELL, schema.SNAPSHOT))
    out = {}
    for name, k in (("rested_start", 0), ("loaded_start", start)):
        rows = []
        for s in range(n_sc):
            for n in range(n_sn):
                core = ReducedCore(params)
                lo, hi = cell_soc_window(core)
                sel = {schema.SCENARIO: s, schema.SNAPSHOT: n, schema.TIME: k}
                V, I, T = (torch.as_tensor(truth[v].isel(sel).values, dtype=torch.float64)
                           for v in ("voltage", "current", "temperature"))
                soc = np.asarray(truth["soc"].isel(sel).values, float)
                line = cell_lines(core)
                err = {p: 100 * (((start_stoichiometry(core, V, I, T, line, p, lo, hi) - lo)
                                  / (hi - lo)).numpy() - soc) for p in PRIORS}
                rows += [{"scenario": s, "cycle": n + 1, "cell": c, "current_a": float(I[c]),
                          "temperature_c": float(T[c]) - 273.15, "true_soc": float(soc[c]),
                          **{f"{p}_soc_error_points": float(err[p][c]) for p in PRIORS}}
                         for c in range(n_ce)]
        out[name] = {"sample": k, "rows": rows,
                     "mean_abs_points": {p: float(np.mean([abs(r[f"{p}_soc_error_points"])
                                                           for r in rows])) for p in PRIORS},
                     "max_abs_points": {p: float(np.max([abs(r[f"{p}_soc_error_points"])
                                                         for r in rows])) for p in PRIORS}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="data/observer.zarr")
    ap.add_argument("--start-s", type=float, default=600.0)
    ap.add_argument("--out", default=str(ROOT / "reports" / "diag_start_prior.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    truth = store.open_store(args.store).load()
    period = float(truth.attrs["period_s"])
    params = oracle_params(truth, range(truth.sizes[schema.CELL]), args.store)
    result = {"command": " ".join(["scripts/diag_start_prior.py"] + (argv or sys.argv[1:])),
              "store": args.store, "start_s": args.start_s,
              "units": "prior minus truth, points of each cell's SOC window",
              "core_logs": core_logs(params),
              "store_samples": store_samples(truth, params, int(round(args.start_s / period)))}
    result["wall_s"] = round(time.time() - t0, 1)
    for r in result["core_logs"]["cases"]:
        print(f"core log cell {r['cell']} SOC {r['start_soc']:.1f} {r['c_rate']:+.0f}C "
              f"{r['temperature_c']:+.0f} C: true SOC {100 * r['true_soc']:.1f} %, prior error "
              + ", ".join(f"{p} {r[f'{p}_soc_error_points']:+.1f}" for p in PRIORS))
    print("core logs, mean |error| [points]:", result["core_logs"]["mean_abs_points"])
    for name, part in result["store_samples"].items():
        for r in part["rows"]:
            print(f"store {name} scenario {r['scenario']} cycle {r['cycle']} cell {r['cell']} "
                  f"I {r['current_a']:+.3f} A: "
                  + ", ".join(f"{p} {r[f'{p}_soc_error_points']:+.1f}" for p in PRIORS))
        print(f"store {name}: mean |error| {part['mean_abs_points']}, max {part['max_abs_points']}")
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
