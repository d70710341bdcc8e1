"""Compare two ``packtwin evaluate`` metrics stores: max relative difference per variant.

    python scripts/compare_metrics.py reports/a/metrics.zarr reports/b/metrics.zarr

Used to check that a refactoring keeps the tiny experiment's figures (same seeds, same config).
Exit status 1 when the variables, the NaN pattern or (with --rtol) the values differ.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import xarray as xr


def compare(a: xr.Dataset, b: xr.Dataset) -> dict:
    out = {"same_variables": set(a.data_vars) == set(b.data_vars), "same_nan_pattern": True,
           "max_rel_diff": {}}
    for v in a["variant"].values:
        worst = 0.0
        for n in set(a.data_vars) & set(b.data_vars):
            x = np.asarray(a[n].sel(variant=v).values, float)
            y = np.asarray(b[n].sel(variant=v).values, float)
            if not (np.isfinite(x) == np.isfinite(y)).all():
                out["same_nan_pattern"] = False
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                rel = np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-12)
                worst = max(worst, float(rel.max()))
        out["max_rel_diff"][str(v)] = worst
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=None, help="fail above this relative difference")
    args = p.parse_args(argv)
    res = compare(xr.open_zarr(args.a, consolidated=False).load(),
                  xr.open_zarr(args.b, consolidated=False).load())
    print(json.dumps(res, indent=2))
    bad = not (res["same_variables"] and res["same_nan_pattern"])
    if args.rtol is not None:
        bad |= max(res["max_rel_diff"].values()) > args.rtol
    return int(bad)


if __name__ == "__main__":
    sys.exit(main())
