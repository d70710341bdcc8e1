"""Predictions as xarray, aligned with the truth store (same dims, coords and variable names).

``predict_dataset`` / ``write_predictions`` are the in-process API (the evaluation uses them);
``PredictionWriter`` is the Lightning callback behind ``packtwin predict``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.callbacks import BasePredictionWriter

from packtwin import quantities, schema
from packtwin.data import outputs, splits, store, windows
from packtwin.errors import PacktwinError

_SCENARIO_COORDS = ("ambient_temperature", "charge_c_rate", "discharge_c_rate", "protocol")
_CELL_COORDS = ("series_index", "parallel_index")
PREDICTION_KIND = "prediction"


def _net(module):
    return getattr(module, "net", module)


class UnknownCellError(PacktwinError, KeyError, ValueError):
    """A cell has no embedding: it was not trained on and no fitted embedding was given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def embed(net, cells: Sequence[int], embeddings: dict[int, torch.Tensor] | None = None
          ) -> torch.Tensor:
    """Embeddings [len(cells), d] of cells: a fitted one where given, else the trained table's.

    Raises UnknownCellError for a cell with neither (never another cell's embedding).
    """
    table = net.embedding.weight.detach()
    rows = []
    for c in cells:
        c = int(c)
        if embeddings and c in embeddings:
            rows.append(embeddings[c].to(table.device))
        elif 0 <= c < net.n_cells:
            rows.append(table[c])
        else:
            raise UnknownCellError(
                f"cell {c} has no embedding: the network was trained with n_cells="
                f"{net.n_cells} (cells 0-{net.n_cells - 1}) and no fitted embedding was given; "
                f"fit embeddings for new cells first (packtwin.model.adapt."
                f"fit_new_cell_embeddings, or --prediction.new_cells)")
    return torch.stack(rows) if rows else table[:0]


def selection_of(truth_ds: xr.Dataset, scenarios: Sequence[int] | None = None,
                 cells: Sequence[int] | None = None,
                 snapshots: Sequence[int] | None = None) -> splits.Selection:
    """Positional scenarios/cells/snapshots (None: every usable scenario, all cells/snapshots)."""
    sel = {}
    if scenarios is not None:
        sel[schema.SCENARIO] = list(scenarios)
    if cells is not None:
        sel["cells"] = list(cells)
    if snapshots is not None:
        sel["snapshots"] = list(snapshots)
    return splits.select(truth_ds, sel, name="prediction selection")


