"""Samples by dimension name: one (scenario, cell, snapshot) sequence, its inputs and targets.

Inputs are measured signals only (``schema.MEASURED``) plus features a real battery-management
system can compute causally from them (charge passed since the start of the cycle, ambient
temperature, time). Hidden variables appear only as targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from packtwin import quantities, schema
from packtwin.data.splits import Selection
from packtwin.errors import PacktwinError

SEQ_DIMS = (schema.SCENARIO, schema.CELL, schema.SNAPSHOT)


class DataError(PacktwinError, ValueError):
    """The data cannot be used as given (NaN inputs, missing variables); names what and where."""


@dataclass
class Sequences:
    """Arrays of N sequences (N = scenarios x cells x snapshots, in that order), numpy float32.

    ``features``: [N, T, F] raw (unnormalised) inputs, 0 in the padding; ``valid``: [N, T];
    ``targets``: name -> [N, T, ...] (NaN-free, 0 in the padding); index arrays give each
    sequence's positional scenario/cell/snapshot in the store.
    """

    features: np.ndarray
    valid: np.ndarray
    scenario: np.ndarray
    cell: np.ndarray
    snapshot: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.features.shape[0]


def _stack(da, sel: Selection) -> np.ndarray:
    """[n_sc, n_cell, n_snap, T, ...] -> [N, T, ...] by dimension name."""
    sub = da.isel({schema.SCENARIO: sel.scenarios, schema.CELL: sel.cells,
                   schema.SNAPSHOT: sel.snapshots})
    extra = [d for d in sub.dims if d not in SEQ_DIMS]
    arr = np.asarray(sub.transpose(*SEQ_DIMS, *extra).values)
    return arr.reshape((-1,) + arr.shape[3:])


def _broadcast(da, sel: Selection) -> np.ndarray:
    """A variable lacking some of scenario/cell/snapshot, broadcast to [N, ...]."""
    idx = {schema.SCENARIO: sel.scenarios, schema.CELL: sel.cells, schema.SNAPSHOT: sel.snapshots}
    sub = da.isel({d: idx[d] for d in SEQ_DIMS if d in da.dims})
    sub = sub.expand_dims({d: len(idx[d]) for d in SEQ_DIMS if d not in sub.dims})
    extra = [d for d in sub.dims if d not in SEQ_DIMS]
    arr = np.asarray(sub.transpose(*SEQ_DIMS, *extra).values)
    return arr.reshape((-1,) + arr.shape[3:])


def charge_passed(current: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Charge passed since the first sample [C] along the last axis (NaN padding stays NaN).

    The stores' convention (``attrs["current_convention"]``): current[k] is the mean current
    of the period that *ends* at sample k, so Q(t_k) = sum_{j=1..k} I_j (t_j - t_{j-1}): exact and
    causal; a left sum would lag one step (3 % of c_max at 2C with 60 s samples).
    """
    inc = current[..., 1:] * np.diff(time)
    return np.concatenate([np.zeros(current.shape[:-1] + (1,)), np.cumsum(inc, axis=-1)], -1)


