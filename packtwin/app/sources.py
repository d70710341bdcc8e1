"""Open what the app shows: a store, prediction or estimate stores and optionally a live twin.

The store is either a simulated truth store (``packtwin generate``) or a measured-only store
(``packtwin ingest``: V/I/T, no hidden variables, no parameter table); estimate stores
(``packtwin estimate``) are compared like prediction stores and carry ``<name>_std`` bands.

Every failure becomes a message (naming the file and the problem) that the page shows instead of
a blank page or a server traceback: a bad truth store is fatal for the page, a bad prediction store
or checkpoint only removes the comparison.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import xarray as xr

from packtwin import quantities, schema
from packtwin.data import store as store_io

VARIANTS = ("physics", "data_only")
LIVE = "live"
# Prediction variables a heatmap/overlay can use; a prediction store may hold a subset.
PREDICTED = quantities.ESTIMATED  # what a prediction store holds (truth's names)
# Per-cycle estimates of the twin over life (``sei_thickness_est``, ...): a store may hold only these.
LIFE_ESTIMATED = tuple(n for n, v in schema.LIFE_VARIABLES.items() if v.kind == "estimate")
# Grid coordinates a prediction must share with the truth to be compared sample by sample.
SHARED_GRID = (schema.X_N, schema.X_P, schema.R_N, schema.R_P, schema.TIME)


@dataclass
class Sources:
    """The opened datasets (lazy) and the messages the page shows about them."""

    truth: xr.Dataset | None = None
    predictions: dict[str, xr.Dataset] = field(default_factory=dict)
    live: "LiveTwin | None" = None
    bands: dict[str, float] = field(default_factory=dict)  # variant -> band factor k (mean +- k std)
    errors: list[str] = field(default_factory=list)  # fatal: the page shows only these
    warnings: list[str] = field(default_factory=list)  # the page works without the part named

    @property
    def measured(self) -> bool:
        """A measured-only store: no truth for any hidden variable."""
        return self.truth is not None and self.truth.attrs.get("store_kind") == "measured"

    @property
    def variants(self) -> list[str]:
        names = list(self.predictions)
        if self.live is not None:
            names.append(LIVE)
        return names


def _describe(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__


def open_truth(path: str | os.PathLike | None) -> tuple[xr.Dataset | None, str | None]:
    """The truth or measured store (lazy), or None and a message saying why it cannot be shown."""
    if path is None:
        return None, ("No store given: start the app with --store PATH (a store made by packtwin "
                      "generate or packtwin ingest).")
    try:
        ds = store_io.open_store(path, check=False)
        kind = "measured" if ds.attrs.get("store_kind") == "measured" else "truth"
        problems = schema.validate(ds, kind=kind)
        if problems:
            raise schema.SchemaError(problems, source=f"{kind} store {str(path)!r}")
    except (schema.SchemaError, store_io.StoreError) as exc:
        return None, f"Cannot show store {str(path)!r}: {_describe(exc)}"
    # Coordinates over scenario/cell are tiny and read on every interaction: load them once.
    small = [n for n, v in ds.coords.items() if v.ndim == 1]
    ds = ds.assign_coords({n: ds[n].load() for n in small})
    return ds, None


def check_prediction(pred: xr.Dataset, truth: xr.Dataset, source: str,
                     kind: str = "prediction") -> list[str]:
    """Ways a prediction (or estimate) dataset cannot be compared with ``truth`` (empty =
    comparable); grids a measured store lacks (particle radii) are the estimate's own."""
    problems = list(schema.validate(pred, kind=kind))
    if not any(v in pred.data_vars for v in PREDICTED + LIFE_ESTIMATED):
        problems.append(f"none of the predicted variables {PREDICTED} or per-cycle estimates "
                        f"{LIFE_ESTIMATED} is present")
    for dim in (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.CYCLE):
        if dim in pred.dims and dim in truth.dims:
            extra = np.setdiff1d(pred[dim].values, truth[dim].values)
            if extra.size:
                problems.append(f"{dim} values {extra.tolist()} are not in the truth store")
    for dim in SHARED_GRID:
        if dim in pred.dims and dim in truth.dims and (pred.sizes[dim] != truth.sizes[dim] or
                                 not np.allclose(pred[dim].values, truth[dim].values)):
            problems.append(f"coordinate {dim!r} differs from the truth store's "
                            f"({pred.sizes[dim]} vs {truth.sizes[dim]} points)")
    return [f"{source}: {p}" for p in problems]


def band_factor(ds: xr.Dataset) -> float | None:
    """k of an estimate store's band (mean +- k * <name>_std), None if it has no band."""
    band = store_io.json_attr(ds, "uncertainty", {}) or {}
    k = band.get("k") if isinstance(band, dict) else None
    return float(k) if k is not None and np.isfinite(float(k)) else None


