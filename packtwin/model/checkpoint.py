"""The one way packtwin reads a twin checkpoint: the file read once, checked, then built.

Every reader of a trained twin (``packtwin estimate``, ``evaluate``, ``export``, the app's live
twin, ``replay``) goes through :func:`load_twin`; ``train``'s resume check goes through
:func:`read_checkpoint`. A checkpoint is data: it is unpickled with ``weights_only=True`` so a
hostile file cannot run code, and every refusal names the file and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from packtwin.model.module import CheckpointMismatchError, TwinModule

DEFAULT_PERIOD_S = 20.0  # checkpoints written before the store's period was recorded


@dataclasses.dataclass(frozen=True)
class LoadedTwin:
    """A checkpoint's TwinModule (eval mode, CPU) with what its callers read from the file."""

    module: TwinModule
    path: str
    hparams: dict[str, Any]

    @property
    def net(self) -> torch.nn.Module:
        return self.module.net

    @property
    def store_info(self) -> dict:
        return dict(self.hparams.get("store_info") or {})

    @property
    def period_s(self) -> float:
        """The training store's sample period [s]."""
        p = self.store_info.get("period_s")
        return float(p) if p is not None and math.isfinite(float(p)) and p > 0 \
            else DEFAULT_PERIOD_S


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """The checkpoint's contents (one ``torch.load``, weights only), or a clear error.

    Raises FileNotFoundError for a missing file and CheckpointMismatchError for a file that is
    not a Lightning checkpoint, or holds more than weights and plain data.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(errno.ENOENT, f"{what} does not exist", str(p))
    try:
        state = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:  # text, or objects beyond weights and plain data
        raise CheckpointMismatchError(
            f"{what} {str(p)!r} is not a readable packtwin checkpoint: not weights and plain "
            f"data only, and packtwin is refusing to unpickle anything else, which could run "
            f"code (weights_only; {str(exc).splitlines()[0][:120]})") from exc
    except Exception as exc:  # not a checkpoint at all (text, truncated file, ...)
        raise CheckpointMismatchError(f"{what} {str(p)!r} is not a readable packtwin checkpoint "
                                      f"({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointMismatchError(f"{what} {str(p)!r} is not a Lightning checkpoint "
                                      f"(no 'state_dict')")
    return state


def load_twin(path: str | os.PathLike) -> LoadedTwin:
    """The TwinModule of a checkpoint file, in eval mode on the CPU, read once.

    The module is built by Lightning's own loader from the contents already read (what
    ``load_from_checkpoint`` does after its own read), so ``TwinModule.on_load_checkpoint``
    upgrades and checks it (schema version, feature units) exactly as a Trainer would.
    """
    from lightning.pytorch.core.saving import _load_state

    state = read_checkpoint(path)
    if not isinstance(state.get("hyper_parameters"), dict):
        raise CheckpointMismatchError(f"checkpoint {str(path)!r} has no 'hyper_parameters': not "
                                      f"written by a packtwin TwinModule")
    module = _load_state(TwinModule, state)
    module.eval()
    return LoadedTwin(module=module.cpu(), path=str(path), hparams=dict(state["hyper_parameters"]))
