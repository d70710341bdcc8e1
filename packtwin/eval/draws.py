"""Figures over several generated packs: one ``packtwin evaluate`` metrics store per cell draw.

The observers run with each cell's true parameters and are deterministic, so evaluate's own
``seed`` dim (the training seed) has one entry and says nothing about spread. What varies is the
pack: the generation seed draws other cells. ``stack_draws`` puts one metrics store per generation
seed on the ``seed`` dim, so the report's tables (``packtwin.eval.report.metric_table``: mean ±
sample std, n) read as "over cell draws". Only the pooled ``pack_*`` variables are kept: cell 0 of
one draw is not cell 0 of another.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from packtwin.eval.report import _label, metric_table, seed_stats

HEADLINE = ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse")


def stack_draws(stores: Mapping[int, xr.Dataset], names: Sequence[str] | None = None,
                where: Mapping[int, str] | None = None) -> xr.Dataset:
    """One metrics dataset per generation seed -> one dataset whose ``seed`` dim is that seed.

    ``where`` names each seed's source (a path) for the error messages and the attrs.
    A draw may lack some of the FIRST store's splits: evaluate leaves out a split whose
    scenario failed to generate (a failed PyBaMM solve is recorded in the store, not fatal);
    its values there are NaN (the tables' n counts the draws with a value) and
    ``attrs["missing_splits"]`` names them per seed.
    Raises ValueError when a store has several training seeds, a split the first store lacks,
    other variants, or missing metrics (a draw evaluated with another config is not the same
    figure).
    """
    if not stores:
        raise ValueError("stack_draws: no metrics stores given")
    where = dict(where or {})
    first_seed, first = next(iter(stores.items()))
    keep = [f"pack_{n}" for n in names] if names else \
        [v for v in first.data_vars if v.startswith("pack_")]
    parts, missing_splits = [], {}
    for seed, ds in stores.items():
        src = where.get(seed, f"generation seed {seed}")
        if ds.sizes.get("seed", 1) != 1:
            raise ValueError(f"{src}: expected one training seed (deterministic observers), "
                             f"found {ds.sizes['seed']}")
        a, b = first["variant"].values.tolist(), ds["variant"].values.tolist()
        if a != b:
            raise ValueError(f"{src}: variant {b} differs from {where.get(first_seed, first_seed)}"
                             f"'s {a}: evaluate every draw with the same config")
        splits = first["split"].values.tolist()
        extra = [x for x in ds["split"].values.tolist() if x not in splits]
        if extra:
            raise ValueError(f"{src}: split {ds['split'].values.tolist()} differs from "
                             f"{where.get(first_seed, first_seed)}'s {splits} (splits {extra} "
                             f"not there): evaluate every draw with the same config")
        lacking = [x for x in splits if x not in ds["split"].values.tolist()]
        if lacking:
            missing_splits[int(seed)] = lacking
        missing = [v for v in keep if v not in ds.data_vars]
        if missing:
            raise ValueError(f"{src}: metrics {missing} missing (expected in every draw)")
        one = ds[keep].reindex(split=splits)  # NaN where this draw lacks a split
        if "seed" in one.dims:
            one = one.isel(seed=0, drop=True)
        parts.append(one.expand_dims(seed=[int(seed)]))
    out = xr.concat(parts, dim="seed", combine_attrs="drop")
    for v in keep:
        out[v].attrs = dict(first[v].attrs)
    out.attrs = {"seed_meaning": "generation seed (cell-to-cell draw); spread = sample std over draws",
                 "sources": json.dumps({str(k): where.get(k, "") for k in stores}),
                 "missing_splits": json.dumps({str(k): v for k, v in missing_splits.items()})}
    return out


def draws_markdown(ds: xr.Dataset, names: Sequence[str] = HEADLINE, title: str = "") -> str:
    """Markdown: one splits x variants table per metric, mean ± sample std over the draws (n)."""
    seeds = ds["seed"].values.tolist()
    lines = [f"# {title}" if title else "# Over cell draws", "",
             f"- generation seeds (cell draws): {seeds}; each table cell: mean ± sample std "
             "(ddof = 1) over the draws, n = draws with a value"]
    missing = json.loads(ds.attrs.get("missing_splits", "{}"))
    lines += [f"- seed {k} has no {', '.join(v)}: that split's scenario failed to generate "
              f"(the store's status and message say why)" for k, v in missing.items()]
    lines.append("")
    for n in names:
        lines += [f"## {_label(n, ds)}", "", metric_table(ds, n), ""]
    return "\n".join(lines)


def draws_summary(ds: xr.Dataset, names: Sequence[str] = HEADLINE) -> dict:
    """JSON-ready: per metric, split and variant the mean, std, n and each draw's value."""
    out: dict = {"seeds": ds["seed"].values.tolist(),
                 "missing_splits": json.loads(ds.attrs.get("missing_splits", "{}")),
                 "metrics": {}}
    for n in names:
        da = ds[f"pack_{n}"]
        mean, std, cnt = seed_stats(da)
        rows: dict = {}
        for sp in ds["split"].values.tolist():
            for v in ds["variant"].values.tolist():
                sel = {"split": sp, "variant": v}
                vals = [float(x) for x in da.sel(sel).values]
                if not np.isfinite(vals).any():
                    continue
                rows.setdefault(str(sp), {})[str(v)] = {
                    "mean": float(mean.sel(sel)), "std": float(std.sel(sel)),
                    "n": int(cnt.sel(sel)), "values": vals}
        out["metrics"][n] = {"units": da.attrs.get("units", ""), "splits": rows}
    return out
