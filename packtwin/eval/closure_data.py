"""The reduced core's voltage error along its own trajectories on a DFN truth store: the data a
voltage closure (:mod:`packtwin.physics.voltage_closure`) is fitted on.

For every (scenario, snapshot) cycle, all cells together: the core with each cell's TRUE
parameters (the store's table) starts from the DFN's state at the cycle's sample 0 (c_s and c_e
interpolated onto its grid, the plated lithium uniform through the electrode) and runs open loop
on the measured current and temperature; at every later valid sample it gives the closure's
features and the measured minus the core's voltage. Open loop over a whole cycle is what a filter
that tracks the SOC sees: its state keeps the core's own profiles, not the DFN's (with the true
parameters the core's SOC follows the DFN's to the lithium the side reactions take).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from packtwin import schema
from packtwin.eval.dfn_logs import state_from_fields
from packtwin.eval.observer_predict import oracle_params
from packtwin.physics.core import CoreConfig, CoreOutputs, ReducedCore
from packtwin.physics.voltage_closure import closure_features


def core_residuals(ds: xr.Dataset, config: CoreConfig,
                   scenarios: Sequence[int] | None = None,
                   snapshots: Sequence[int] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(features [N, F], measured minus core voltage [N] [V], scenario position of each row
    [N]) over the selected cycles' valid samples after the first (positions; None: all)."""
    cells = list(range(ds.sizes[schema.CELL]))
    core = ReducedCore(oracle_params(ds, cells), config)
    grid = {d: ds[d].values for d in ("x_n", "r_n", "x_p", "r_p", "x")}
    period = float(ds.attrs["period_s"])
    feats, res, where = [], [], []
    scenarios = range(ds.sizes[schema.SCENARIO]) if scenarios is None else scenarios
    snapshots = range(ds.sizes[schema.SNAPSHOT]) if snapshots is None else snapshots
    for s in scenarios:
        for n in snapshots:
            sel = ds.isel({schema.SCENARIO: s, schema.SNAPSHOT: n})
            valid = np.asarray(sel["valid"].values > 0)
            k_end = int(valid.sum())
            if k_end < 2 or not valid[:k_end].all():
                continue  # a failed or empty cycle: nothing to learn from
            start = state_from_fields(core, *(sel[f].isel(time=0).values
                                              for f in ("c_s_n", "c_s_p", "c_e")), grid)
            if config.plating:
                plated = np.asarray(sel["plated_lithium"].values[:, 0], float)
                start = start._replace(c_pl=torch.as_tensor(plated, dtype=core.dtype)[:, None]
                                       .expand(-1, config.n_x_n).clone())
            window = slice(1, k_end)
            I = torch.as_tensor(np.asarray(sel["current"].values[:, window], float))
            T = torch.as_tensor(np.asarray(sel["temperature"].values[:, window], float))
            V = torch.as_tensor(np.asarray(sel["voltage"].values[:, window], float))
            with torch.no_grad():
                _, out = core.simulate(start, I, T, period)
            B, K = I.shape
            flat = CoreOutputs(*(out[f].reshape(B * K, *out[f].shape[2:])
                                 for f in CoreOutputs._fields))
            x = closure_features(core, flat, out["c_e"].reshape(B * K, -1), I.reshape(-1),
                                 T.reshape(-1))
            r = (V - out["voltage"]).reshape(-1)
            keep = torch.isfinite(r) & torch.isfinite(x).all(1)
            feats.append(x[keep])
            res.append(r[keep])
            where.append(np.full(int(keep.sum()), s))
    if not feats:
        raise ValueError("core_residuals: no complete cycle in the selection")
    return torch.cat(feats), torch.cat(res), np.concatenate(where)
