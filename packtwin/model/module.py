"""TwinModule: a thin LightningModule around TwinNet (losses, metrics in physical units, checks)."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric

from packtwin import schema
from packtwin.model import losses
from packtwin.model.twinnet import TwinNet

# name -> (what is averaged, how it is reported)
_METRICS = ("cs_n_se", "cs_p_se", "surf_n_se", "surf_p_se", "voltage_se", "sei_ae", "plating_ae",
            "soc_ae")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN/inf; the message names the step and the term."""


class CheckpointMismatchError(ValueError):
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
            raise ValueError(f"model.weights: unknown loss terms {sorted(unknown)}; known: "
                             f"{sorted(losses.DEFAULT_WEIGHTS)}")
        self.weights = {**losses.DEFAULT_WEIGHTS, **(weights or {})}
        if not physics:  # the switch turns every physics term off, whatever the weights say
            self.weights.update({k: 0.0 for k in losses.PHYSICS_TERMS})
        self.net = TwinNet(n_cells, store_info, physics=physics, embed_dim=embed_dim,
                           hidden=hidden, layers=layers, n_modes=n_modes, trunk_width=trunk_width,
                           running_initial_state=running_initial_state)
        n_p = len(self.net.param_keys)
        self.register_buffer("param_table", torch.full((n_cells, n_p), float("nan")))
        self.metrics = torch.nn.ModuleDict({f"{stage}_{m}": MeanMetric()
                                            for stage in ("val", "test") for m in _METRICS})

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["packtwin_schema_version"] = schema.SCHEMA_VERSION
        checkpoint["packtwin_variant"] = self.variant

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint(checkpoint, self.hparams.n_cells)

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
        from packtwin.data.windows import FEATURES

        valid = batch["valid"]
        n = valid.sum()
        for k, e in enumerate(("n", "p")):
            c_max = self.net.c_max[k]
            err = out[f"theta_{e}"].detach() * c_max - batch[f"c_s_{e}"]
            m = valid[..., None, None].expand_as(err)
            self.metrics[f"{stage}_cs_{e}_se"].update((err ** 2 * m).sum() / m.sum(), m.sum())
            es = err[..., -1]
            ms = m[..., -1]
            self.metrics[f"{stage}_surf_{e}_se"].update((es ** 2 * ms).sum() / ms.sum(), ms.sum())
        v = batch["features"][..., FEATURES.index("voltage")]
        pairs = {"voltage_se": (out["voltage"] - v) ** 2,
                 "sei_ae": (out["sei_thickness_avg"] - batch["sei_thickness_avg"]).abs(),
                 "plating_ae": (out["plating_margin"] - batch["plating_margin"]).abs(),
                 "soc_ae": (out["soc"] - batch["soc"]).abs()}
        for name, err in pairs.items():
            self.metrics[f"{stage}_{name}"].update((err.detach() * valid).sum() / n, n)

    def _log_metrics(self, stage: str) -> None:
        m = {name: self.metrics[f"{stage}_{name}"] for name in _METRICS}
        if m["cs_n_se"]._update_count == 0:  # sanity/empty loop: nothing to report
            return
        vals = {k: float(v.compute()) for k, v in m.items()}
        c_max = self.net.c_max.tolist()
        report = {}
        for k, e in enumerate(("n", "p")):
            rmse = math.sqrt(vals[f"cs_{e}_se"])
            report[f"cs_{e}_rmse_molm3"] = rmse
            report[f"cs_{e}_rmse_pct"] = 100.0 * rmse / c_max[k]
            report[f"surf_{e}_rmse_molm3"] = math.sqrt(vals[f"surf_{e}_se"])
        report["voltage_rmse_mV"] = 1000.0 * math.sqrt(vals["voltage_se"])
        report["sei_mae_nm"] = vals["sei_ae"]
        report["plating_mae_mV"] = 1000.0 * vals["plating_ae"]
        report["soc_mae_pct"] = 100.0 * vals["soc_ae"]
        for name, value in report.items():
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


def check_checkpoint(checkpoint: dict, n_cells: int | None = None, source: str = "checkpoint"):
    """Raise CheckpointMismatchError when a checkpoint is from another schema or cell count."""
    version = checkpoint.get("packtwin_schema_version")
    if version is None:
        raise CheckpointMismatchError(f"{source} was not written by packtwin (no "
                                      f"'packtwin_schema_version')")
    if str(version).split(".")[0] != schema.SCHEMA_VERSION.split(".")[0]:
        raise CheckpointMismatchError(f"{source} has schema version {version!r}; this packtwin "
                                      f"reads {schema.SCHEMA_VERSION!r}")
    hp = checkpoint.get("hyper_parameters", {})
    if n_cells is not None and hp.get("n_cells") not in (None, n_cells):
        raise CheckpointMismatchError(f"{source} was trained with n_cells={hp.get('n_cells')}, "
                                      f"but the store has {n_cells} cells")
