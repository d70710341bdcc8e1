"""The explorer's live twin with the project's real TwinModule checkpoint and predict_dataset."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

pytestmark = pytest.mark.slow  # imports torch + Lightning (~5 s)


@pytest.fixture(scope="module")
def checkpoint(synthetic_store, tmp_path_factory):
    """An (untrained) twin saved the way Lightning saves it, hooks included."""
    import lightning
    import torch

    from packtwin.data.datamodule import TwinDataModule
    from packtwin.model.module import TwinModule

    torch.manual_seed(0)
    dm = TwinDataModule(str(synthetic_store), batch_size=8)
    dm.setup("fit")
    module = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
    module.net.set_stats(dm.stats)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__}
    module.on_save_checkpoint(ckpt)
    path = tmp_path_factory.mktemp("twin") / "twin.ckpt"
    torch.save(ckpt, path)
    return path


def test_live_twin_from_checkpoint_fills_prediction_views(synthetic_store, checkpoint):
    from packtwin import schema
    from packtwin.app.layout import build_app
    from packtwin.app.state import PRED, TRUE

    from packtwin.app.serve import twin_functions

    load, predict = twin_functions()  # what 'packtwin app' injects
    ex = build_app(synthetic_store, checkpoint=checkpoint, live_load=load, live_predict=predict)
    assert ex.sources.warnings == [] and ex.data.sel.variant == "live"
    pred = ex.maps.at_time[PRED][()]
    true = ex.maps.at_time[TRUE][()]
    zp = np.asarray(pred.dimension_values(2, flat=False))
    assert zp.shape == np.asarray(true.dimension_values(2, flat=False)).shape
    assert np.isfinite(zp).all()
    assert pred.opts.get().kwargs["title"].startswith("Predicted (live) · cell 0")
    table = ex.params.table.object
    assert "live" in table.columns and len(table) == len(schema.param_keys_in(ex.data.truth))
    before = zp
    ex.widgets["ambient"].value = 40.0  # another scenario: predicted on demand
    after = np.asarray(ex.maps.at_time[PRED][()].dimension_values(2, flat=False))
    assert np.isfinite(after).all() and not np.allclose(after, before)


def test_corrupt_checkpoint_is_a_page_message(synthetic_store, tmp_path):
    from packtwin.app.layout import build_app

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00not a checkpoint")
    from packtwin.app.serve import twin_functions

    load, predict = twin_functions()
    ex = build_app(synthetic_store, checkpoint=bad, live_load=load, live_predict=predict)
    assert ex.data is not None and ex.data.sel.variant is None
    text = " ".join(a.object for a in ex.messages)
    assert "Live twin unavailable" in text and "bad.ckpt" in text
