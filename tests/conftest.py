import os
import sys

import pytest

os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")


def pytest_configure(config):
    """Under pytest-xdist (the default, pyproject's addopts) each worker gets its share of the
    cores for torch's intra-op threads: two workers of two threads each on two cores spin
    against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        # the cores this process may run on (a container's cpuset), as xdist's "auto" counts them
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // workers))


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
