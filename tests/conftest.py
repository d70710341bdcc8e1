import os
import sys

import pytest

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory):
    """A small PyBaMM-free store following the schema (see packtwin.data.synthetic)."""
    from packtwin.data import synthetic

    path = tmp_path_factory.mktemp("synthetic") / "pack.zarr"
    synthetic.make_store(path)
    return path


@pytest.fixture
def cli_argv(monkeypatch):
    """Lightning warns when sys.argv holds pytest's own arguments."""
    monkeypatch.setattr(sys, "argv", ["packtwin"])


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models: one thread is as fast and does not spin against other jobs on the machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
