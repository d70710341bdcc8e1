"""``packtwin fit|validate|test|predict``: the LightningCLI entry point of the twin.

Configs compose: ``--config configs/fit.yaml --config configs/data/demo.yaml
--config configs/model/physics.yaml --config configs/trainer/demo.yaml``. The store's cell count,
grids and scales are linked into the model when the data module is built.
"""

from __future__ import annotations

from typing import Optional

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from packtwin.data.datamodule import TwinDataModule
from packtwin.eval.predict import PredictionWriter
from packtwin.model.module import TwinModule


class TwinCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Intra-op threads of torch (None: torch's default, one per core). On a 2-core machine
        # shared with other jobs, 2 threads ran this small GRU several times slower than 1 (the
        # threads spin against other processes); idle, 2 gained < 30 % (scripts/bench_train.py).
        parser.add_argument("--torch_threads", type=Optional[int], default=None,
                            help="torch.set_num_threads before training (None: torch default)")
        parser.link_arguments("data.n_cells", "model.n_cells", apply_on="instantiate")
        parser.link_arguments("data.info", "model.store_info", apply_on="instantiate")
        # Always-present callback group: acts only in `predict` (writes the prediction store).
        parser.add_lightning_class_args(PredictionWriter, "prediction")
        # Checkpointing as its own group so configs/CLI set `--checkpoint.dirpath` directly; a
        # fixed dirpath with save_last is what makes `--ckpt_path last` resume.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.dirpath": "runs/checkpoints", "checkpoint.save_last": True,
                             "checkpoint.monitor": "val/loss", "checkpoint.save_top_k": 1,
                             "checkpoint.filename": "best"})


    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        threads = cfg.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))


def cli(args: list[str] | None = None, run: bool = True) -> TwinCLI:
    """Build (and by default run) the CLI; returns it so callers can inspect trainer and model."""
    return TwinCLI(TwinModule, TwinDataModule, args=args, run=run,
                   save_config_kwargs={"overwrite": True})


def main(args: list[str] | None = None) -> int:
    """``packtwin fit|validate|test|predict ...`` (``args`` subcommand first; None: sys.argv)."""
    cli(args)
    return 0


if __name__ == "__main__":
    main()
