"""packtwin.data.outputs and packtwin.data.lock: outputs never destroy inputs or foreign data,
are replaced whole (a kill mid-write keeps the previous one), and one writer holds a store."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.data import lock, outputs, store

ROOT = Path(__file__).resolve().parents[2]


def _write(path, value: float, n: int = 10):
    ds = xr.Dataset({"a": (("i",), np.full(n, value, dtype="float32"))})
    outputs.guard(path, "prediction")
    with outputs.replace(path, "prediction") as tmp:
        ds.to_zarr(tmp, mode="w-", **store.ZARR_KW)


def test_replace_swaps_a_store_whole_and_marks_it(tmp_path):
    p = tmp_path / "pred.zarr"
    _write(p, 1.0)
    assert outputs.output_kind(p) == "prediction"
    _write(p, 2.0)
    assert float(xr.open_zarr(p, consolidated=False)["a"].max()) == 2.0
    assert sorted(q.name for q in tmp_path.iterdir()) == ["pred.zarr"]  # no temporaries left


def test_guard_refuses_inputs_foreign_data_other_kinds_and_checkpoints(tmp_path):
    truth = tmp_path / "truth.zarr"
    xr.Dataset({"a": (("i",), np.zeros(3))}).to_zarr(truth, **store.ZARR_KW)
    with pytest.raises(outputs.OutputError, match="is the input"):
        outputs.guard(truth, "prediction", [truth])
    with pytest.raises(outputs.OutputError, match="lies inside it"):
        outputs.guard(truth / "x.zarr", "prediction", [truth])
    with pytest.raises(outputs.OutputError, match="contains the input"):
        outputs.guard(tmp_path, "prediction", [truth])
    with pytest.raises(outputs.OutputError, match="not a packtwin prediction output"):
        outputs.guard(truth, "prediction")  # a store packtwin did not write as a prediction
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(outputs.OutputError, match="not a packtwin"):
        outputs.guard(folder, "prediction")
    ckpt = tmp_path / "model.bin"
    import torch

    torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    with pytest.raises(outputs.OutputError, match="existing checkpoint"):
        outputs.guard(ckpt, "export")
    metrics = tmp_path / "m.zarr"
    _write(metrics, 1.0)
    with pytest.raises(outputs.OutputError, match="holds a packtwin 'prediction', not a 'export'"):
        outputs.guard(metrics, "export")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert outputs.guard(empty, "prediction") == empty.resolve()


def test_a_failed_write_leaves_the_previous_output(tmp_path):
    p = tmp_path / "pred.zarr"
    _write(p, 1.0)
    with pytest.raises(RuntimeError):
        with outputs.replace(p, "prediction") as tmp:
            xr.Dataset({"a": (("i",), np.zeros(3))}).to_zarr(tmp, **store.ZARR_KW)
            raise RuntimeError("killed")
    assert float(xr.open_zarr(p, consolidated=False)["a"].max()) == 1.0
    assert sorted(q.name for q in tmp_path.iterdir()) == ["pred.zarr"]


@pytest.mark.slow
def test_sigkill_mid_write_keeps_the_previous_prediction_store(tmp_path):
    """A real kill while write_predictions writes a large store: the old one survives whole."""
    from packtwin.eval.predict import write_predictions

    p = tmp_path / "pred.zarr"
    write_predictions(xr.Dataset({"a": (("i",), np.ones(10, dtype="float32"))}), p)
    script = textwrap.dedent(f"""
        import numpy as np, xarray as xr
        from packtwin.eval.predict import write_predictions
        big = xr.Dataset({{f"v{{k}}": (("i", "j"), np.random.rand(2000, 2000).astype("float32"))
                          for k in range(40)}}).chunk({{"i": 100}})
        write_predictions(big, {str(p)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    tmp = outputs.temp_sibling(p).with_name(f".pred.zarr.packtwin-tmp-{proc.pid}")
    deadline = time.time() + 120
    while not (tmp / "v0").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the writer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = xr.open_zarr(p, consolidated=False)
    assert list(ds.data_vars) == ["a"] and float(ds["a"].min()) == 1.0  # the previous store
    write_predictions(xr.Dataset({"a": (("i",), np.full(10, 2.0, dtype="float32"))}), p)
    assert not tmp.exists()  # the dead writer's temporary is cleaned by the next write
    assert float(xr.open_zarr(p, consolidated=False)["a"].min()) == 2.0


def test_lock_refuses_a_second_writer_and_names_the_holder(tmp_path):
    s = tmp_path / "s.zarr"
    with lock.exclusive(s, command="first"):
        with pytest.raises(lock.LockedError, match=rf"pid {os.getpid()} on host .* \(started"):
            with lock.exclusive(s, command="second"):
                pass
    with lock.exclusive(s):  # released
        pass
    assert not lock.lock_path(s).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    s = tmp_path / "s.zarr"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock.lock_path(s).write_text(f'{{"pid": {dead}, "host": "h", "start": 0}}')
    with lock.exclusive(s) as held:
        assert held["stale"]["pid"] == int(dead)


class _Evil:
    """Unpickling this runs code (creates a file): what a hostile checkpoint would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_checkpoints_are_loaded_weights_only(tmp_path):
    import torch
    from lightning.fabric.utilities.cloud_io import _load as lightning_load

    from packtwin.eval import export
    from packtwin.model.checkpoint import read_checkpoint
    from packtwin.model.module import CheckpointMismatchError

    pwned = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Evil(pwned)}}, ckpt)
    with pytest.raises(CheckpointMismatchError, match="evil.ckpt.*refusing to unpickle"):
        export.load_net(str(ckpt))  # every reader goes through packtwin.model.checkpoint
    with pytest.raises(CheckpointMismatchError, match="[Ww]eights only load failed"):
        read_checkpoint(str(ckpt))
    # the Trainer's own --ckpt_path loading (weights_only left to torch's default)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        lightning_load(str(ckpt), map_location="cpu")
    assert not pwned.exists()


def test_claim_folder_reuses_evaluations_and_refuses_inputs_and_foreign_folders(tmp_path):
    old = tmp_path / "reports" / "reference"  # a committed report, written before markers
    old.mkdir(parents=True)
    (old / "report.md").write_text(outputs.REPORT_TITLE + "\n\n...")
    assert outputs.claim_folder(old, "evaluation") == old
    assert outputs.output_kind(old) == "evaluation"
    store_dir = tmp_path / "truth.zarr"
    store_dir.mkdir()
    with pytest.raises(outputs.OutputError, match="is the input"):
        outputs.claim_folder(store_dir / "eval", "evaluation", [store_dir])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my own report\n")
    with pytest.raises(outputs.OutputError, match="not a packtwin evaluation output"):
        outputs.claim_folder(mine, "evaluation")
    assert (mine / "report.md").read_text() == "# my own report\n"
