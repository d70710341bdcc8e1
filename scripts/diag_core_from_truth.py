"""The reduced core run open loop from the DFN's TRUE state of a check-pack store: its voltage
minus the measured one, per cell, over a stretch of samples.

    python scripts/diag_core_from_truth.py data/observer-check-s15.zarr --scenario 4 \\
        --from-sample 432 --to-sample 472      # -10 degC: the rest after the CC-CV charge

Why: it separates the core's model form from a filter's choices. The strip guard
(packtwin/physics/robust_update.py) rests on it: from the true state the core sits 31-55 mV
below the measured voltage in the rest after a charge at -10 degC, where the DFN's plated
lithium strips back (README, the strip guard). The state at ``--from-sample``: c_s and c_e
interpolated onto the core's grid (packtwin.eval.dfn_logs.state_from_fields), the cells' TRUE
parameters from the store's table; the core then carries the measured current and temperature
(the store's convention: sample k's value is the step ending at k).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from packtwin import schema  # noqa: E402
from packtwin.eval.dfn_logs import state_from_fields  # noqa: E402
from packtwin.eval.observer_predict import oracle_params  # noqa: E402
from packtwin.physics.core import CoreConfig, ReducedCore  # noqa: E402


def offsets(ds: xr.Dataset, scenario: int, k0: int, k1: int, snapshot: int = 0,
            plating: bool = False, config: CoreConfig | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(model - measured voltage [V], measured current [A], model - store's x-averaged plated
    lithium [mol/m3] or None), each [cell, k1 - k0] for samples k0 + 1 .. k1 of (scenario,
    snapshot) (positions), the core started at sample k0; ``plating``: the core with plated
    lithium (CoreConfig.plating), started from the store's x-averaged plated lithium, uniform
    through the electrode; ``config``: the core's configuration (its ``plating`` then wins)."""
    _, out, sel, window, plated = run_core(ds, scenario, k0, k1, snapshot, plating, config)
    d_pl = (out["c_pl"].mean(-1).numpy() - plated[:, window]) if "c_pl" in out else None
    return (out["voltage"].numpy() - sel["voltage"].values[:, window],
            sel["current"].values[:, window].astype(float), d_pl)


def run_core(ds: xr.Dataset, scenario: int, k0: int, k1: int, snapshot: int = 0,
             plating: bool = False, config: CoreConfig | None = None):
    """The core (true parameters) run from the store's state at sample k0 through k1: (core,
    outputs, the (scenario, snapshot) selection, the samples' slice, the store's plated
    lithium [cell, time])."""
    if not 0 <= k0 < k1:
        raise ValueError(f"need 0 <= from-sample < to-sample, got {k0}, {k1}")
    cells = list(range(ds.sizes[schema.CELL]))
    config = config or CoreConfig(plating=plating)
    core = ReducedCore(oracle_params(ds, cells), config)
    sel = ds.isel({schema.SCENARIO: scenario, schema.SNAPSHOT: snapshot})
    n = int(np.asarray(sel["valid"].values > 0).sum())
    if k1 >= n:
        raise ValueError(f"to-sample {k1} is past the {n} valid samples of scenario {scenario}")
    dt = core.dtype
    at_k0 = (sel[f].isel(time=k0).values for f in ("c_s_n", "c_s_p", "c_e"))
    start = state_from_fields(core, *at_k0,
                              {d: ds[d].values for d in ("x_n", "r_n", "x_p", "r_p", "x")})
    window = slice(k0 + 1, k1 + 1)
    plated = sel["plated_lithium"].values.astype(float)
    if config.plating:
        start = start._replace(c_pl=torch.as_tensor(plated[:, k0], dtype=dt)[:, None].expand(
            -1, core.config.n_x_n).clone())
    I = torch.as_tensor(sel["current"].values[:, window].astype(float), dtype=dt)
    # the voltage is read at the sample's instant current (a cut-off inside a period: the rest's)
    I_end = torch.as_tensor(sel[schema.instant_current(sel)].values[:, window].astype(float),
                            dtype=dt)
    T = sel["temperature"]
    T_k = T.values[:, window].astype(float) + (273.15 if T.attrs.get("units") == "degC" else 0.0)
    with torch.no_grad():
        _, out = core.simulate(start, I, torch.as_tensor(T_k, dtype=dt),
                               float(ds.attrs["period_s"]), I_end)
    return core, out, sel, window, plated


def summary(ds: xr.Dataset, scenario: int, k0: int, k1: int, snapshot: int = 0,
            config: CoreConfig | None = None) -> dict:
    """Over the window, all cells: voltage RMSE and largest |error| [mV], the negative
    electrode's c_s RMSE on the store's (x, r) grid [% of c_max], the core's lowest
    electrolyte concentration [mol/m3] (its floor is 1)."""
    core, out, sel, window, _ = run_core(ds, scenario, k0, k1, snapshot, config=config)
    dv = 1e3 * (out["voltage"].numpy() - sel["voltage"].values[:, window])
    grid = {d: torch.as_tensor(ds[d].values) for d in ("x_n", "r_n")}
    c_n = np.stack([core.particle_field(out["c_n"][c], out["c_n_surf"][c], core.grid_x.x_n(),
                                        grid["x_n"], grid["r_n"]).numpy()
                    for c in range(dv.shape[0])])
    truth = sel["c_s_n"].values[:, window].astype(float)
    c_max = core.design.constants.neg.c_max
    return {"voltage_rmse_mV": float(np.sqrt(np.mean(dv ** 2))),
            "voltage_max_abs_mV": float(np.abs(dv).max()),
            "c_s_n_rmse_pct": float(100 * np.sqrt(np.mean((c_n - truth) ** 2)) / c_max),
            "c_e_min": float(out["c_e"].min())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--scenario", type=int, required=True, help="scenario position")
    p.add_argument("--snapshot", type=int, default=0, help="cycle position")
    p.add_argument("--from-sample", type=int, required=True)
    p.add_argument("--to-sample", type=int, required=True)
    p.add_argument("--core", type=json.loads, default=None,
                   help="CoreConfig overrides, JSON (e.g. '{\"n_x_n\": 12, \"n_x_p\": 12}')")
    p.add_argument("--summary", action="store_true",
                   help="print the window's voltage and c_s_n RMSE and the lowest c_e instead "
                        "of every sample")
    p.add_argument("--plating", action="store_true",
                   help="the core with plated lithium (dPl: model - store, mol/m3)")
    args = p.parse_args(argv)
    ds = xr.open_zarr(args.store, consolidated=False)
    config = CoreConfig(**{"plating": args.plating, **(args.core or {})})
    if args.summary:
        print(json.dumps(summary(ds, args.scenario, args.from_sample, args.to_sample,
                                 args.snapshot, config)))
        return 0
    dv, I, d_pl = offsets(ds, args.scenario, args.from_sample, args.to_sample, args.snapshot,
                          args.plating, config)
    for j in range(dv.shape[1]):
        print(f"sample {args.from_sample + 1 + j}: " + "  ".join(
            f"cell {c} I {I[c, j]:+6.2f} A  dV {1e3 * dv[c, j]:+6.1f} mV"
            + ("" if d_pl is None else f"  dPl {d_pl[c, j]:+6.1f}")
            for c in range(dv.shape[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
