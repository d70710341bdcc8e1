"""TwinModule: a thin LightningModule around TwinNet (losses, metrics in physical units, checks)."""

from __future__ import annotations

import math
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torchmetrics import SumMetric

from packtwin import quantities, schema
from packtwin.errors import ConfigError, PacktwinError
from packtwin.eval import metrics
from packtwin.model import losses
from packtwin.model.twinnet import TwinNet

class NonFiniteLossError(PacktwinError, FloatingPointError):
    """A loss term became NaN/inf; the message names the step and the term."""


class InputRangeError(PacktwinError, ValueError):
    """Measured inputs far outside what the checkpoint was trained on (units, scaling)."""


class CheckpointMismatchError(PacktwinError, ValueError):
    """A checkpoint does not fit this store or this packtwin (schema version, cell count)."""


class TwinModule(pl.LightningModule):
    """The twin under Lightning.

    Args:
        n_cells: cells of the store (linked from ``data.n_cells``).
        store_info: grids, c_max, parameter keys of the store (linked from ``data.info``).
        physics: True = physics twin (structural physics + physics loss terms); False = the same
            network trained on data terms only (the data-only baseline).
        embed_dim, hidden, layers, n_modes, trunk_width: network sizes (see TwinNet).
        running_initial_state: physics twin's initial-state estimate from the whole history so
            far (True) or the first sample only (see TwinNet).
        lr, weight_decay: AdamW settings (cosine decay over ``trainer.max_epochs``).
        weights: loss-term weights by name, overriding ``losses.DEFAULT_WEIGHTS``.
    """

    def __init__(self, n_cells: int, store_info: dict, physics: bool = True, embed_dim: int = 8,
                 hidden: int = 64, layers: int = 1, n_modes: int = 16, trunk_width: int = 32,
                 running_initial_state: bool = True, lr: float = 1e-2, weight_decay: float = 1e-5,
                 weights: dict[str, float] | None = None):
        super().__init__()
        self.save_hyperparameters()
        unknown = set(weights or {}) - set(losses.DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigError(f"model.weights: unknown loss terms {sorted(unknown)}; known: "
                             f"{sorted(losses.DEFAULT_WEIGHTS)}")
        self.weights = {**losses.DEFAULT_WEIGHTS, **(weights or {})}
        if not physics:  # the switch turns every physics term off, whatever the weights say
            self.weights.update({k: 0.0 for k in losses.PHYSICS_TERMS})
        self.net = TwinNet(n_cells, store_info, physics=physics, embed_dim=embed_dim,
                           hidden=hidden, layers=layers, n_modes=n_modes, trunk_width=trunk_width,
                           running_initial_state=running_initial_state)
        n_p = len(self.net.param_keys)
        self.register_buffer("param_table", torch.full((n_cells, n_p), float("nan")))
        self.metrics = torch.nn.ModuleDict({f"{stage}_{m}": SumMetric()
                                            for stage in ("val", "test") for m in metrics.sum_keys()})

    @property
    def variant(self) -> str:
        return "physics" if self.hparams.physics else "data_only"

    @property
    def needs_derivs(self) -> bool:
        return any(self.weights[k] > 0 for k in losses.PHYSICS_TERMS if k.startswith(("fick",
                                                                                      "flux")))

    # ---- set-up and checkpoints -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        if dm.n_cells != self.hparams.n_cells:
            raise CheckpointMismatchError(
                f"model.n_cells={self.hparams.n_cells} disagrees with store "
                f"{dm.store_path!r}, which has {dm.n_cells} cells")
        if stage == "fit" and not bool(self.net.stats_set):
            self.net.set_stats(dm.stats)
            table = torch.as_tensor(dm.param_table(), dtype=torch.float32)
            if table.shape == self.param_table.shape:
                self.param_table.copy_(table)

    def _check_inputs(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and bool(self.net.stats_set) and stage in dm.sequences:
            check_normalisation(self.net, dm.sequences[stage],
                                f"store {dm.store_path!r} ({stage} selection)")

    def on_train_start(self) -> None:  # after a resumed checkpoint's statistics are restored
        self._check_inputs("train")

    def on_predict_start(self) -> None:
        self._check_inputs("predict")

    def on_test_start(self) -> None:
        self._check_inputs("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["packtwin_schema_version"] = schema.SCHEMA_VERSION
        checkpoint["packtwin_variant"] = self.variant
        checkpoint["packtwin_feature_units"] = dict(quantities.FEATURE_UNITS)
        # The global RNG shuffles the next epoch's batches: a resumed run restores it so that it
        # goes on exactly as the uninterrupted one would have.
        checkpoint["packtwin_rng"] = {"torch": torch.get_rng_state(),
                                      "numpy": _numpy_state(),
                                      "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade_checkpoint(checkpoint)
        check_checkpoint(checkpoint, self.hparams.n_cells, store_info=self.hparams.store_info)
        rng = checkpoint.get("packtwin_rng")
        trainer = self._trainer
        # Only when a trainer resumes fitting (before it draws the next epoch's shuffle); a
        # checkpoint loaded for inference leaves the global RNG alone.
        if rng and trainer is not None and trainer.state.fn == "fit":
            torch.set_rng_state(rng["torch"])
            np.random.set_state((rng["numpy"][0], np.asarray(rng["numpy"][1], dtype=np.uint32),
                                 *rng["numpy"][2:]))
            random.setstate(rng["python"])

    # ---- steps -------------------------------------------------------------------------------
    def _forward_terms(self, batch: dict) -> tuple[dict, dict]:
        derivs = self.hparams.physics and self.needs_derivs
        with torch.enable_grad():  # the diffusion residual needs d/drho even in validation
            out = self.net(batch["features"], batch["cell"], batch["valid"], derivs=derivs)
            terms = losses.data_terms(self.net, out, batch, self.param_table)
            if self.hparams.physics:
                terms.update(losses.physics_terms(self.net, out, batch) if derivs else {})
        return out, terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        _, terms = self._forward_terms(batch)
        for name, value in terms.items():
            if not torch.isfinite(value):
                raise NonFiniteLossError(
                    f"loss term {name!r} is {value.item()} at global step {self.global_step} "
                    f"(epoch {self.current_epoch}, batch {batch_idx}); training stopped, the last "
                    f"checkpoint saved before this step is kept")
        loss = losses.total(terms, self.weights)
        bs = batch["features"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True, batch_size=bs)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=bs)
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        out, terms = self._forward_terms(batch)
        loss = losses.total(terms, self.weights)
        bs = batch["features"].shape[0]
        self.log(f"{stage}/loss", loss.detach(), on_epoch=True, sync_dist=True, batch_size=bs,
                 prog_bar=stage == "val")
        for name, value in terms.items():
            self.log(f"{stage}/{name}", value.detach(), on_epoch=True, sync_dist=True,
                     batch_size=bs)
        self._update_metrics(out, batch, stage)

    @torch.no_grad()
    def _update_metrics(self, out: dict, batch: dict, stage: str) -> None:
        pred = {e.variable: out[e.theta].detach() * self.net.c_max[e.index]
                for e in quantities.ELECTRODES}
        pred.update({n: out[n].detach() for n in metrics.SCALARS})
        truth = {n: batch[n] for n in quantities.FIELD_TARGETS + quantities.SCALAR_TARGETS}
        truth["voltage"] = quantities.Features.unpack(batch["features"]).voltage
        truth["valid"] = batch["valid"]
        for key, value in metrics.error_sums(truth, pred, ops=metrics.TorchOps).items():
            self.metrics[f"{stage}_{key}"].update(value)

    def _log_metrics(self, stage: str) -> None:
        m = {key: self.metrics[f"{stage}_{key}"] for key in metrics.sum_keys()}
        if all(v.update_count == 0 for v in m.values()):  # sanity/empty loop: nothing to report
            return
        sums = {k: v.compute().double().cpu().numpy() for k, v in m.items()}
        c_max = {e.variable: float(self.net.c_max[e.index]) for e in quantities.ELECTRODES}
        _, pack = metrics.pooled(sums, c_max, self.net.constants.sei.L_0 * 1e9)
        for name, value in pack.items():  # the evaluation's metric names and units
            self.log(f"{stage}/{name}", value, sync_dist=True)
        for v in m.values():
            v.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        with torch.no_grad():
            out = self.net(batch["features"], batch["cell"], batch["valid"])
        return {"out": {k: v.detach().cpu() for k, v in out.items()},
                "seq_index": batch["seq_index"].cpu()}

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)
        max_epochs = getattr(self.trainer, "max_epochs", None) if self._trainer else None
        if not max_epochs or max_epochs < 1:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs,
                                                           eta_min=0.05 * self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


# Measured inputs whose spread or offset departs this far from the training normalisation are
# another kind of signal (units, scaling), not new operating conditions: 5C against 1C training
# moves the current's mean by a few training deviations, a x1000 scaling by hundreds.
NORMALISATION_LIMIT = 50.0


def check_normalisation(net, seq, source: str = "data") -> None:
    """Raise InputRangeError when a measured input is far outside the network's training
    normalisation (mean offset or spread ratio beyond :data:`NORMALISATION_LIMIT`)."""
    valid = seq.valid.astype(bool)
    if not valid.any():
        return
    mean = quantities.Features.unpack(net.feat_mean.detach().cpu().numpy())
    std = quantities.Features.unpack(net.feat_std.detach().cpu().numpy())
    feats = quantities.Features.unpack(seq.features)
    for name in schema.MEASURED:
        x = np.asarray(getattr(feats, name))[valid].astype(np.float64)
        m, s = float(getattr(mean, name)), float(getattr(std, name))
        offset = abs(float(x.mean()) - m) / s
        ratio = float(x.std()) / s
        if offset > NORMALISATION_LIMIT or ratio > NORMALISATION_LIMIT:
            u = schema.VARIABLES[name].units
            raise InputRangeError(
                f"{source}: input {name!r} has mean {x.mean():.6g} {u} and spread "
                f"{x.std():.6g} {u}, but the checkpoint was trained on mean {m:.6g} {u}, spread "
                f"{s:.6g} {u} ({max(offset, ratio):.0f}x its spread away; limit "
                f"{NORMALISATION_LIMIT:.0f}): wrong units or a scaled signal?")


def _numpy_state() -> tuple:
    """numpy's RNG state as plain Python values (a weights-only checkpoint loads them)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, keys.tolist(), int(pos), int(has_gauss), float(cached)


def upgrade_checkpoint(checkpoint: dict) -> None:
    """Checkpoints written before the feature units were recorded counted the charge passed in
    A.h: rescale its normalisation to coulombs (the network's output is then unchanged)."""
    if "packtwin_feature_units" in checkpoint:
        return
    k = quantities.feature_index("charge_passed")
    state = checkpoint.get("state_dict", {})
    for name in ("net.feat_mean", "net.feat_std"):
        if name in state:
            state[name] = state[name].clone()
            state[name][k] = state[name][k] * 3600.0
    checkpoint["packtwin_feature_units"] = dict(quantities.FEATURE_UNITS)


def check_checkpoint(checkpoint: dict, n_cells: int | None = None, source: str = "checkpoint",
                     store_info: dict | None = None) -> None:
    """Raise CheckpointMismatchError when a checkpoint is from another schema, feature set or
    store (cell count, sampling period, grids, parameter keys, c_max), naming both values."""
    version = checkpoint.get("packtwin_schema_version")
    if version is None:
        raise CheckpointMismatchError(f"{source} was not written by packtwin (no "
                                      f"'packtwin_schema_version')")
    if str(version).split(".")[0] != schema.SCHEMA_VERSION.split(".")[0]:
        raise CheckpointMismatchError(f"{source} has schema version {version!r}; this packtwin "
                                      f"reads {schema.SCHEMA_VERSION!r}")
    units = checkpoint.get("packtwin_feature_units")
    if units is not None and dict(units) != quantities.FEATURE_UNITS:
        raise CheckpointMismatchError(f"{source} was trained on features {dict(units)}; this "
                                      f"packtwin computes {quantities.FEATURE_UNITS}: retrain")
    hp = checkpoint.get("hyper_parameters", {})
    if n_cells is not None and hp.get("n_cells") not in (None, n_cells):
        raise CheckpointMismatchError(f"{source} was trained with n_cells={hp.get('n_cells')}, "
                                      f"but the store has {n_cells} cells")
    trained = hp.get("store_info")
    if store_info is None or trained is None or trained is store_info:
        return
    problems = []
    for key in ("period_s", *(e.c_max_info for e in quantities.ELECTRODES)):
        a, b = trained.get(key), store_info.get(key)
        if a is not None and b is not None and not (math.isclose(a, b, rel_tol=1e-6) or
                                                    (math.isnan(a) and math.isnan(b))):
            problems.append(f"{key}: checkpoint {a}, store {b}")
    for dim in (d for e in quantities.ELECTRODES for d in (e.x_dim, e.r_dim)):
        a, b = trained.get(dim), store_info.get(dim)
        if a is not None and b is not None and (len(a) != len(b) or not np.allclose(
                a, b, rtol=1e-6, atol=0)):
            problems.append(f"grid {dim}: checkpoint {len(a)} points, store {len(b)} points"
                            + ("" if len(a) != len(b) else " at other positions"))
    a, b = list(trained.get("param_keys", [])), list(store_info.get("param_keys", []))
    if a != b:
        problems.append(f"parameter keys: checkpoint {a}, store {b}")
    if problems:
        raise CheckpointMismatchError(f"{source} does not match the store: "
                                      + "; ".join(problems))