def measured_features(ds, sel: Selection, source: str = "store") -> tuple[np.ndarray, np.ndarray]:
    """Raw input features [N, T, F] (order ``quantities.FEATURES``, 0 in the
    padding) and valid mask [N, T].

    Raises DataError when a measured input is NaN inside the valid part of a cycle.
    """
    for name in schema.MEASURED + ("valid",):
        if name not in ds.variables:
            raise DataError(f"{source}: measured variable {name!r} is missing")
    valid = _broadcast(ds["valid"], sel).astype(bool)
    n, n_t = valid.shape
    time = np.asarray(ds[schema.TIME].values, dtype=np.float64)
    measured = {}
    for name in schema.MEASURED:
        arr = _stack(ds[name], sel).astype(np.float64)
        bad = valid & ~np.isfinite(arr)
        if bad.any():
            k = int(np.argwhere(bad)[0][0])
            t_idx = int(np.argwhere(bad[k])[0][0])
            where = (f"scenario {int(sel.scenarios[k // (len(sel.cells) * len(sel.snapshots))])}, "
                     f"cell {int(sel.cells[(k // len(sel.snapshots)) % len(sel.cells)])}, "
                     f"snapshot {int(sel.snapshots[k % len(sel.snapshots)])}, time index {t_idx}")
            raise DataError(f"{source}: input {name!r} has {int(bad.sum())} NaN/inf values inside "
                            f"valid samples (first at {where}); measured inputs must be finite")
        lo, hi = schema.VARIABLES[name].bounds
        inside = arr[valid]
        if inside.size and ((lo is not None and inside.min() < lo) or
                            (hi is not None and inside.max() > hi)):
            u = schema.VARIABLES[name].units
            raise DataError(f"{source}: input {name!r} spans [{inside.min():.6g}, "
                            f"{inside.max():.6g}] {u}, outside its physical range [{lo}, {hi}] "
                            f"{u} (packtwin.schema): wrong units or a scaled signal?")
        measured[name] = np.where(valid, arr, 0.0)
    amb = _broadcast(ds["ambient_temperature"], sel).astype(np.float64) + 273.15
    cycle = _broadcast(ds["snapshot_cycle"], sel).astype(np.float64)
    f = quantities.Features(
        voltage=measured["voltage"], current=measured["current"],
        temperature=measured["temperature"],
        ambient_temperature=np.repeat(amb.reshape(n, 1), n_t, axis=1),
        time=np.broadcast_to(time[None, :], (n, n_t)),
        charge_passed=charge_passed(measured["current"], time),
        cycle=np.repeat(cycle.reshape(n, 1), n_t, axis=1))
    feats = f.pack(lambda cols, axis: np.stack([np.where(valid, c, 0.0) for c in cols], axis))
    return feats.astype(np.float32), valid


def load_sequences(ds, sel: Selection, with_targets: bool = True,
                   source: str = "store") -> Sequences:
    """Load the selected sequences into memory (one read per variable)."""
    feats, valid = measured_features(ds, sel, source)
    n_sc, n_c, n_s = len(sel.scenarios), len(sel.cells), len(sel.snapshots)
    grid = np.meshgrid(sel.scenarios, sel.cells, sel.snapshots, indexing="ij")
    seq = Sequences(feats, valid, grid[0].reshape(-1), grid[1].reshape(-1), grid[2].reshape(-1))
    assert len(seq.scenario) == n_sc * n_c * n_s
    if with_targets:
        for name in quantities.FIELD_TARGETS + quantities.SCALAR_TARGETS:
            if name not in ds.variables:
                raise DataError(f"{source}: target variable {name!r} is missing")
            arr = _stack(ds[name], sel)
            m = valid.reshape(valid.shape + (1,) * (arr.ndim - 2))
            bad = np.broadcast_to(m, arr.shape) & ~np.isfinite(arr)
            if bad.any():
                raise DataError(f"{source}: target {name!r} has {int(bad.sum())} NaN values "
                                f"inside valid samples")
            seq.targets[name] = np.where(m, arr, 0.0).astype(np.float32)
    return seq


class SequenceDataset(torch.utils.data.Dataset):
    """Items are whole sequences, or windows of ``window`` steps every ``stride`` steps.

    A window keeps the raw ``charge_passed`` feature counted from the cycle start, so it still
    carries the measured history before the window.
    """

    def __init__(self, seq: Sequences, window: int | None = None, stride: int | None = None):
        self.seq = seq
        n_t = seq.features.shape[1]
        # Sequences without a valid sample (a scenario that stopped before this snapshot) hold
        # nothing to learn or score: they are left out of batches (predict keeps them, as NaN).
        keep = [i for i in range(len(seq)) if seq.valid[i].any()]
        if window is None or window >= n_t:
            self.index = [(i, 0, n_t) for i in keep]
        else:
            stride = stride or window
            self.index = []
            for i in keep:
                last = int(np.flatnonzero(seq.valid[i]).max(initial=0)) + 1
                for s in range(0, max(1, last - window + 1), stride):
                    self.index.append((i, s, s + window))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, a, b = self.index[k]
        s = self.seq
        item = {"features": torch.from_numpy(s.features[i, a:b]),
                "valid": torch.from_numpy(s.valid[i, a:b].astype(np.float32)),
                "scenario": torch.tensor(int(s.scenario[i])),
                "cell": torch.tensor(int(s.cell[i])),
                "snapshot": torch.tensor(int(s.snapshot[i])),
                "seq_index": torch.tensor(i), "start": torch.tensor(a)}
        for name, arr in s.targets.items():
            item[name] = torch.from_numpy(arr[i, a:b])
        return item
