"""Export of the streaming step (packtwin.eval.export_stream): TorchScript and ONNX (onnxruntime)
equal the eager stream within 1e-5 relative, on other pack sizes than the traced one."""

import json

import numpy as np
import pytest
import torch

from packtwin import cli
from packtwin.eval import export, export_stream
from packtwin.model import stream
from packtwin.quantities import Features
from tests.unit.test_stream import info, tiny_checkpoint, tiny_net  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTOL = 1e-5


def pack_inputs(net, n_cells: int, n_time: int, seed: int):
    feats, cells, _ = export.example_inputs(net, n_cells, n_time, 30.0, seed=seed)
    return Features.unpack(feats), net.embedding.weight.detach()[cells]


def assert_close(got, ref, name):
    ref = ref.detach().numpy()
    err = np.abs(np.asarray(got) - ref).max() / max(np.abs(ref).max(), 1e-12)
    assert err <= RTOL, f"{name}: relative error {err:.3g}"


def stream_through(run_start, run_step, net, n_cells=5, n_time=6, seed=7):
    """Stream a pack through an exported (start, step) and the eager TwinStream side by side."""
    f, emb = pack_inputs(net, n_cells, n_time, seed)
    eager = stream.TwinStream(net, embeddings=emb)
    state = run_start(f.voltage[:, 0].clone(), torch.tensor(0.0))
    dt = torch.full((n_cells,), 30.0)
    for k in range(n_time):
        ref = eager.step(f.voltage[:, k], f.current[:, k], f.temperature[:, k], dt,
                         f.ambient_temperature[:, k], f.cycle[:, k])
        res = run_step(f.voltage[:, k], f.current[:, k], f.temperature[:, k], dt,
                       f.ambient_temperature[:, k], f.cycle[:, k], emb, *state)
        for i, name in enumerate(stream.OUTPUTS):
            assert_close(res[i], ref[name], f"{name} at sample {k}")
        state = [torch.as_tensor(np.asarray(s)) for s in res[len(stream.OUTPUTS):]]


@pytest.mark.parametrize("physics", [True, False], ids=["physics", "data_only"])
def test_torchscript_stream_equals_eager(tmp_path, info, physics):
    net = tiny_net(info, physics)
    rep = export_stream.export_stream(net, tmp_path / "s.pt", "torchscript", n_cells=3,
                                      period_s=30.0)
    assert max(rep["max_rel_error"].values()) <= RTOL
    extra = {"packtwin.json": ""}
    ts = export.load_torchscript(tmp_path / "s.pt", extra)
    assert json.loads(extra["packtwin.json"])["outputs"] == list(stream.EXPORT_OUTPUTS)
    with torch.no_grad():
        stream_through(ts.start, ts, net)


def _onnx_case(tmp_path, info, physics):
    net = tiny_net(info, physics)
    out = tmp_path / "s.onnx"
    rep = export_stream.export_stream(net, out, "onnx", n_cells=3, period_s=30.0)
    assert max(rep["max_rel_error"].values()) <= RTOL
    step, start = (export_stream.onnx_session(p) for p in (out, out.with_suffix(".start.onnx")))
    names = [i.name for i in step.get_inputs()]
    assert names == list(stream.STEP_INPUTS + stream.STATE)

    def run(sess):
        return lambda *a: sess.run(None, {i.name: np.asarray(t, dtype=np.float32)
                                          for i, t in zip(sess.get_inputs(), a)})
    stream_through(run(start), run(step), net, n_cells=6)  # traced with 3 cells: dynamic axis


@pytest.mark.slow  # torch.export + the ONNX translation: ~10-25 s on 2 cores
def test_onnx_stream_equals_eager_data_only(tmp_path, info):
    _onnx_case(tmp_path, info, physics=False)


@pytest.mark.slow  # the start graph's unrolled OCV bisection takes ~1-2 min to export
def test_onnx_stream_equals_eager_physics(tmp_path, info):
    _onnx_case(tmp_path, info, physics=True)


def test_cli_exports_the_stream(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "stream.pt"
    rc = cli.main(["export", "--stream", "--ckpt", str(tiny_checkpoint), "--out", str(out),
                   "--batch", "2"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    rep = json.loads(printed.out)
    assert rep["traced_cells"] == 2 and max(rep["max_rel_error"].values()) <= RTOL
    assert json.loads((tmp_path / "stream.pt.json").read_text())["kind"] == "stream"
