"""The learned voltage closure: physical features of the core's state, a bounded fit that takes
up a smooth error, saved and read back with what it was fitted on, refused on another core, and
added to the subspace filter's measurement model."""

import pytest
import torch

from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.observer_stream import cell_soc_window
from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver
from packtwin.physics.voltage_closure import (FEATURES, MAX_CLOSURE_V, ClosureInfo,
                                              VoltageClosure, closure_features, fit_closure,
                                              load_closure)

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)
F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _run(core):
    """A 1C discharge then a 2C charge from 60 % SOC: outputs and electrolyte per sample."""
    c = core.design.constants
    lo, hi = cell_soc_window(core)
    state = core.initial_state((lo + 0.6 * (hi - lo)) * c.neg.c_max)
    I = torch.tensor([5.0] * 20 + [-10.0] * 10, dtype=F64)[None].expand(2, -1)
    T = torch.full_like(I, 298.15)
    _, out = core.simulate(state, I, T, 10.0)
    return out, I, T


def _features(core, out, I, T):
    from packtwin.physics.core import CoreOutputs

    B, K = I.shape
    flat = CoreOutputs(*(out[f].reshape(B * K, *out[f].shape[2:]) for f in CoreOutputs._fields))
    return closure_features(core, flat, out["c_e"].reshape(B * K, -1), I.reshape(-1),
                            T.reshape(-1))


def test_features_are_physical_and_finite():
    core = ReducedCore(CoreParams.nominal(2), TINY)
    out, I, T = _run(core)
    x = _features(core, out, I, T)
    assert x.shape == (I.numel(), len(FEATURES))
    assert torch.isfinite(x).all()
    col = dict(zip(FEATURES, x.T))
    torch.testing.assert_close(col["c_rate"], I.reshape(-1) / 5.0)
    assert ((col["sto_n"] > 0) & (col["sto_n"] < 1)).all()
    # a discharge releases lithium into the electrolyte in the negative electrode (its
    # collector side rises above the rest value), a charge takes it from there
    assert float(col["ln_ce_n_cc"][10]) > 0 > float(col["ln_ce_n_cc"][-1])


def test_fit_takes_up_a_smooth_error_and_is_bounded(tmp_path):
    core = ReducedCore(CoreParams.nominal(2), TINY)
    out, I, T = _run(core)
    x = _features(core, out, I, T)
    col = dict(zip(FEATURES, x.T))
    y = 0.008 * col["c_rate"] + 0.01 * (col["sto_n"] - 0.5)  # a smooth "model-form" error [V]
    info = ClosureInfo(2, 2, False)
    net = fit_closure(x, y, info, hidden=8, steps=400, val=(x, y))
    with torch.no_grad():
        err = float(((net(x) - y) ** 2).mean().sqrt())
        before = float((y ** 2).mean().sqrt())
    assert err < 0.25 * before
    assert info.train_rmse_mv == pytest.approx(1e3 * err, rel=1e-6)
    assert info.samples == x.shape[0]
    with torch.no_grad():  # far outside the fit: still within the bound
        assert float(net(100.0 * x).abs().max()) <= MAX_CLOSURE_V + 1e-12
    path = tmp_path / "c.pt"
    net.save(path)
    back = load_closure(path)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
    assert back.info.train_rmse_mv == info.train_rmse_mv


def test_bad_files_and_other_cores_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="fit_voltage_closure"):
        load_closure(tmp_path / "none.pt")
    torch.save({"format": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a packtwin-voltage-closure"):
        load_closure(tmp_path / "x.pt")
    net = VoltageClosure(4, ClosureInfo(12, 12, True))
    net.save(tmp_path / "c.pt")
    core = ReducedCore(CoreParams.nominal(2), TINY)
    with pytest.raises(ValueError, match="n_x_n=12, n_x_p=12, plating=True; this core has "
                                         "n_x_n=2"):
        SubspaceObserver(core, torch.ones(2), SubspaceConfig(closure=str(tmp_path / "c.pt")))


def test_the_filters_model_voltage_carries_the_closure(tmp_path):
    core = ReducedCore(CoreParams.nominal(2), TINY)
    net = VoltageClosure(4, ClosureInfo(2, 2, False))
    with torch.no_grad():  # a constant +4 mV closure: last layer zero, its bias 0.4 (10 mV unit)
        net.net[-1].weight.zero_()
        net.net[-1].bias.fill_(0.4)
    net.save(tmp_path / "c.pt")
    lo, hi = cell_soc_window(core)
    c = core.design.constants
    state = core.initial_state((lo + 0.5 * (hi - lo)) * c.neg.c_max)
    I, T = torch.full((2,), 5.0, dtype=F64), torch.full((2,), 298.15, dtype=F64)
    cfg = SubspaceConfig(reprior_soc=0.0, line_search=False)
    plain = SubspaceObserver(core, hi - lo, cfg)
    closed = SubspaceObserver(core, hi - lo, SubspaceConfig(**{**cfg.__dict__,
                                                               "closure": str(tmp_path / "c.pt")}))
    V = torch.full((2,), float("nan"), dtype=F64)  # no correction: the model voltages alone
    _, v0, _ = plain.step(plain.init(state, 5.0), I, T, V, 10.0)
    _, v1, _ = closed.step(closed.init(state, 5.0), I, T, V, 10.0)
    shift = MAX_CLOSURE_V * torch.tanh(torch.tensor(0.004 / MAX_CLOSURE_V, dtype=F64))
    torch.testing.assert_close(v1 - v0, shift.expand(2), rtol=0, atol=1e-12)
