"""``StoreReader``: the opened stores, read slice by slice and cached.

Arrays stay lazy in the stores; each read loads just the slice a view needs (one cell's cycle, or
one scalar signal of every cell) and keeps it in a small LRU cache, so moving the time player or
switching views re-reads nothing. Every read names its whole selection (scenario, snapshot, cell,
variant): the reader holds no selection of its own.

The store may be measured-only (``packtwin ingest``): a read of the truth of a variable it lacks
returns None, as a twin's read of a variable it lacks does; grids it lacks (particle radii) come
from the twins' stores.

Units are converted here, once, at the app's boundary: the app shows temperatures in degC
(``DISPLAY_UNITS``) while the stores hold the cell temperature in K.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import xarray as xr

from packtwin import schema
from packtwin.app.sources import LIVE, Sources

TRUE, PRED = "true", "pred"
ZERO_C_IN_K = 273.15

# Variable -> (unit shown, conversion from the schema's unit); the rest show the schema's unit.
DISPLAY_UNITS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "temperature": ("°C", lambda k: k - ZERO_C_IN_K),
    "temperature_max": ("°C", lambda k: k - ZERO_C_IN_K),
    "ambient_temperature": ("°C", lambda c: c),
}


def display_unit(name: str) -> str:
    """The unit the app shows for a variable (the schema's unless converted at read time)."""
    return DISPLAY_UNITS[name][0] if name in DISPLAY_UNITS else schema.units(name)


def to_display(name: str, values: np.ndarray) -> np.ndarray:
    return DISPLAY_UNITS[name][1](values) if name in DISPLAY_UNITS else values


@dataclass(frozen=True)
class Electrode:
    var: str
    x: str
    r: str


ELECTRODES = {
    "negative": Electrode("c_s_n", schema.X_N, schema.R_N),
    "positive": Electrode("c_s_p", schema.X_P, schema.R_P),
}


class StoreReader:
    """Cached reads of the truth, the prediction stores and the (injected) live twin."""

    CACHE_SIZE = 96

    def __init__(self, sources: Sources):
        if sources.truth is None:
            raise ValueError("StoreReader needs an opened truth store; show sources.errors instead")
        self.sources = sources
        self.truth: xr.Dataset = sources.truth
        self._cache: OrderedDict = OrderedDict()
        self.cells = self.truth[schema.CELL].values.astype(int)
        self.cell_pos = {int(c): i for i, c in enumerate(self.cells)}
        # A measured log has no solver status: every scenario of it is data.
        self.status = (np.asarray(self.truth["status"].values, dtype=float)
                       if "status" in self.truth.variables
                       else np.full(self.truth.sizes[schema.SCENARIO], schema.STATUS_OK))

    @property
    def measured(self) -> bool:
        return self.sources.measured

    def has_truth(self, name: str) -> bool:
        return name in self.truth.data_vars

    def coord(self, name: str) -> np.ndarray:
        """A coordinate of the store, else of the first twin holding it (empty if none does)."""
        for ds in (self.truth, *self.sources.predictions.values()):
            if name in ds.coords:
                return np.asarray(ds[name].values)
        return np.array([])

    def band_factor(self, variant: str | None) -> float | None:
        """k of a twin's band (mean +- k std), None when it has none."""
        return self.sources.bands.get(variant) if variant is not None else None

    # ------------------------------------------------------------------ small, store-wide facts
    def cell_label(self, cell: int) -> str:
        i = self.cell_pos[cell]
        s = int(self.truth["series_index"].values[i])
        p = int(self.truth["parallel_index"].values[i])
        return f"cell {cell} (S{s + 1} P{p + 1})"

    def cell_position(self, cell: int) -> tuple[int, int]:
        i = self.cell_pos[cell]
        return int(self.truth["series_index"].values[i]), int(self.truth["parallel_index"].values[i])

    def snapshot_cycle(self, snapshot: int) -> int:
        return int(self.truth["snapshot_cycle"].sel({schema.SNAPSHOT: snapshot}).values)

    def c_max(self, var: str) -> float | None:
        for ds in (self.truth, *self.sources.predictions.values()):
            if var in ds.data_vars and ds[var].attrs.get("c_max") is not None:
                return float(ds[var].attrs["c_max"])
        return None

    def reason(self, scenario: int) -> str:
        from packtwin.data.store import json_attr

        msgs = json_attr(self.truth, "messages", {}) or {}
        msg = msgs.get(str(scenario)) if isinstance(msgs, dict) else None
        return f": {msg}" if msg else ""

    # ------------------------------------------------------------------ cache
    def _cached(self, key: tuple, fn: Callable):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        val = fn()
        self._cache[key] = val
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return val

    # ------------------------------------------------------------------ predictions
    def prediction(self, variant: str | None, scenario: int) -> tuple[xr.Dataset | None, str]:
        """A twin's dataset for a scenario, or None and why not."""
        if variant is None:
            return None, "No predictions loaded."
        if variant == LIVE:
            try:
                ds = self.sources.live.scenario(scenario)
            except Exception as exc:  # a model failure shows in the page, the truth stays usable
                return None, f"Live twin failed on scenario {scenario}: {exc}"
        else:
            ds = self.sources.predictions[variant]
        if scenario not in ds[schema.SCENARIO].values:
            return None, f"The {variant} twin has no prediction for scenario {scenario}."
        return ds, ""

    def _dataset(self, source: str, variant: str | None, scenario: int, snapshot: int,
                 name: str, cell: int | None = None) -> xr.Dataset | None:
        """The dataset to read ``name`` from, None where it lacks the selection."""
        if source == TRUE:
            return self.truth if name in self.truth.data_vars else None
        ds, _ = self.prediction(variant, scenario)
        if (ds is None or name not in ds.data_vars or schema.SNAPSHOT not in ds[name].dims
                or snapshot not in ds[schema.SNAPSHOT].values):
            return None
        if cell is not None and cell not in ds[schema.CELL].values:
            return None
        return ds

    # ------------------------------------------------------------------ cycle slices
    def valid_mask(self, scenario: int, snapshot: int) -> np.ndarray:
        return self._cached(("valid", scenario, snapshot), lambda: np.asarray(
            self.truth["valid"].sel({schema.SCENARIO: scenario, schema.SNAPSHOT: snapshot}).values,
            bool))

    def times(self, scenario: int, snapshot: int) -> np.ndarray:
        """Valid sample times of a cycle [s]."""
        return self.truth[schema.TIME].values[self.valid_mask(scenario, snapshot)]

    def pack_signal(self, name: str, source: str, variant: str | None, scenario: int,
                    snapshot: int) -> np.ndarray | None:
        """A signal of every cell over the valid part of a cycle, shape (cell, valid time, ...);
        NaN for cells a prediction lacks, None if the source lacks the signal."""
        key = ("pack", name, source, variant if source == PRED else None, scenario, snapshot)

        def load():
            ds = self._dataset(source, variant, scenario, snapshot, name)
            if ds is None:
                return None
            da = ds[name].sel({schema.SCENARIO: scenario, schema.SNAPSHOT: snapshot})
            da = da.reindex({schema.CELL: self.cells})
            vals = np.asarray(da.transpose(schema.CELL, schema.TIME, ...).values)
            return to_display(name, vals[:, self.valid_mask(scenario, snapshot)])

        return self._cached(key, load)

    def cell_signal(self, name: str, source: str, variant: str | None, scenario: int,
                    snapshot: int, cell: int) -> np.ndarray | None:
        """One cell's signal over the valid part of a cycle (None: not available)."""
        ds = self._dataset(source, variant, scenario, snapshot, name, cell)
        if ds is None:
            return None
        if ds[name].ndim == 4:
            # A scalar signal: one read of every cell serves all later cell changes.
            return self.pack_signal(name, source, variant, scenario, snapshot)[self.cell_pos[cell]]
        key = (name, source, variant if source == PRED else None, scenario, cell, snapshot)

        def load():
            ds = self._dataset(source, variant, scenario, snapshot, name, cell)
            da = ds[name].sel({schema.SCENARIO: scenario, schema.CELL: cell,
                               schema.SNAPSHOT: snapshot})
            return to_display(name, np.asarray(da.values)[self.valid_mask(scenario, snapshot)])

        return self._cached(key, load)

    # ------------------------------------------------------------------ over cycles
    def spread(self, name: str, variant: str | None, scenario: int, snapshot: int
               ) -> np.ndarray | None:
        """Band half-width ``k * <name>_std`` of a twin's estimate of every cell, shape (cell,
        valid time, ...); None if the twin has no band for ``name``."""
        k = self.band_factor(variant)
        if k is None:
            return None
        std = self.pack_signal(schema.std_var(name), PRED, variant, scenario, snapshot)
        return None if std is None else k * std

    def at_cycle(self, name: str, source: str, variant: str | None, scenario: int, cycle: int
                 ) -> np.ndarray | None:
        """A per-cycle summary (scenario, cell, cycle) of every cell at one cycle, None where the
        source lacks the variable or the cycle."""
        series = self.cycle_series(name, source, variant, scenario)
        if series is None or cycle not in series[0]:
            return None
        return series[1][:, int(np.flatnonzero(series[0] == cycle)[0])]

    def cycle_series(self, name: str, source: str, variant: str | None, scenario: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
        """(cycles, a per-cycle summary of every cell, (cell, cycle)) of a scenario from the
        truth or a twin (life estimates such as ``sei_thickness_est``); None where it lacks it."""
        ds = self.truth if source == TRUE else self.prediction(variant, scenario)[0]
        if (ds is None or name not in ds.data_vars or schema.CYCLE not in ds[name].dims
                or scenario not in ds[schema.SCENARIO].values):
            return None

        def load():
            da = ds[name].sel({schema.SCENARIO: scenario}).reindex({schema.CELL: self.cells})
            return (ds[schema.CYCLE].values.astype(int),
                    np.asarray(da.transpose(schema.CELL, schema.CYCLE).values, float))

        return self._cached(("cycles", name, source, variant if source == PRED else None,
                             scenario), load)

    def sei_end(self, scenario: int) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, SEI thickness at cycle end per cell and cycle) of a scenario."""
        return self.cycle_series("sei_thickness_end", TRUE, None, scenario)

    def sei_snapshots(self, source: str, variant: str | None, scenario: int) -> np.ndarray | None:
        """x-averaged SEI thickness of every cell over every snapshot, (cell, snapshot, time)."""
        ds = self.truth if source == TRUE else self.prediction(variant, scenario)[0]
        if ds is None or "sei_thickness_avg" not in ds.data_vars:
            return None

        def load():
            # One read of (cell, snapshot, time) for the scenario serves every cell.
            da = ds["sei_thickness_avg"].sel({schema.SCENARIO: scenario}).reindex(
                {schema.CELL: self.cells, schema.SNAPSHOT: self.truth[schema.SNAPSHOT].values})
            return np.asarray(da.transpose(schema.CELL, schema.SNAPSHOT, schema.TIME).values, float)

        return self._cached(("sei_snap", source, variant if source == PRED else None, scenario),
                            load)

    def has_cell(self, source: str, variant: str | None, scenario: int, cell: int) -> bool:
        ds = self.truth if source == TRUE else self.prediction(variant, scenario)[0]
        return ds is not None and cell in ds[schema.CELL].values

    # ------------------------------------------------------------------ per-cell parameters
    def param_values(self, name: str, ds: xr.Dataset, tag) -> dict[int, float]:
        """A per-cell parameter of one dataset as {cell: value}, read once (tiny)."""
        def load():
            if name not in ds.data_vars:
                return {}
            return dict(zip(ds[schema.CELL].values.astype(int).tolist(),
                            np.asarray(ds[name].values, float).tolist()))

        return self._cached(("param", tag, name), load)

    def twins_for_params(self, variant: str | None, scenario: int) -> dict[str, tuple]:
        """Every twin whose parameters the table shows: {name: (dataset, cache tag)}."""
        twins = {v: (ds, v) for v, ds in self.sources.predictions.items()}
        if variant == LIVE:
            live, _ = self.prediction(LIVE, scenario)
            if live is not None:
                twins[LIVE] = (live, (LIVE, scenario))
        return twins
