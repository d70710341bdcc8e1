"""Export of the twin for CPU deployment, checked against the eager model."""

import json

import numpy as np
import pytest
import torch

from packtwin.data import datamodule, store
from packtwin.eval import export
from packtwin.model.twinnet import TwinNet


@pytest.fixture(scope="module")
def info(synthetic_store):
    return datamodule.store_info(store.open_store(synthetic_store))


def small_net(info, physics: bool) -> TwinNet:
    torch.manual_seed(0)
    return TwinNet(4, info, physics=physics, hidden=16, n_modes=4, trunk_width=8).eval()


@pytest.mark.parametrize("physics", [True, False], ids=["physics", "data_only"])
def test_torchscript_export_matches_eager(tmp_path, info, physics):
    net = small_net(info, physics)
    out = tmp_path / "twin.pt"
    rep = export.export_model(net, out, "torchscript", batch=3, n_time=10, period_s=60.0)
    assert max(rep["max_rel_error"].values()) <= 1e-4
    meta = json.loads((tmp_path / "twin.pt.json").read_text())
    assert meta["batch"] == 3 and meta["n_time"] == 10 and meta["physics"] is physics
    # The artefact runs alone (no packtwin needed) and carries its metadata.
    extra = {"packtwin.json": ""}
    loaded = export.load_torchscript(out, extra)
    assert json.loads(extra["packtwin.json"])["outputs"] == list(export.OUTPUTS)
    f, c, v = export.example_inputs(net, 3, 10, 60.0, seed=5)
    with torch.no_grad():
        ref = net(f, c, v)
        got = loaded(f, c, v)
    for name, g in zip(export.OUTPUTS, got):
        np.testing.assert_allclose(g.numpy(), ref[name].numpy(), rtol=1e-5, atol=1e-6)


class TinyTwin(torch.nn.Module):
    """A stand-in with TwinNet's interface (buffers, n_cells, output names): tests the ONNX path
    of the exporter on a graph that torch.export accepts."""

    def __init__(self):
        super().__init__()
        from packtwin.quantities import FEATURES

        self.n_cells, self.physics = 3, False
        self.register_buffer("feat_mean", torch.ones(len(FEATURES)))
        self.register_buffer("feat_std", torch.ones(len(FEATURES)))
        self.register_buffer("stats_set", torch.tensor(True))
        self.embedding = torch.nn.Embedding(3, 4)
        self.gru = torch.nn.GRU(len(FEATURES) + 4, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 6)

    def forward(self, features, cell, valid):
        B, T, _ = features.shape
        x = (features - self.feat_mean) / self.feat_std * valid[..., None]
        h, _ = self.gru(torch.cat([x, self.embedding(cell)[:, None].expand(B, T, -1)], -1))
        z = self.head(h)
        out = {k: z[..., i] for i, k in enumerate(export.OUTPUTS)}
        out["theta_n"] = z[..., :1, None].expand(B, T, 2, 3)
        return out


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # onnx's GRU ref
def test_onnx_export_checked_with_the_reference_evaluator(tmp_path):
    pytest.importorskip("onnxscript")
    rep = export.export_model(TinyTwin().eval(), tmp_path / "twin.onnx", "onnx", batch=2,
                              n_time=12, period_s=60.0)
    assert max(rep["max_rel_error"].values()) <= 1e-4
    assert rep["n_time"] == 12 and (tmp_path / "twin.onnx").stat().st_size > 0


def test_mismatch_is_detected(info):
    net = small_net(info, physics=False)
    f, c, v = export.example_inputs(net, 2, 8, 60.0)
    with torch.no_grad():
        ref = export.ExportedTwin(net)(f, c, v)
    wrong = [r.numpy() * 1.01 for r in ref]
    with pytest.raises(export.ExportError, match="disagrees"):
        export._compare(ref, wrong, rtol=1e-4)


def test_example_inputs_are_physical_for_an_untrained_net(info):
    net = small_net(info, physics=True)
    assert not bool(net.stats_set)
    f, c, v = export.example_inputs(net, 4, 10, 30.0)
    from packtwin.quantities import FEATURES

    assert torch.all(f[..., FEATURES.index("temperature")] > 250)
    np.testing.assert_allclose(f[0, :, FEATURES.index("time")].numpy(), np.arange(10) * 30.0)
    with torch.no_grad():
        out = net(f, c, v)
    assert all(torch.isfinite(out[k]).all() for k in export.OUTPUTS)


def test_bad_format_and_missing_checkpoint(tmp_path, info):
    with pytest.raises(ValueError, match="format must be one of"):
        export.export_model(small_net(info, False), tmp_path / "x", "tflite")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.load_net(str(tmp_path / "none.ckpt"))
