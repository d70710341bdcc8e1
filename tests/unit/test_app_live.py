"""The explorer's live twin with the project's real TwinModule checkpoint and predict_dataset."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

pytestmark = pytest.mark.slow  # imports torch + Lightning (~5 s)

from tests.unit.test_stream import tiny_checkpoint  # noqa: E402,F401 (fixture)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):  # noqa: F811
    """An (untrained) twin saved the way Lightning saves it, hooks included."""
    return tiny_checkpoint


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
