"""Bad inputs to training and prediction: each refused with a clear message, never a silent run.

One row per case: the real CLI (``packtwin.cli.main``) in-process, the exception type (or
SystemExit for the argument parser) and a fragment of the message that names the problem.
"""

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from packtwin import cli
from packtwin.errors import ConfigError, one_line
from packtwin.data import store, synthetic
from packtwin.data.windows import DataError
from packtwin.model.module import CheckpointMismatchError, InputRangeError
from tests.unit.test_train import base_args

pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_argv")

QUICK = ("--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
         "--trainer.max_epochs=1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_store):
    """A checkpoint of the small test model, trained one short epoch on the synthetic store."""
    import sys

    argv, sys.argv = sys.argv, ["packtwin"]
    try:
        d = tmp_path_factory.mktemp("trained")
        assert cli.main(["fit", *base_args(d, synthetic_store, *QUICK)]) == 0
    finally:
        sys.argv = argv
    ckpt = d / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def _edited(src: Path, dst: Path, edit: Callable) -> Path:
    ds = store.open_store(src).load()
    ds = edit(ds) or ds
    ds.to_zarr(dst, **store.ZARR_KW)
    return dst


def _scaled(name: str, factor: float, offset: float = 0.0):
    def edit(ds):
        ds[name].values[:] = ds[name].values * factor + offset
    return edit


def _period(ds):
    ds.attrs["period_s"] = 2 * float(ds.attrs["period_s"])
    return ds.assign_coords(time=ds["time"] * 2)


def _drop_param(ds):
    return ds.drop_vars("param_neg_diffusivity")


def _c_max(ds):
    ds["c_s_n"].attrs["c_max"] = 2 * float(ds["c_s_n"].attrs["c_max"])


def _no_c_max(ds):
    del ds["c_s_n"].attrs["c_max"]


def _fewer_r_n(ds):
    return ds.isel(r_n=slice(0, -1))


# id, how the store is edited (None: the test store), CLI arguments after the common ones,
# whether the trained checkpoint is passed, expected exception, message fragment.
CASES = [
    ("resume last without a checkpoint", None, ["fit", "--ckpt_path", "last"], False,
     FileNotFoundError, r"no last checkpoint .*last\.ckpt"),
    ("predict from last without a checkpoint", None, ["predict", "--ckpt_path", "last"], False,
     FileNotFoundError, r"no last checkpoint"),
    ("checkpoint path that does not exist", None,
     ["fit", "--ckpt_path", "/nonexistent/model.ckpt"], False, FileNotFoundError,
     r"'/nonexistent/model\.ckpt' does not exist"),
    ("checkpoint path that is not a checkpoint", None, ["fit", "--ckpt_path", "{text}"], False,
     CheckpointMismatchError, r"is not a readable packtwin checkpoint"),
    ("torch file that is not a Lightning checkpoint", None, ["fit", "--ckpt_path", "{tensor}"],
     False, CheckpointMismatchError, r"is not a Lightning checkpoint"),
    ("resume with another hidden size", None, ["fit", "--model.hidden=32"], True,
     CheckpointMismatchError, r"model\.hidden: checkpoint 16, given 32"),
    ("resume a physics checkpoint as data-only", None, ["fit", "--model.physics=false"], True,
     CheckpointMismatchError, r"model\.physics: checkpoint True, given False"),
    ("resume with another learning rate", None, ["fit", "--model.lr=0.5"],
     True, CheckpointMismatchError, r"model\.lr: checkpoint 0\.01, given 0\.5"),
    ("predict with another decoder size", None, ["predict", "--model.n_modes=8"],
     True, CheckpointMismatchError, r"model\.n_modes: checkpoint 4, given 8"),
    ("store with another sampling period", _period, ["fit"], True, CheckpointMismatchError,
     r"period_s: checkpoint [0-9.]+, store [0-9.]+"),
    ("store with fewer radial nodes", _fewer_r_n, ["predict"], True, CheckpointMismatchError,
     r"grid r_n: checkpoint 6 points, store 5 points"),
    ("store with other parameter keys", _drop_param, ["fit"], True, CheckpointMismatchError,
     r"parameter keys: checkpoint \[.*'neg_diffusivity'.*\], store \["),
    ("store with another c_max", _c_max, ["predict"], True, CheckpointMismatchError,
     r"c_max_n: checkpoint [0-9.]+, store [0-9.]+"),
    ("store with another cell count", "two_cells", ["predict"], True, CheckpointMismatchError,
     r"n_cells=4, but the store has 2 cells"),
    ("store without c_max", _no_c_max, ["fit"], False, store.StoreError,
     r"'c_s_n' lacks the attribute 'c_max'"),
    ("voltage in mV (x1000) for training", _scaled("voltage", 1000.0), ["fit"], False,
     DataError, r"'voltage' spans \[[0-9.e+]+, [0-9.e+]+\] V, outside its physical range"),
    ("voltage in mV (x1000) for prediction", _scaled("voltage", 1000.0), ["predict"], True,
     DataError, r"'voltage' spans .* outside its physical range \[0\.0, 5\.0\] V"),
    ("current in mA (x1000) for prediction", _scaled("current", 1000.0), ["predict"], True,
     InputRangeError, r"input 'current' has mean .* A and spread .* trained on mean"),
    ("current in mA (x1000) when resuming", _scaled("current", 1000.0),
     ["fit", "--trainer.max_epochs=2"], True,
     InputRangeError, r"input 'current' .*wrong units or a scaled signal"),
    ("temperature in degC instead of K", _scaled("temperature", 1.0, -273.15), ["fit"], False,
     DataError, r"'temperature' spans .* outside its physical range \[200\.0, 450\.0\] K"),
    ("unknown loss-term weight", None, ["fit", "--model.weights={{\"fick\": 1.0}}"], False,
     ConfigError, r"unknown loss terms \['fick'\]"),
    ("non-integer epoch count", None, ["fit", "--trainer.max_epochs=two"], False, SystemExit,
     r"max_epochs"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_training_input_is_refused_with_a_clear_message(case, tmp_path, trained,
                                                            synthetic_store, capsys, monkeypatch):
    _, edit, argv, with_ckpt, exc_type, message = case
    if edit is None:
        path = synthetic_store
    elif edit == "two_cells":
        path = tmp_path / "two_cells.zarr"
        synthetic.make_store(path, n_series=2, n_parallel=1)
    else:
        path = _edited(synthetic_store, tmp_path / "edited.zarr", edit)
    (tmp_path / "model.txt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensor.ckpt")
    argv = [a.format(text=tmp_path / "model.txt", tensor=tmp_path / "tensor.ckpt") for a in argv]
    extra = ["--ckpt_path", str(trained)] if with_ckpt else []
    args = [argv[0], *base_args(tmp_path, path, *QUICK), *argv[1:], *extra]
    if exc_type is SystemExit:  # the argument parser's own refusal
        with pytest.raises(SystemExit) as info:
            cli.main(args)
        assert info.value.code not in (0, None)
        text = capsys.readouterr().err
    else:  # the CLI prints packtwin's own errors as one line: record which one it printed
        seen = []

        def recording(exc):
            seen.append(exc)
            return one_line(exc)

        monkeypatch.setattr(cli, "one_line", recording)
        assert cli.main(args) == 2
        text = capsys.readouterr().err
        assert len(seen) == 1 and isinstance(seen[0], exc_type), seen
        assert "Traceback" not in text and text.count("\n") == 1, text
        assert text.startswith(f"packtwin {argv[0]}: error: ")
    assert re.search(message, text), f"message {text!r} lacks {message!r}"
    assert not (tmp_path / "pred.zarr").exists()  # nothing written by a refused prediction


def test_the_table_has_enough_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 12


def test_optimiser_settings_do_not_block_prediction(tmp_path, trained, synthetic_store):
    """lr only matters to training: predicting with another one in the config is fine."""
    args = base_args(tmp_path, synthetic_store, *QUICK)
    assert cli.main(["predict", *args, "--model.lr=0.5", "--ckpt_path", str(trained)]) == 0
    assert (tmp_path / "pred.zarr").exists()


def test_checkpoints_before_charge_in_coulombs_still_predict_the_same(tmp_path, trained,
                                                                      synthetic_store):
    """A checkpoint that normalised the charge in A.h (no recorded feature units) is upgraded
    on load; one recording other feature units is refused."""
    from packtwin import quantities
    from packtwin.data import splits, windows
    from packtwin.model.module import TwinModule

    state = torch.load(trained, map_location="cpu", weights_only=True)
    k = quantities.feature_index("charge_passed")
    old = dict(state, state_dict=dict(state["state_dict"]))
    del old["packtwin_feature_units"]
    for name in ("net.feat_mean", "net.feat_std"):
        old["state_dict"][name] = old["state_dict"][name].clone()
        old["state_dict"][name][k] /= 3600.0
    torch.save(old, tmp_path / "old.ckpt")
    ds = store.open_store(synthetic_store)
    seq = windows.load_sequences(ds, splits.select(ds, {"scenario": [0]}), with_targets=False)
    x, cell = torch.from_numpy(seq.features), torch.from_numpy(seq.cell.astype(np.int64))
    valid = torch.from_numpy(seq.valid.astype(np.float32))
    outs = []
    for path in (trained, tmp_path / "old.ckpt"):
        net = TwinModule.load_from_checkpoint(str(path), map_location="cpu").net.eval()
        with torch.no_grad():
            outs.append(net(x, cell, valid))
    for key in quantities.NET_OUTPUTS:
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-6)

    other = dict(state, packtwin_feature_units={**quantities.FEATURE_UNITS,
                                                "charge_passed": "A.h"})
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"trained on features .*'A\.h'.*retrain"):
        TwinModule.load_from_checkpoint(str(tmp_path / "other.ckpt"), map_location="cpu")
