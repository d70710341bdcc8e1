"""Real kills of ``packtwin generate`` (slow: PyBaMM packs in subprocesses)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from packtwin.data import lock, outputs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


# ``packtwin`` with the store's creation held open: the parameter table is written into the
# temporary sibling, then the process sleeps before the rename. The sibling otherwise lives for
# tens of milliseconds, and polling for it missed it once (CI, stop 36).
SLOW_CREATION = """
import sys, time
from packtwin.data import store
write = store.write_region
def held(path, *args, **kwargs):
    write(path, *args, **kwargs)
    if ".packtwin-tmp-" in str(path):
        time.sleep(120)
store.write_region = held
from packtwin.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start(store: Path, *extra: str, hold_creation: bool = False) -> subprocess.Popen:
    entry = ["-c", SLOW_CREATION] if hold_creation else ["-m", "packtwin"]
    cmd = [sys.executable, *entry, "generate", "--preset", "tiny", "--store", str(store),
           "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_kill_during_store_creation_then_rerun_resumes(tmp_path):
    store = tmp_path / "s.zarr"
    proc = _start(store, "--workers", "1", hold_creation=True)
    tmp = store.with_name(f".s.zarr.packtwin-tmp-{proc.pid}")
    try:
        deadline = time.time() + 120
        while not (tmp / "param_neg_c_init").exists() and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:
            pytest.fail(f"generate ended without a temporary sibling holding the parameter "
                        f"table: {proc.stdout.read()}")
        assert tmp.exists(), "the store's temporary sibling was never seen"
        os.killpg(proc.pid, signal.SIGKILL)  # mid-creation: the table written, not renamed
    finally:
        _kill_group(proc)
    assert not store.exists()  # no half-made store that every rerun would reject
    assert lock.holder(store)["pid"] == proc.pid  # a stale lock of a dead process is left
    # the rerun takes the lock over, cleans the temporary and creates the store; stop it after
    # its first scenario
    proc = _start(store, "--workers", "1")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("scenario ") and " written" in line:
                break
    finally:
        _kill_group(proc)
    assert any("taking over the lock" in ln for ln in lines), lines
    assert not tmp.exists()
    ds = xr.open_zarr(store, consolidated=False)
    assert np.isfinite(ds["status"].values).sum() == 1
    assert np.isfinite(ds["param_neg_c_init"].values).all()  # the table came with the store
    assert outputs.output_kind(store) == "truth"
    # a store an older version left with an empty parameter table is repaired on resume
    import zarr

    table = zarr.open_array(str(store / "param_neg_c_init"), mode="r+")
    drawn = table[:].copy()
    table[:] = np.nan
    proc = _start(store, "--workers", "1")
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "to run" in line:
                break
    finally:
        _kill_group(proc)
    assert any("unwritten parameter table" in ln for ln in lines), lines
    np.testing.assert_array_equal(zarr.open_array(str(store / "param_neg_c_init"))[:], drawn)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def test_pool_workers_end_with_their_parent_and_a_second_writer_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    proc = _start(store, "--workers", "2")
    try:
        for line in proc.stdout:
            if "to run" in line:
                break
        deadline = time.time() + 60
        workers = []
        while len(workers) < 2 and time.time() < deadline:
            workers = _children(proc.pid)
            time.sleep(0.1)
        assert len(workers) >= 2, workers
        second = subprocess.run([sys.executable, "-m", "packtwin", "generate", "--preset", "tiny",
                                 "--store", str(store), "--quiet", "--workers", "1"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert f"is being written by pid {proc.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        os.kill(proc.pid, signal.SIGKILL)  # only the parent
        deadline = time.time() + 20
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
            time.sleep(0.1)
        alive = [w for w in workers if Path(f"/proc/{w}/stat").exists()
                 and (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]
        assert alive == [], f"workers {alive} outlived their parent"
    finally:
        _kill_group(proc)
