"""Training resumed from ``last.ckpt`` goes on exactly as the uninterrupted run would have."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from packtwin import train
from tests.unit.test_train import base_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPOCHS = 2


class Killed(RuntimeError):
    pass


class KillAtEpoch(Callback):
    """Dies at the start of an epoch, as a killed process would (after the previous epoch's
    checkpoints were written)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed(f"killed at the start of epoch {self.epoch}")


def _args(tmp_path: Path, synthetic_store) -> list[str]:
    # Two training batches per epoch, shuffled: resuming must restore the shuffling too.
    return base_args(tmp_path, synthetic_store, f"--trainer.max_epochs={EPOCHS}",
                     "--data.batch_size=8", "--trainer.limit_val_batches=1",
                     "--trainer.enable_checkpointing=true")


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_last_checkpoint_after_every_epoch_and_resume_reproduces(cli_argv, tmp_path,
                                                                 synthetic_store):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir(), cut_dir.mkdir()
    full = train.cli(["fit", *_args(full_dir, synthetic_store)])
    last_full = _state(full_dir / "ckpt" / "last.ckpt")
    assert last_full["epoch"] == EPOCHS - 1  # the index of the last finished epoch

    # The same run killed after half of the epochs: last.ckpt holds the last finished epoch.
    cut = train.cli(_args(cut_dir, synthetic_store), run=False)
    cut.trainer.callbacks.append(KillAtEpoch(EPOCHS // 2))
    with pytest.raises(Killed):
        train.run_fit(cut.trainer, cut.model, cut.datamodule)
    assert _state(cut_dir / "ckpt" / "last.ckpt")["epoch"] == EPOCHS // 2 - 1

    resumed = train.cli(["fit", *_args(cut_dir, synthetic_store), "--ckpt_path", "last"])
    last_cut = _state(cut_dir / "ckpt" / "last.ckpt")
    assert last_cut["epoch"] == EPOCHS - 1
    assert resumed.trainer.global_step == full.trainer.global_step
    for name, value in last_full["state_dict"].items():
        torch.testing.assert_close(last_cut["state_dict"][name], value, rtol=1e-6, atol=1e-7,
                                   msg=f"{name} differs after resuming")
    for key in ("train/loss_epoch", "val/loss"):
        torch.testing.assert_close(resumed.trainer.callback_metrics[key],
                                   full.trainer.callback_metrics[key], rtol=1e-6, atol=0)


def test_last_checkpoint_is_written_even_without_validation(cli_argv, tmp_path, synthetic_store):
    """The monitored checkpoint writes only after a validation; last.ckpt does not wait for it:
    a run killed after its first epoch, never validated, still resumes from that epoch."""
    c = train.cli(base_args(tmp_path, synthetic_store, "--trainer.max_epochs=2",
                            "--trainer.limit_train_batches=1",
                            "--trainer.check_val_every_n_epoch=5"), run=False)
    c.trainer.callbacks.append(KillAtEpoch(1))
    with pytest.raises(Killed):
        c.trainer.fit(c.model, datamodule=c.datamodule)
    assert _state(tmp_path / "ckpt" / "last.ckpt")["epoch"] == 0
    assert not (tmp_path / "ckpt" / "best.ckpt").exists()
