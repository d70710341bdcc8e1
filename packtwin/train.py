"""Training the twin: the :func:`fit` Python API and the LightningCLI behind ``packtwin fit``.

Configs compose: ``--config configs/fit.yaml --config configs/data/demo.yaml
--config configs/model/physics.yaml --config configs/trainer/demo.yaml``. The store's cell count,
grids and scales are linked into the model when the data module is built.

Both ``packtwin fit`` and :func:`fit` (what ``packtwin evaluate`` calls) train through
:meth:`TwinCLI.fit`, which refuses what would silently train the wrong thing: ``--ckpt_path last``
without a last checkpoint, a checkpoint whose model configuration differs from the one given,
a store that does not match the checkpoint (see ``packtwin.model.module``), inputs far outside
the checkpoint's training normalisation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from packtwin.data.datamodule import TwinDataModule
from packtwin.eval.predict import PredictionWriter
from packtwin.model.checkpoint import read_checkpoint
from packtwin.model.module import CheckpointMismatchError, TwinModule

# Model arguments that the store sets (linked from the data module), not the configuration.
_LINKED = ("n_cells", "store_info")
_OPTIMISER = ("lr", "weight_decay")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every training epoch, whatever the monitored checkpoint does.

    The monitored checkpoint writes only when validation runs; resuming needs the state of every
    finished epoch (weights, optimiser, scheduler and the RNG state that shuffles the next one).
    """

    def __init__(self, dirpath: str):
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True,
                         save_on_train_epoch_end=True, enable_version_counter=False)

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # ModelCheckpoint writes last.ckpt only in a step where it wrote a top-k checkpoint.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


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
        # Checkpointing as its own group so configs/CLI set `--checkpoint.dirpath` directly; the
        # monitored (best) checkpoint is written there, and LastCheckpoint adds `last.ckpt` after
        # every epoch, which is what `--ckpt_path last` resumes.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.dirpath": "runs/checkpoints", "checkpoint.save_last": False,
                             "checkpoint.monitor": "val/loss", "checkpoint.save_top_k": 1,
                             "checkpoint.filename": "best"})

    def _parse_ckpt_path(self) -> None:
        """Refuse a checkpoint trained with another model configuration than the one given.

        Lightning would otherwise replace every ``--model.*`` value with the checkpoint's, silently.
        """
        sub = self.config.get("subcommand")
        if sub:
            cfg = self.config[sub]
            cfg["ckpt_path"] = resolve_ckpt_path(cfg.get("ckpt_path"),
                                                 (cfg.get("checkpoint") or {}).get("dirpath"))
        ckpt = self.config[sub].get("ckpt_path") if sub else None
        if ckpt and Path(ckpt).is_file():
            given = self.config[sub].get("model")
            given = dict(vars(given)) if given is not None and not isinstance(given, dict) \
                else dict(given or {})
            state = read_checkpoint(ckpt, what="--ckpt_path")
            # Optimiser settings matter only to training: predict/test/validate ignore them.
            ignore = () if sub == "fit" else _OPTIMISER
            check_model_config(state.get("hyper_parameters", {}),
                               {k: v for k, v in given.items() if k not in ignore},
                               source=f"checkpoint {str(ckpt)!r}")
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        threads = cfg.get("torch_threads")
        if threads:
            torch.set_num_threads(int(threads))

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        cfg = self.config_init.get(self.subcommand, self.config_init) if self.subcommand else \
            self.config_init
        dirpath = cfg.get("checkpoint").dirpath if cfg.get("checkpoint") is not None else None
        for c in trainer.callbacks:  # one writer of last.ckpt (two would version its name)
            if isinstance(c, ModelCheckpoint) and not isinstance(c, LastCheckpoint):
                c.save_last = False
        if dirpath and not any(isinstance(c, LastCheckpoint) for c in trainer.callbacks):
            trainer.callbacks.append(LastCheckpoint(str(dirpath)))
        return trainer

    def fit(self, model: TwinModule, datamodule: TwinDataModule | None = None,
            ckpt_path: str | None = None, **kwargs: Any) -> None:
        self.checkpoint_path = run_fit(self.trainer, model, datamodule, ckpt_path, **kwargs)


