"""Real-browser fixtures: Debian's Chromium driven by pytest-playwright, the app in a subprocess.

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium`` (CI installs it in
scripts/test.sh). Without it the tests fail with a message saying so; they do not skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

CHROMIUM = os.environ.get("PACKTWIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Templates link web fonts; resolve nothing but loopback so the browser never leaves the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's package "
                    f"(apt-get install chromium) or set PACKTWIN_CHROMIUM; never 'playwright install'.")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS,
            "headless": True}


def make_prediction_store(truth_path: Path, out: Path, variant: str, rel_noise: float,
                          seed: int = 0) -> Path:
    """A prediction store shaped like ``packtwin predict``'s: the truth's hidden variables and
    voltage, perturbed by a smooth relative error, plus perturbed per-cell parameters."""
    from packtwin import schema
    from packtwin.data import store

    truth = store.open_store(truth_path)
    rng = np.random.default_rng(seed)
    names = ["c_s_n", "c_s_p", "sei_thickness_avg", "plating_margin", "soc", "voltage"]
    keys = schema.param_keys_in(truth)
    ds = truth[names + [schema.param_var(k) for k in keys]].load()
    for name in names:
        bias = 1 + rel_noise * rng.standard_normal(ds.sizes[schema.CELL])
        ds[name] = ds[name] * xr.DataArray(bias, dims=schema.CELL)
    for k in keys:
        ds[schema.param_var(k)] = ds[schema.param_var(k)] * (
            1 + rel_noise * rng.standard_normal(ds.sizes[schema.CELL]))
    ds = schema.apply_attrs(ds)
    ds.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": variant}
    ds.to_zarr(out, mode="w", **store.ZARR_KW)
    return out


def sei_follows_ambient(src: Path, out: Path) -> Path:
    """A copy of a synthetic store whose SEI grows faster when warmer (the synthetic SEI ignores
    the scenario), so a scenario change moves the SEI plot's data as it does in a real store."""
    from packtwin import schema
    from packtwin.data import store

    ds = store.open_store(src).load()
    factor = xr.DataArray(1.0 + (ds["ambient_temperature"].values - 10.0) / 15.0,
                          dims=schema.SCENARIO)
    for name in ("sei_thickness_end", "sei_thickness_avg", "sei_thickness"):
        ds[name] = ds[name] * factor
    ds = schema.apply_attrs(ds)
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(out, mode="w", **store.ZARR_KW)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_stores(tmp_path_factory):
    from packtwin.data import synthetic

    root = tmp_path_factory.mktemp("app_e2e")
    truth = root / "pack.zarr"
    synthetic.make_store(root / "flat.zarr", n_series=4, n_parallel=4)
    sei_follows_ambient(root / "flat.zarr", truth)
    preds = [make_prediction_store(truth, root / "physics.zarr", "physics", 0.01, seed=1),
             make_prediction_store(truth, root / "data_only.zarr", "data_only", 0.03, seed=2)]
    return truth, preds


@contextlib.contextmanager
def serve_app(app_args: list[str], log_path: Path, command: str = "app"):
    """(URL, server log) of ``packtwin <command> <app_args>`` (``app``, or ``replay ... --app``)
    on a free loopback port; stopped after."""
    port = free_port()
    cmd = [sys.executable, "-m", "packtwin", command, *app_args, "--port", str(port), "--no-show"]
    with open(log_path, "w+") as log:
        # A file, not a pipe nobody reads: a full pipe would block the server mid-test.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 45
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"'packtwin {command}' exited with {proc.returncode}:\n"
                                       f"{log_path.read_text()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"'packtwin {command}' did not listen on port "
                                           f"{port} in 45 s")
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/", log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def served_app(app_stores, tmp_path_factory):
    truth, preds = app_stores
    log = tmp_path_factory.mktemp("app_server") / "server.log"
    with serve_app(["--store", str(truth), "--predictions", *map(str, preds)], log) as served:
        yield served


@pytest.fixture
def served_missing_store(tmp_path):
    with serve_app(["--store", str(tmp_path / "missing.zarr")], tmp_path / "server.log") as served:
        yield served


@pytest.fixture
def open_app(page):
    """``open_app(url, console=True)``: load the served app in a large viewport; returns the list
    that collects the page's uncaught errors (and console errors unless ``console=False``)."""

    def go(url: str, console: bool = True) -> list[str]:
        errors: list[str] = []
        if console:
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_viewport_size({"width": 1700, "height": 1200})
        page.goto(url, timeout=30_000)
        return errors

    return go
