"""LightningDataModule over a packtwin truth store: selections by config, lazy open in setup()."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from packtwin import quantities, schema
from packtwin.data import splits, store, windows

Selection = dict[str, Any]


def store_info(ds, source: str = "store") -> dict:
    """What the model needs to know about a store's shape and scales (JSON-friendly)."""
    info: dict[str, Any] = {
        "schema_version": str(ds.attrs.get("schema_version")),
        "n_cells": schema.n_cells(ds),
        "period_s": float(ds.attrs.get("period_s", float("nan"))),
        "nominal_capacity_ah": float(ds.attrs.get("nominal_capacity_ah", float("nan"))),
        "param_keys": schema.param_keys_in(ds),
    }
    for dim in (d for e in quantities.ELECTRODES for d in (e.x_dim, e.r_dim)):
        info[dim] = [float(v) for v in np.asarray(ds[dim].values)]
    for e in quantities.ELECTRODES:
        c_max = e.c_max_of(ds)
        if c_max is None:
            raise store.StoreError(f"{source}: variable {e.variable!r} lacks the attribute "
                                   f"'c_max' (maximum concentration [mol/m3]) the twin "
                                   f"normalises by")
        info[e.c_max_info] = c_max
    return info


def _stats(x: np.ndarray, mask: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean/std over the valid entries of x [N, T, ...] (std floored so constants pass through)."""
    m = mask.reshape(mask.shape + (1,) * (x.ndim - 2)).astype(bool)
    m = np.broadcast_to(m, x.shape)
    axes = tuple(range(2))
    cnt = np.maximum(m.sum(axis=axes), 1)
    mean = np.where(m, x, 0).sum(axis=axes) / cnt
    var = np.where(m, (x - mean) ** 2, 0).sum(axis=axes) / cnt
    std = np.sqrt(var)
    std = np.where(std < 1e-6 * np.maximum(np.abs(mean), 1.0), np.maximum(np.abs(mean), 1.0), std)
    return np.atleast_1d(mean).astype(float).tolist(), np.atleast_1d(std).astype(float).tolist()


def param_transform(values: np.ndarray) -> str:
    """Positive parameters are learned as log10 (they span decades); others linearly."""
    return "log10" if np.all(np.asarray(values) > 0) else "linear"


class TwinDataModule(pl.LightningDataModule):
    """Samples are (scenario, cell, snapshot) sequences of one truth store.

    Args:
        store: path of the truth Zarr store (``packtwin generate``).
        train: selection of the training sequences (see ``packtwin.data.splits``).
        val: validation selection (defaults to the training selection).
        test: test selection (defaults to the validation selection).
        predict: selection to estimate (defaults to everything usable).
        batch_size: sequences per batch.
        window: train on windows of this many time steps (None: whole cycles).
        stride: step between training windows (defaults to ``window``).
        num_workers: DataLoader workers (0 keeps everything in the main process: the data sit in
            memory already, workers only add start-up cost on small machines).
    """

    def __init__(self, store: str, train: Selection | None = None, val: Selection | None = None,
                 test: Selection | None = None, predict: Selection | None = None,
                 batch_size: int = 8, window: int | None = None, stride: int | None = None,
                 num_workers: int = 0):
        super().__init__()
        self.store_path = str(store)
        self.selections = {"train": train or {}, "val": val if val is not None else train or {},
                           "test": test if test is not None else (val if val is not None else
                                                                  train or {}),
                           "predict": predict or {}}
        self.batch_size = int(batch_size)
        self.window, self.stride = window, stride
        self.num_workers = int(num_workers)
        self._ds = None
        self._info: dict | None = None
        self.sequences: dict[str, windows.Sequences] = {}
        self.stats: dict | None = None

    # ---- store facts, available before setup() for argument linking ----------------------------
    @property
    def ds(self):
        if self._ds is None:
            self._ds = store.open_store(self.store_path, kind="truth")
        return self._ds

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = store_info(self.ds, f"store {self.store_path!r}")
        return self._info

    @property
    def n_cells(self) -> int:
        return self.info["n_cells"]

    def selection(self, stage: str) -> splits.Selection:
        return splits.select(self.ds, self.selections[stage], name=f"data.{stage} selection")

    # ---- Lightning hooks ------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        stages = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("predict",), None: ("train", "val", "test")}[stage]
        src = f"store {self.store_path!r}"
        if self.stats is None and stage in ("fit", None):
            stages = tuple(dict.fromkeys(("train",) + stages))
        for st in stages:
            if st not in self.sequences:
                self.sequences[st] = windows.load_sequences(
                    self.ds, self.selection(st), with_targets=st != "predict", source=src)
        if "train" in self.sequences and self.stats is None:
            self.stats = self.compute_stats(self.sequences["train"])

    def compute_stats(self, seq: windows.Sequences) -> dict:
        """Normalisation statistics of the training split only (saved in the model's buffers)."""
        f_mean, f_std = _stats(seq.features, seq.valid)
        stats = {"features": {"mean": f_mean, "std": f_std}}
        for name in quantities.SCALAR_TARGETS:
            m, s = _stats(seq.targets[name][..., None], seq.valid)
            stats[name] = {"mean": m[0], "std": s[0]}
        v = seq.features[..., quantities.feature_index("voltage")]
        m, s = _stats(v[..., None], seq.valid)
        stats["voltage"] = {"mean": m[0], "std": s[0]}
        for e in quantities.ELECTRODES:
            arr = seq.targets[e.variable]
            m = np.broadcast_to(seq.valid.reshape(seq.valid.shape + (1,) * (arr.ndim - 2)),
                                arr.shape)
            stats[e.theta] = {"mean": float(arr[m].mean() / self.info[e.c_max_info])}
        cells = np.unique(seq.cell)
        params = {}
        for key in self.info["param_keys"]:
            vals = np.asarray(self.ds[schema.param_var(key)].values, dtype=float)[cells]
            tr = param_transform(vals)
            tv = np.log10(vals) if tr == "log10" else vals
            std = float(np.std(tv))
            params[key] = {"transform": tr, "mean": float(np.mean(tv)),
                           "std": std if std > 1e-9 else max(abs(float(np.mean(tv))) * 1e-2, 1e-3)}
        stats["params"] = params
        return stats

    def param_table(self) -> np.ndarray:
        """[n_cells, P] raw per-cell parameter truth (NaN where absent)."""
        keys = self.info["param_keys"]
        if not keys:
            return np.zeros((self.n_cells, 0), dtype=np.float32)
        return np.stack([np.asarray(self.ds[schema.param_var(k)].values, dtype=float)
                         for k in keys], axis=1)

    def _loader(self, stage: str, shuffle: bool) -> torch.utils.data.DataLoader:
        if stage not in self.sequences:
            self.setup({"train": "fit", "val": "fit", "test": "test", "predict": "predict"}[stage])
        win = (self.window, self.stride) if stage == "train" else (None, None)
        dataset = windows.SequenceDataset(self.sequences[stage], *win)
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                                           num_workers=self.num_workers,
                                           drop_last=False)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def predict_dataloader(self):
        return self._loader("predict", shuffle=False)

    def steps_per_epoch(self) -> int:
        n = len(windows.SequenceDataset(self.sequences["train"], self.window, self.stride))
        return math.ceil(n / self.batch_size)
