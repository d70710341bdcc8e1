"""Plating over life on a pack store, estimated and judged (``packtwin.eval.life --plating``).

:func:`estimate_store` runs :func:`packtwin.physics.plating.plating_over_life` on every cell and
cycle of a ``cycle_series`` store from its measured ``life_voltage``/``life_current``/
``life_temperature`` and the life twin's own estimates of lost lithium and SEI at each cycle's
start (the previous cycle's ``lli_est``/``sei_thickness_est``; fresh before cycle 1). The core's
parameters are the nominal cell's (``params="nominal"``: nothing but V/I/T and the life state
enters) or, for comparison, the store's truth table (``"truth"``: an oracle, not a twin).

:func:`judge` scores the per-cycle events against the store's ``plating_event`` (PyBaMM's margin
below 0 V in the cycle) with :func:`packtwin.eval.metrics.event_scores`, per scenario and pooled,
and the plated lithium at cycle end against ``plated_lithium_end`` (MAE in mol/m3).
"""

from __future__ import annotations

import numpy as np

from packtwin import schema
from packtwin.physics.core_params import CoreParams, truth_table

TRUTH = ("plating_event", "plating_margin_min", "plated_lithium_end")
ESTIMATES = ("plating_event_est", "plating_margin_min_est", "plated_lithium_end_est")
PARAMS = ("nominal", "truth")


def core_params(ds, params: str) -> CoreParams:
    """Per-cell core parameters [cells] of a store: the nominal cell's, or its truth table."""
    if params not in PARAMS:
        raise ValueError(f"plating params must be one of {PARAMS}, got {params!r}")
    n = ds.sizes[schema.CELL]
    return CoreParams.nominal(n) if params == "nominal" else \
        CoreParams.from_truth(truth_table(ds), n_cells=n)


def start_state(est, name: str, fresh: float) -> np.ndarray:
    """A per-cycle estimate [scenario, cell, cycle] shifted one cycle on: the state at each cycle's
    start (``fresh`` before cycle 1 and where the previous cycle has none)."""
    v = np.asarray(est[name].values, float)
    out = np.concatenate([np.full(v.shape[:-1] + (1,), fresh), v[..., :-1]], axis=-1)
    return np.where(np.isfinite(out), out, fresh)


def estimate_store(ds, life_est, params: str = "nominal", **kwargs) -> tuple:
    """(estimates as a Dataset on (scenario, cell, cycle), cost dict) for every cell of ``ds``
    (a loaded ``cycle_series`` store) given the life twin's estimates ``life_est``; ``kwargs``
    go to :func:`packtwin.physics.plating.plating_over_life` (e.g. ``start``)."""
    import torch
    import xarray as xr

    from packtwin.physics.constants import okane2022
    from packtwin.physics.life_pack import SERIES, _require
    from packtwin.physics.plating import EVENT_THRESHOLD_V, plating_over_life

    _require(ds, SERIES, "plating estimate")
    S, N, C = (ds.sizes[d] for d in schema.SUMMARY_DIMS)
    series = [np.asarray(ds[n].values, float).reshape(S * N, C, -1) for n in SERIES]
    done = np.nan_to_num(ds["cycles_done"].values).astype(int) if "cycles_done" in ds else \
        np.full(S, C)
    for a in series:  # cycles a scenario did not finish are no cycle's record
        a.reshape(S, N, C, -1)[np.broadcast_to(np.arange(C)[None, None, :] >= done[:, None, None],
                                               (S, N, C))] = np.nan
    lli0 = start_state(life_est, "lli_est", 0.0).reshape(S * N, C)
    sei0 = start_state(life_est, "sei_thickness_est", okane2022().sei.L_0 * 1e9).reshape(S * N, C)
    p = core_params(ds, params)
    cell_of_row = torch.as_tensor(np.tile(np.arange(N), S))  # rows: scenario-major
    rows = CoreParams(**{f: getattr(p, f)[cell_of_row] for f in p.names()})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: extra threads only contend (hung on a busy machine)
    try:
        res = plating_over_life(rows, *series, lli0, sei0, float(ds.attrs["period_s"]), **kwargs)
    finally:
        torch.set_num_threads(threads)
    out = xr.Dataset({n: (schema.SUMMARY_DIMS, res[k].reshape(S, N, C)) for n, k in
                      zip(ESTIMATES, ("event_est", "margin_min_est", "plated_end_est"))},
                     coords={d: ds[d] for d in schema.SUMMARY_DIMS})
    schema.apply_attrs(out)
    out.attrs.update({"plating_params": params, "plating_threshold_v": EVENT_THRESHOLD_V})
    cost = {"params": params, "start": kwargs.get("start", "coulomb"),
            "cell_cycles": res["cell_cycles"], "seconds": res["seconds"],
            "seconds_per_cell_cycle": res["seconds"] / max(res["cell_cycles"], 1),
            "sweeps": res["sweeps"], "every": res["every"]}
    return out, cost


def add_plated(ds, life_est, params: str = "nominal", **kwargs) -> tuple:
    """(``life_est`` with the plating estimates merged in and ``lli_est`` made PyBaMM's LLI:
    the twin's SEI and dead lithium plus its estimated lithium still plated at each cycle's end
    (:func:`packtwin.physics.lli.with_plated`), cost dict). The plating core starts each cycle
    from ``life_est``'s own lost lithium (SEI and dead lithium, as before this step)."""
    from packtwin.physics.lli import with_plated

    pl_est, cost = estimate_store(ds, life_est, params=params, **kwargs)
    out = life_est.merge(pl_est, compat="override")  # same grid, no shared variable
    out["lli_est"] = (life_est["lli_est"].dims,
                      with_plated(life_est["lli_est"].values,
                                  pl_est["plated_lithium_end_est"].values),
                      dict(life_est["lli_est"].attrs))
    out.attrs["lli_includes_plated"] = 1
    return out, cost


def judge(ds, est, source: str = "store") -> dict:
    """Event precision/recall/F1 per scenario and pooled, plated-lithium MAE, margin MAE."""
    from packtwin.eval.metrics import event_scores

    schema.require_summaries(ds, TRUTH[:2], "the plating-event score", source)
    truth_ev, est_ev = ds["plating_event"].values, est["plating_event_est"].values
    pl_t, pl_e = ds["plated_lithium_end"].values, est["plated_lithium_end_est"].values
    m_t, m_e = ds["plating_margin_min"].values, est["plating_margin_min_est"].values

    def scores(sel):
        ok = np.isfinite(pl_t[sel]) & np.isfinite(pl_e[sel])
        mk = np.isfinite(m_t[sel]) & np.isfinite(m_e[sel])
        return {**event_scores(truth_ev[sel], est_ev[sel]),
                "true_event_fraction": float(np.nanmean(truth_ev[sel])),
                "margin_min_mae_mv": float(1e3 * np.mean(np.abs(m_e[sel][mk] - m_t[sel][mk]))),
                "plated_lithium_mae": float(np.mean(np.abs(pl_e[sel][ok] - pl_t[sel][ok]))),
                "plated_lithium_true_mean": float(np.mean(pl_t[sel][ok]))}

    per = []
    for s in range(ds.sizes[schema.SCENARIO]):
        per.append({"scenario": s, "ambient_c": float(ds["ambient_temperature"].values[s]),
                    "charge_c_rate": float(ds["charge_c_rate"].values[s]),
                    **scores((s,))})
    return {"pooled": scores(...), "per_scenario": per, "target_f1": 0.95,
            "units": {"margin_min_mae_mv": "mV", "plated_lithium_mae": "mol/m3"}}
