"""Streaming twin (packtwin.model.stream): sample by sample equals the window forward."""

import pytest
import torch

from packtwin.data import datamodule, store
from packtwin.eval.export import example_inputs
from packtwin.model.stream import OUTPUTS, TwinStream
from packtwin.model.twinnet import TwinNet
from packtwin.physics.conservation import average_concentration
from packtwin.quantities import ELECTRODES, FEATURES, Features


@pytest.fixture(scope="module")
def info(synthetic_store):
    return datamodule.store_info(store.open_store(synthetic_store))


def tiny_net(info, physics: bool, running: bool = True) -> TwinNet:
    torch.manual_seed(3)
    net = TwinNet(4, info, physics=physics, hidden=16, n_modes=4, trunk_width=8,
                  running_initial_state=running).eval()
    with torch.no_grad():  # move the heads off their small init so every output varies
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
        # normalisation of a plausible 5 Ah cell (an untrained net's 0 / 1 saturates its heads)
        stats = {"voltage": (3.7, 0.3), "current": (5.0, 4.0), "temperature": (298.15, 4.0),
                 "ambient_temperature": (298.15, 1.0), "time": (600.0, 400.0),
                 "charge_passed": (3000.0, 3000.0), "cycle": (1.0, 1.0)}
        for k, name in enumerate(FEATURES):
            net.feat_mean[k], net.feat_std[k] = stats[name]
        net.stats_set.fill_(True)
    return net


def window_outputs(net, feats, cells):
    with torch.no_grad():
        out = net(feats, cells)
    for e in ELECTRODES:
        r = getattr(net, e.r_dim)
        out[f"avg_{e.key}"] = average_concentration(out[e.theta], r).mean(-1)
    return out


def stream_outputs(stream, feats):
    f = Features.unpack(feats)
    dt = torch.diff(f.time, dim=1, prepend=f.time[:, :1])
    steps = [stream.step(f.voltage[:, k], f.current[:, k], f.temperature[:, k], dt[:, k],
                         f.ambient_temperature[:, k], f.cycle[:, k])
             for k in range(feats.shape[1])]
    return {n: torch.stack([s[n] for s in steps], 1) for n in OUTPUTS}


@pytest.mark.parametrize("physics,running", [(True, True), (True, False), (False, True)],
                         ids=["physics", "physics-first-sample-state", "data-only"])
def test_streaming_a_window_equals_the_window_forward(info, physics, running, one_torch_thread):
    net = tiny_net(info, physics, running)
    feats, cells, _ = example_inputs(net, 3, 40, 30.0, seed=2)
    ref = window_outputs(net, feats, cells)
    stream = TwinStream(net, cells=cells)
    got = stream_outputs(stream, feats)
    for name in OUTPUTS:
        a, b = ref[name], got[name]
        assert a.shape == b.shape, name
        assert a.std() > 0, f"{name} does not vary: the comparison would prove little"
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * float(a.abs().max()), msg=name)
    # reset: a second pass over the same window gives the same estimates
    stream.reset()
    again = stream_outputs(stream, feats)
    torch.testing.assert_close(again["voltage"], got["voltage"], rtol=0, atol=0)


def test_the_stream_carries_state(info, one_torch_thread):
    """The same sample gives another estimate after a different history (not a per-sample map)."""
    net = tiny_net(info, True)
    feats, cells, _ = example_inputs(net, 2, 12, 30.0, seed=4)
    other = feats.clone()
    other[:, 1:6, 1] += 5.0  # another current over a few samples
    a = stream_outputs(TwinStream(net, cells=cells), feats)
    b = stream_outputs(TwinStream(net, cells=cells), other)
    assert not torch.allclose(a["soc"][:, -1], b["soc"][:, -1])


def test_bad_shapes_are_named(info):
    net = tiny_net(info, False)
    stream = TwinStream(net, n_cells=3)
    with pytest.raises(ValueError, match=r"current has shape \(2,\), expected \(3,\)"):
        stream.step(torch.full((3,), 3.7), torch.zeros(2), 298.0, 1.0)
    with pytest.raises(ValueError, match=r"embeddings have shape \(3, 2\)"):
        TwinStream(net, embeddings=torch.zeros(3, 2))


def save_checkpoint(net_module, path):
    """Save a TwinModule the way Lightning does (hooks included), without training it."""
    import lightning

    ckpt = {"state_dict": net_module.state_dict(), "hyper_parameters": dict(net_module.hparams),
            "pytorch-lightning_version": lightning.__version__}
    net_module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(synthetic_store, tmp_path_factory):
    """An untrained physics twin with the synthetic store's statistics, as a checkpoint file."""
    from packtwin.data.datamodule import TwinDataModule
    from packtwin.model.module import TwinModule

    torch.manual_seed(0)
    dm = TwinDataModule(str(synthetic_store), batch_size=8)
    dm.setup("fit")
    module = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
    module.net.set_stats(dm.stats)
    return save_checkpoint(module, tmp_path_factory.mktemp("twin") / "twin.ckpt")
