"""Train/val/test selections as small config dicts of scenario-coordinate filters and cells.

A selection is a mapping such as::

    {"ambient_temperature": {"min": 0, "max": 30}, "discharge_c_rate": {"max": 1.0},
     "protocol": ["cccv"], "cells": [0, 1, 2], "snapshots": [0]}

Keys are scenario coordinates of the schema (``ambient_temperature``, ``charge_c_rate``,
``discharge_c_rate``, ``protocol``), the scenario index itself (``scenario``), ``cells`` and
``snapshots``. A value is a list of allowed values or a ``{"min": .., "max": ..}`` range (both
ends inclusive). Protocols may be given by name (``"cccv"``) or integer code. Only scenarios
whose ``status`` is OK or partial are ever selected: failed/unsolved scenarios hold no data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from packtwin import schema
from packtwin.errors import PacktwinError

SCENARIO_KEYS = ("ambient_temperature", "charge_c_rate", "discharge_c_rate", "protocol",
                 schema.SCENARIO)
OTHER_KEYS = ("cells", "snapshots")
RANGE_KEYS = ("min", "max")
# Float coordinates are compared with a tolerance so that "25" selects 25.000000001 degC.
_ATOL = 1e-6


class SelectionError(PacktwinError, ValueError):
    """A selection is malformed or selects nothing; the message names the key and the values."""


@dataclass(frozen=True)
class Selection:
    """Positional indices (not labels) into the store's scenario, cell and snapshot dims."""

    scenarios: np.ndarray
    cells: np.ndarray
    snapshots: np.ndarray

    def __len__(self) -> int:
        return len(self.scenarios) * len(self.cells) * len(self.snapshots)


def _mask(values: np.ndarray, spec: Any, key: str) -> np.ndarray:
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(RANGE_KEYS)
        if unknown:
            raise SelectionError(f"selection key {key!r}: unknown range keys {sorted(unknown)}; "
                                 f"use {list(RANGE_KEYS)}")
        m = np.ones(values.shape, bool)
        if spec.get("min") is not None:
            m &= values >= float(spec["min"]) - _ATOL
        if spec.get("max") is not None:
            m &= values <= float(spec["max"]) + _ATOL
        return m
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    if key == "protocol":
        codes = []
        for it in items:
            if isinstance(it, str):
                if it not in schema.PROTOCOLS:
                    raise SelectionError(f"selection key 'protocol': unknown protocol {it!r}; "
                                         f"known: {list(schema.PROTOCOLS)}")
                codes.append(schema.PROTOCOLS.index(it))
            else:
                codes.append(int(it))
        items = codes
    m = np.zeros(values.shape, bool)
    for it in items:
        m |= np.isclose(values.astype(float), float(it), atol=_ATOL, rtol=0)
    return m


def select(ds, selection: Mapping[str, Any] | None, name: str = "selection") -> Selection:
    """Indices of the scenarios, cells and snapshots of ``ds`` that ``selection`` picks.

    ``None`` or ``{}`` selects every usable scenario, every cell and every snapshot.
    Raises SelectionError for unknown keys or an empty result (naming ``name``).
    """
    selection = dict(selection or {})
    unknown = set(selection) - set(SCENARIO_KEYS) - set(OTHER_KEYS)
    if unknown:
        raise SelectionError(f"{name}: unknown keys {sorted(unknown)}; known: "
                             f"{sorted(SCENARIO_KEYS + OTHER_KEYS)}")
    n_sc = ds.sizes[schema.SCENARIO]
    keep = np.ones(n_sc, bool)
    if "status" in ds.variables:
        status = np.asarray(ds["status"].values, float)
        keep &= np.isin(status, [schema.STATUS_OK, schema.STATUS_PARTIAL])
        if not keep.any():
            raise SelectionError(f"{name}: no scenario has status OK or partial "
                                 f"(status values: {sorted(set(status.tolist()))})")
    for key in SCENARIO_KEYS:
        if key in selection and selection[key] is not None:
            values = np.asarray(ds[key].values)
            keep &= _mask(values, selection[key], key)
    scenarios = np.flatnonzero(keep)
    cells = _index_list(selection.get("cells"), schema.n_cells(ds), "cells", name)
    # A per-cycle life selection may be made on the summaries alone (no snapshot dim): none.
    snapshots = _index_list(selection.get("snapshots"), ds.sizes.get(schema.SNAPSHOT, 0),
                            "snapshots", name)
    if scenarios.size == 0:
        desc = {k: ds[k].values.tolist() for k in SCENARIO_KEYS[:-1] if k in ds.coords}
        raise SelectionError(f"{name} {selection} selects no usable scenario; the store has "
                             f"{desc} with status {ds['status'].values.tolist()}"
                             if "status" in ds.variables else
                             f"{name} {selection} selects no scenario; the store has {desc}")
    return Selection(scenarios, cells, snapshots)


def _index_list(spec, n: int, key: str, name: str) -> np.ndarray:
    if spec is None:
        return np.arange(n)
    if isinstance(spec, Mapping):
        idx = np.flatnonzero(_mask(np.arange(n), spec, key))
        if idx.size == 0:
            raise SelectionError(f"{name}: {key} {dict(spec)} selects nothing; the store has {n}")
        return idx
    idx = np.asarray(spec if isinstance(spec, (list, tuple)) else [spec], dtype=int)
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise SelectionError(f"{name}: {key} {bad.tolist()} out of range; the store has {n}")
    if idx.size == 0:
        raise SelectionError(f"{name}: {key} is empty")
    return idx
