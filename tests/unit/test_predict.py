"""predict_dataset / write_predictions / fit_new_cell_embeddings in-process (no CLI)."""

import numpy as np
import pytest
import torch
import xarray as xr

from packtwin import schema
from packtwin.data import store
from packtwin.data.datamodule import TwinDataModule
from packtwin.eval.predict import predict_dataset, write_predictions
from packtwin.model import losses
from packtwin.model.adapt import fit_new_cell_embeddings
from packtwin.model.module import TwinModule


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(synthetic_store):
    """A physics twin trained briefly on cells 0-2 (cell 3 is never seen)."""
    torch.manual_seed(0)
    dm = TwinDataModule(str(synthetic_store), train={"cells": [0, 1, 2]}, batch_size=8)
    dm.setup("fit")
    m = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
    m.net.set_stats(dm.stats)
    m.param_table.copy_(torch.as_tensor(dm.param_table(), dtype=torch.float32))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(3):
        for batch in dm.train_dataloader():
            out = m.net(batch["features"], batch["cell"], batch["valid"])
            loss = losses.total(losses.data_terms(m.net, out, batch, m.param_table), m.weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m, dm.ds


def test_predict_dataset_is_aligned_and_valid(trained, tmp_path, synthetic_store):
    module, truth = trained
    pred = predict_dataset(module, truth, scenarios=[0, 2], cells=[1, 3], checkpoint="x.ckpt",
                           truth_store=str(synthetic_store))
    assert schema.validate(pred, kind="prediction") == []
    assert pred.sizes["scenario"] == 2 and pred["cell"].values.tolist() == [1, 3]
    sub = truth.isel(scenario=[0, 2], cell=[1, 3])
    xr.testing.assert_equal(pred["ambient_temperature"].reset_coords(drop=True),
                            sub["ambient_temperature"].reset_coords(drop=True))
    np.testing.assert_array_equal(pred["time"].values, truth["time"].values)
    assert pred.attrs["variant"] == "physics" and pred.attrs["checkpoint"] == "x.ckpt"
    # estimates in physical units: concentrations within a plausible fraction of c_max
    c = pred["c_s_p"].values
    assert np.nanmax(np.abs(c)) < 2 * truth["c_s_p"].attrs["c_max"]
    # identified parameters in the truth table's units, near the training cells' values
    est = pred["param_neg_diffusivity"].values
    true = truth["param_neg_diffusivity"].values[[1, 3]]
    assert np.all(np.abs(np.log10(est / true)) < 0.5)
    path = write_predictions(pred, tmp_path / "p.zarr")
    back = store.open_store(path, kind="prediction")
    xr.testing.assert_allclose(back["soc"].load(), pred["soc"])


def test_new_cell_embeddings_are_fitted_without_hidden_truth(trained):
    module, truth = trained
    before = [p.detach().clone() for p in module.net.parameters()]
    blind = truth.drop_vars([v for v in schema.HIDDEN if v in truth])  # no hidden truth at all
    emb, steps = fit_new_cell_embeddings(module, blind, cells=[3], steps=10, lr=0.05, tol=1e-4,
                                         scenarios=[0, 2])
    assert emb.shape == (1, module.net.embed_dim) and 1 <= steps <= 10
    assert all(torch.equal(a, b) for a, b in zip(before, module.net.parameters()))  # frozen
    pred = predict_dataset(module, truth, cells=[3], embeddings={3: emb[0]})
    assert pred.attrs["adapted_cells"] == [3]
    assert np.isfinite(pred["voltage"].values).any()


def test_cells_beyond_the_embedding_table_need_fitted_embeddings(trained, tmp_path):
    from packtwin.data import synthetic

    module, _ = trained
    bigger = synthetic.make_store(tmp_path / "big.zarr", n_series=3, n_parallel=2)
    with pytest.raises(ValueError, match="fit embeddings for new cells"):
        predict_dataset(module, bigger, cells=[5])


def test_embed_raises_on_unknown_cells_never_clamps(trained):
    from packtwin.eval.predict import UnknownCellError, embed

    module, _ = trained
    net = module.net
    n = net.n_cells
    torch.testing.assert_close(embed(net, [0, n - 1]), net.embedding.weight[[0, n - 1]].detach())
    for bad in (n, n + 3, -1):
        with pytest.raises(UnknownCellError, match=f"cell {bad} has no embedding"):
            embed(net, [0, bad])
    fitted = torch.full((net.embed_dim,), 0.5)
    torch.testing.assert_close(embed(net, [n], {n: fitted})[0], fitted)


@pytest.mark.slow  # a fresh interpreter, ~8 s; CI runs it
def test_predict_and_evaluate_do_not_import_the_cli():
    import subprocess
    import sys

    code = ("import sys, packtwin.eval.predict, packtwin.eval.evaluate; "
            "assert 'packtwin.cli' not in sys.modules, 'packtwin.cli imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