def is_estimate_store(path: str | os.PathLike) -> bool:
    """Whether a store was written by ``packtwin estimate`` (its attrs), whichever option names it."""
    try:
        ds = store_io.open_store(path, check=False)
    except store_io.StoreError:
        return False  # opening it as a prediction store reports the problem
    return all(a in ds.attrs for a in schema.ESTIMATE_ATTRS)


def open_predictions(paths: Sequence[str | os.PathLike], truth: xr.Dataset,
                     kind: str = "prediction", taken: Sequence[str] = ()
                     ) -> tuple[dict[str, xr.Dataset], list[str]]:
    """Prediction stores keyed by their variant ("physics", "data_only"; else the file name);
    with ``kind="estimate"`` estimate stores, keyed "estimate" (then "estimate (file name)")."""
    out: dict[str, xr.Dataset] = {}
    warnings: list[str] = []
    what = "Estimates" if kind == "estimate" else "Predictions"
    for path in paths:
        try:
            ds = store_io.open_store(path, kind=kind)
        except (schema.SchemaError, store_io.StoreError) as exc:
            warnings.append(f"{what} not shown: {_describe(exc)}")
            continue
        problems = check_prediction(ds, truth, f"store {str(path)!r}", kind=kind)
        if problems:
            warnings.append(f"{what} not shown: " + "; ".join(problems))
            continue
        name = "estimate" if kind == "estimate" else str(ds.attrs.get("variant") or Path(path).stem)
        if name in out or name in taken:
            name = f"{name} ({Path(path).stem})"
        out[name] = ds
    return out, warnings


class LiveTwin:
    """Runs a trained twin on the selected scenario, on demand, and keeps the results.

    The twin is injected: ``load(checkpoint) -> module`` and ``predict(module, truth, scenarios=,
    cells=) -> Dataset`` come from the caller (``packtwin.app.serve.twin_functions`` gives the
    project's), so nothing in the app imports the model code.
    """

    def __init__(self, checkpoint: str | os.PathLike, truth: xr.Dataset,
                 load: Callable | None = None, predict: Callable | None = None):
        self.checkpoint = str(checkpoint)
        self.truth = truth
        if not Path(self.checkpoint).exists():
            raise FileNotFoundError(f"checkpoint {self.checkpoint!r} does not exist")
        if load is None or predict is None:
            raise ValueError("no twin to run: pass live_load and live_predict "
                             "(packtwin.app.serve.twin_functions() gives the project's)")
        self._predict = predict
        self.module = load(self.checkpoint)
        if hasattr(self.module, "eval"):
            self.module.eval()
        self._cache: dict[int, xr.Dataset] = {}

    def scenario(self, scenario: int) -> xr.Dataset:
        """Predictions for every cell of one scenario (computed once, then cached)."""
        if scenario not in self._cache:
            # predict_dataset takes positions; the app selects by the scenario coordinate.
            pos = int(np.flatnonzero(self.truth[schema.SCENARIO].values == scenario)[0])
            ds = self._predict(self.module, self.truth, scenarios=[pos], cells=None)
            problems = check_prediction(ds, self.truth, f"live twin {self.checkpoint!r}")
            if problems:
                raise schema.SchemaError(problems, source=f"live twin {self.checkpoint!r}")
            self._cache[scenario] = ds
        return self._cache[scenario]


def open_sources(store: str | os.PathLike | None, predictions: Sequence[str | os.PathLike] = (),
                 checkpoint: str | os.PathLike | None = None, *, live_load: Callable | None = None,
                 live_predict: Callable | None = None,
                 estimates: Sequence[str | os.PathLike] = ()) -> Sources:
    """Open everything the page shows; never raises for bad inputs (see ``Sources.errors``)."""
    truth, error = open_truth(store)
    if truth is None:
        return Sources(errors=[error])
    # An estimate store given with --predictions is opened as what it is (with its band).
    estimates = [*estimates, *(p for p in predictions if is_estimate_store(p))]
    predictions = [p for p in predictions if p not in estimates]
    preds, warnings = open_predictions(predictions, truth)
    ests, more = open_predictions(estimates, truth, kind="estimate", taken=list(preds))
    warnings += more
    bands = {name: k for name, ds in ests.items() if (k := band_factor(ds)) is not None}
    for name, ds in ests.items():
        if name not in bands:
            warnings.append(f"The {name} store has no band (one checkpoint, no <name>_std): its "
                            f"estimates are shown without uncertainty.")
    preds.update(ests)
    live = None
    if checkpoint is not None:
        try:
            live = LiveTwin(checkpoint, truth, load=live_load, predict=live_predict)
        except Exception as exc:  # any failure to load a model must not take the page down
            warnings.append(f"Live twin unavailable ({str(checkpoint)!r}): {_describe(exc)}")
    return Sources(truth=truth, predictions=preds, live=live, warnings=warnings, bands=bands)