def run_network(module, seq: windows.Sequences, embeddings: dict[int, torch.Tensor] | None = None,
                batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Network outputs for every sequence, in order (one dict of [b, ...] tensors per batch)."""
    net = _net(module)
    net.eval()
    outs = []
    device = next(net.parameters()).device
    for a in range(0, len(seq), batch_size):
        b = min(a + batch_size, len(seq))
        feats = torch.from_numpy(seq.features[a:b]).to(device)
        valid = torch.from_numpy(seq.valid[a:b].astype(np.float32)).to(device)
        cells = torch.from_numpy(seq.cell[a:b].astype(np.int64)).to(device)
        emb = embed(net, seq.cell[a:b], embeddings)
        with torch.no_grad():
            out = net(feats, cells, valid, embeddings=emb)
        outs.append({k: v.detach().cpu() for k, v in out.items()})
    return outs


def assemble(module, truth_ds: xr.Dataset, sel: splits.Selection, seq: windows.Sequences,
             outs: list[dict[str, torch.Tensor]], embeddings: dict[int, torch.Tensor] | None = None,
             attrs: dict[str, Any] | None = None, index: np.ndarray | None = None,
             schema_kind: str = "prediction") -> xr.Dataset:
    """Prediction dataset from batched outputs.

    ``index`` gives the sequence each concatenated output row belongs to (default: all, in
    order); sequences without a row (no valid sample) are NaN. ``schema_kind``: what it is
    validated as (``"estimate"`` for ``packtwin estimate``'s members).
    """
    net = _net(module)
    cat = {k: torch.cat([o[k] for o in outs]).numpy() for k in quantities.NET_OUTPUTS}
    if index is not None:
        for k, arr in cat.items():
            full = np.full((len(seq),) + arr.shape[1:], np.nan, dtype=arr.dtype)
            full[index] = arr
            cat[k] = full
    n_sc, n_c, n_s = len(sel.scenarios), len(sel.cells), len(sel.snapshots)
    valid = seq.valid
    sub = truth_ds.isel({schema.SCENARIO: sel.scenarios, schema.CELL: sel.cells,
                         schema.SNAPSHOT: sel.snapshots})
    coords = {name: sub[name] for name in
              (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME, *_SCENARIO_COORDS,
               *_CELL_COORDS, "snapshot_cycle", schema.X_N, schema.R_N, schema.X_P, schema.R_P)
              if name in sub.coords}
    data = {}
    fields = {name: cat[key] for name, key in zip(quantities.ESTIMATED, quantities.NET_OUTPUTS)}
    for e in quantities.ELECTRODES:
        fields[e.variable] = fields[e.variable] * float(net.c_max[e.index])
    for name, arr in fields.items():
        m = valid.reshape(valid.shape + (1,) * (arr.ndim - 2))
        arr = np.where(m, arr, np.nan).astype(np.float32)
        dims = schema.VARIABLES[name].dims
        arr = arr.reshape((n_sc, n_c, n_s) + arr.shape[1:])
        data[name] = xr.Variable(dims, arr, schema.var_attrs(name))
    with torch.no_grad():
        params = net.identified_params(embeddings=embed(net, sel.cells, embeddings)).cpu() \
            .numpy() if net.param_keys else np.zeros((len(sel.cells), 0))
    for i, key in enumerate(net.param_keys):
        name = schema.param_var(key)
        data[name] = xr.Variable((schema.CELL,), params[:, i].astype(np.float64),
                                 schema.var_attrs(name))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"schema_version": schema.SCHEMA_VERSION,
                     "variant": "physics" if net.physics else "data_only",
                     "period_s": float(truth_ds.attrs.get("period_s", np.nan))})
    ds.attrs.update(attrs or {})
    if embeddings:
        ds.attrs["adapted_cells"] = [int(c) for c in embeddings]
    problems = schema.validate(ds, kind=schema_kind)
    if problems:
        raise schema.SchemaError(problems, source=f"{schema_kind} dataset")
    return ds


def predict_dataset(module, truth_ds: xr.Dataset, scenarios: Sequence[int] | None = None,
                    cells: Sequence[int] | None = None, snapshots: Sequence[int] | None = None,
                    embeddings: dict[int, torch.Tensor] | None = None, batch_size: int = 16,
                    checkpoint: str = "", truth_store: str = "") -> xr.Dataset:
    """Estimates of the hidden states for a truth dataset's selected sequences.

    Args:
        module: a TwinModule (or bare TwinNet) with trained weights.
        truth_ds: the truth store (opened with ``packtwin.data.store.open_store``).
        scenarios, cells, snapshots: positional indices (None: every usable scenario, all
            cells, all snapshots).
        embeddings: cell -> fitted embedding for cells not trained on (``adapt``).
        checkpoint, truth_store: recorded in the attrs.
    Returns:
        dataset with the truth's dims/coords for the selection; variables ``quantities.ESTIMATED`` and
        ``param_<key>(cell)``; attrs schema_version, variant, checkpoint, truth_store.
    """
    sel = selection_of(truth_ds, scenarios, cells, snapshots)
    seq = windows.load_sequences(truth_ds, sel, with_targets=False, source="truth store")
    outs = run_network(module, seq, embeddings, batch_size)
    return assemble(module, truth_ds, sel, seq, outs, embeddings,
                    {"checkpoint": str(checkpoint), "truth_store": str(truth_store)})


def write_predictions(ds: xr.Dataset, path: str | os.PathLike,
                      inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write a prediction dataset as a Zarr store, replacing only an earlier prediction store.

    ``inputs`` (truth store, checkpoint) may not be or contain ``path``; the store is written
    beside it and swapped in when complete (:mod:`packtwin.data.outputs`).
    """
    p = Path(path)
    outputs.guard(p, PREDICTION_KIND, inputs, what="prediction output")
    with outputs.replace(p, PREDICTION_KIND) as tmp:
        ds.to_zarr(tmp, mode="w-", encoding=store.encoding_for(ds), **store.ZARR_KW)
    return p


class PredictionWriter(BasePredictionWriter):
    """Writes ``packtwin predict`` results to a Zarr store aligned with the truth store.

    Args:
        output: path of the prediction store.
        new_cells: cells never trained on: their embeddings are fitted from V/I/T alone before
            predicting (network frozen; voltage reconstruction and physics losses only).
        adapt_steps, adapt_lr, adapt_tol: embedding fit budget, learning rate and relative
            tolerance on the loss improvement (see ``packtwin.model.adapt``).
    """

    def __init__(self, output: str = "runs/predictions.zarr", new_cells: list[int] | None = None,
                 adapt_steps: int = 300, adapt_lr: float = 0.05, adapt_tol: float = 1e-4):
        super().__init__(write_interval="epoch")
        self.output = output
        self.new_cells = list(new_cells or [])
        self.adapt_steps, self.adapt_lr, self.adapt_tol = adapt_steps, adapt_lr, adapt_tol
        self.embeddings: dict[int, torch.Tensor] = {}
        self.adapt_steps_used: int | None = None

    def _inputs(self, trainer) -> list[str]:
        return [getattr(trainer.datamodule, "store_path", None),
                getattr(trainer, "ckpt_path", None)]

    def on_predict_start(self, trainer, pl_module) -> None:
        # refuse a bad --prediction.output before any work, not after it
        outputs.guard(self.output, PREDICTION_KIND, self._inputs(trainer),
                      what="--prediction.output")
        if not self.new_cells:
            return
        from packtwin.model.adapt import fit_new_cell_embeddings

        dm = trainer.datamodule
        emb, steps = fit_new_cell_embeddings(pl_module, dm.ds, self.new_cells,
                                             steps=self.adapt_steps, lr=self.adapt_lr,
                                             tol=self.adapt_tol)
        self.embeddings = {int(c): emb[i].detach() for i, c in enumerate(self.new_cells)}
        self.adapt_steps_used = steps
        with torch.no_grad():  # the predict loop then uses the fitted embeddings
            for c, e in self.embeddings.items():
                if c < pl_module.net.n_cells:
                    pl_module.net.embedding.weight[c] = e.to(pl_module.device)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        dm = trainer.datamodule
        seq = dm.sequences["predict"]
        if trainer.world_size > 1:
            raise RuntimeError("packtwin predict writes one store: run it on one device "
                               "(--trainer.devices=1)")
        order = torch.cat([p["seq_index"] for p in predictions]).numpy()
        outs = [p["out"] for p in predictions]
        ckpt = getattr(trainer, "ckpt_path", None) or ""
        attrs = {"checkpoint": str(ckpt), "truth_store": dm.store_path}
        if self.adapt_steps_used is not None:
            attrs["adapt_steps_used"] = int(self.adapt_steps_used)
        ds = assemble(pl_module, dm.ds, dm.selection("predict"), seq, outs, self.embeddings,
                      attrs, index=order)
        write_predictions(ds, self.output, self._inputs(trainer))
