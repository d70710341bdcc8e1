"""The twin takes its field grids from the store's coordinates: a store kept on a coarser (or
finer) x grid than another trains the same way, and a checkpoint names a grid mismatch."""

import pytest
import torch

from packtwin.data import synthetic
from packtwin.data.datamodule import TwinDataModule
from packtwin.model.module import TwinModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("x_points", [(3, 2, 3), (9, 4, 6)])
def test_training_step_on_stores_with_other_x_grids(tmp_path, x_points):
    path = tmp_path / "pack.zarr"
    synthetic.make_store(path, n_series=1, n_parallel=2, n_time=24, n_cycles=2,
                         x_points=x_points)
    dm = TwinDataModule(str(path), train={"cells": [0, 1]}, batch_size=4)
    dm.setup("fit")
    assert len(dm.info["x_n"]) == x_points[0] and len(dm.info["x_p"]) == x_points[2]
    batch = next(iter(dm.train_dataloader()))
    assert batch["c_s_n"].shape[-2] == x_points[0]
    torch.manual_seed(0)
    m = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
    m.net.set_stats(dm.stats)
    out = m.net(batch["features"], batch["cell"], batch["valid"])
    assert out["theta_n"].shape == batch["c_s_n"].shape
    assert out["theta_p"].shape == batch["c_s_p"].shape
    assert torch.isfinite(m.training_step(batch, 0))
