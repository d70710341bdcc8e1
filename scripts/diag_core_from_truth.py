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
            plating: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(model - measured voltage [V], measured current [A], model - store's x-averaged plated
    lithium [mol/m3] or None), each [cell, k1 - k0] for samples k0 + 1 .. k1 of (scenario,
    snapshot) (positions), the core started at sample k0; ``plating``: the core with plated
    lithium (CoreConfig.plating), started from the store's x-averaged plated lithium, uniform
    through the electrode."""
    if not 0 <= k0 < k1:
        raise ValueError(f"need 0 <= from-sample < to-sample, got {k0}, {k1}")
    cells = list(range(ds.sizes[schema.CELL]))
    core = ReducedCore(oracle_params(ds, cells), CoreConfig(plating=plating))
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
    if plating:
        start = start._replace(c_pl=torch.as_tensor(plated[:, k0], dtype=dt)[:, None].expand(
            -1, core.config.n_x_n).clone())
    I = torch.as_tensor(sel["current"].values[:, window].astype(float), dtype=dt)
    T = sel["temperature"]
    T_k = T.values[:, window].astype(float) + (273.15 if T.attrs.get("units") == "degC" else 0.0)
    with torch.no_grad():
        _, out = core.simulate(start, I, torch.as_tensor(T_k, dtype=dt),
                               float(ds.attrs["period_s"]))
    d_pl = (out["c_pl"].mean(-1).numpy() - plated[:, window]) if plating else None
    return out["voltage"].numpy() - sel["voltage"].values[:, window], I.numpy(), d_pl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store")
    p.add_argument("--scenario", type=int, required=True, help="scenario position")
    p.add_argument("--snapshot", type=int, default=0, help="cycle position")
    p.add_argument("--from-sample", type=int, required=True)
    p.add_argument("--to-sample", type=int, required=True)
    p.add_argument("--plating", action="store_true",
                   help="the core with plated lithium (dPl: model - store, mol/m3)")
    args = p.parse_args(argv)
    ds = xr.open_zarr(args.store, consolidated=False)
    dv, I, d_pl = offsets(ds, args.scenario, args.from_sample, args.to_sample, args.snapshot,
                          args.plating)
    for j in range(dv.shape[1]):
        print(f"sample {args.from_sample + 1 + j}: " + "  ".join(
            f"cell {c} I {I[c, j]:+6.2f} A  dV {1e3 * dv[c, j]:+6.1f} mV"
            + ("" if d_pl is None else f"  dPl {d_pl[c, j]:+6.1f}")
            for c in range(dv.shape[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