def check_model_config(hparams: Mapping[str, Any], given: Mapping[str, Any],
                       source: str = "checkpoint") -> None:
    """Raise CheckpointMismatchError listing every model argument that differs between a
    checkpoint's hyperparameters and the configuration given (store-linked ones excepted)."""
    diffs = []
    for key, value in given.items():
        if key in _LINKED or key not in hparams or key.startswith("_"):
            continue
        ref = hparams[key]
        if (ref or None) != (value or None) and ref != value:
            diffs.append(f"model.{key}: checkpoint {ref!r}, given {value!r}")
    if diffs:
        raise CheckpointMismatchError(
            f"{source} was trained with another model configuration ({'; '.join(diffs)}); "
            f"give the checkpoint's values (its hyper_parameters) or train a new model without "
            f"--ckpt_path")


def resolve_ckpt_path(ckpt_path: str | None, dirpath: str | None) -> str | None:
    """``last`` -> ``<checkpoint.dirpath>/last.ckpt``; a missing file is an error, never a silent
    start from scratch."""
    if not ckpt_path:
        return ckpt_path
    if ckpt_path == "last":
        path = Path(dirpath or ".") / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"--ckpt_path last: there is no last checkpoint {str(path)!r} (checkpoint.dirpath "
                f"{dirpath!r}); train without --ckpt_path, or point checkpoint.dirpath at the run "
                f"to resume")
        return str(path)
    if ckpt_path in ("best", "hpc", "registry") or ckpt_path.startswith("registry:"):
        return ckpt_path
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"--ckpt_path {ckpt_path!r} does not exist")
    return ckpt_path


def run_fit(trainer, module: TwinModule, datamodule: TwinDataModule, ckpt_path: str | None = None,
            **kwargs: Any) -> Path:
    """Train (or resume from ``ckpt_path``); returns the checkpoint to use: the best by the
    monitored metric if there is one, else ``last.ckpt`` (the final weights)."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)
    cb = trainer.checkpoint_callback
    best = getattr(cb, "best_model_path", "") if cb is not None else ""
    if best and Path(best).is_file():
        return Path(best)
    last = next((c.last_model_path for c in trainer.callbacks
                 if isinstance(c, LastCheckpoint) and c.last_model_path), "")
    if last and Path(last).is_file():
        return Path(last)
    path = Path(trainer.default_root_dir) / "final.ckpt"
    trainer.save_checkpoint(str(path))
    return path


def load_config(paths: Sequence[str | Path], *overrides: Mapping[str, Any]) -> dict:
    """Merge YAML config files and override dicts, later ones winning (lists are replaced), as
    ``packtwin fit --config a.yaml --config b.yaml`` composes them."""
    out: dict = {}
    for p in paths:
        text = Path(p).read_text()
        out = merge(out, yaml.safe_load(text) or {})
    for o in overrides:
        out = merge(out, o)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def fit(config: Mapping[str, Any], ckpt_path: str | None = None) -> Path:
    """Train the twin from a configuration dict; returns the checkpoint to evaluate.

    Args:
        config: the nested configuration of ``packtwin fit`` (``seed_everything``, ``trainer``,
            ``model``, ``data``, ``checkpoint``, ...; see :func:`load_config`).
        ckpt_path: resume from this checkpoint (``"last"``: ``checkpoint.dirpath/last.ckpt``).
    Returns:
        the best checkpoint by ``checkpoint.monitor``, else the last one.
    """
    c = cli({"subcommand": "fit", "fit": {**config, "ckpt_path": ckpt_path}})
    return c.checkpoint_path


def cli(args: list[str] | dict | None = None, run: bool = True) -> TwinCLI:
    """Build (and by default run) the CLI; returns it so callers can inspect trainer and model."""
    return TwinCLI(TwinModule, TwinDataModule, args=args, run=run,
                   save_config_kwargs={"overwrite": True})


def main(args: list[str] | None = None) -> int:
    """``packtwin fit|validate|test|predict ...`` (``args`` subcommand first; None: sys.argv)."""
    cli(args)
    return 0


if __name__ == "__main__":
    main()
