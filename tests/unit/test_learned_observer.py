"""The learned observer's correction: the cell's lithium is conserved exactly, it is zero when the
innovation is zero, bounded per sample, and the network is differentiable through the core."""

import pytest
import torch

from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.learned_observer import (Correction, LearnedObserver, ObserverNet,
                                               apply_correction, features)
from packtwin.physics.particle_fv import particle_average

SMALL = CoreConfig(n_x_n=3, n_x_s=2, n_x_p=3, n_r=8)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _setup(n=3):
    core = ReducedCore(CoreParams.nominal(n), SMALL)
    torch.manual_seed(0)
    net = ObserverNet().double()
    for p in net.parameters():  # non-zero gains (a fresh net starts at zero on purpose)
        torch.nn.init.normal_(p, std=0.5)
    window = torch.full((n,), 0.7, dtype=torch.float64)
    state = core.initial_state(torch.tensor([12000.0, 18000.0, 25000.0], dtype=torch.float64))
    state, _ = core.advance(state, torch.full((n,), 5.0), torch.full((n,), 298.15), 60.0)
    return core, net, window, state


def test_correction_conserves_the_cells_lithium_and_is_bounded():
    core, net, window, state = _setup()
    e = torch.tensor([0.3, -0.2, 0.05], dtype=torch.float64)
    I, T = torch.full((3,), 5.0, dtype=torch.float64), torch.full((3,), 298.15, dtype=torch.float64)
    corr = net(features(core, state, I, T, e, window), e)
    assert (corr.d_soc.abs() <= net.bounds[0] + 1e-15).all()
    assert (corr.d_tilt.abs() <= net.bounds[1] + 1e-15).all()
    new = apply_correction(core, state, corr, window)
    n0, p0, e0 = core.lithium(state)
    n1, p1, e1 = core.lithium(new)
    assert torch.allclose(n1 + p1, n0 + p0, rtol=1e-13, atol=0)
    assert torch.equal(e1, e0) and torch.equal(new.L_sei, state.L_sei)
    # not vacuous: lithium moved between the electrodes and the state changed
    assert float((n1 - n0).abs().min().detach()) > 1e-6 * float(n0.min())
    assert float((new.c_n - state.c_n).abs().max()) > 10.0


def test_zero_innovation_gives_zero_correction():
    core, net, window, state = _setup()
    e = torch.zeros(3, dtype=torch.float64)
    I, T = torch.full((3,), 5.0, dtype=torch.float64), torch.full((3,), 298.15, dtype=torch.float64)
    corr = net(features(core, state, I, T, e, window), e)
    assert torch.equal(corr.d_soc, torch.zeros(3, dtype=torch.float64))
    new = apply_correction(core, state, corr, window)
    for a, b in zip(new, state):
        assert (a is None and b is None) or torch.equal(a, b)


def test_the_step_is_clamped_inside_the_window():
    core, _, window, state = _setup()
    big = Correction(torch.full((3,), 5.0, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    new = apply_correction(core, state, big, window)
    c = core.design.constants
    sto_n = particle_average(new.c_n, core.sphere).mean(1) / c.neg.c_max
    sto_p = particle_average(new.c_p, core.sphere).mean(1) / c.pos.c_max
    assert (sto_n <= 0.98 + 1e-9).all() and (sto_p >= 0.02 - 1e-9).all()
    # the limit binds (one electrode at its end) and the step still conserves lithium
    at_end = ((sto_n - 0.98).abs() < 1e-9) | ((sto_p - 0.02).abs() < 1e-9)
    assert at_end.all()
    n0, p0, _ = core.lithium(state)
    n1, p1, _ = core.lithium(new)
    assert torch.allclose(n1 + p1, n0 + p0, rtol=1e-13, atol=0)


def test_training_gradient_reaches_the_network_through_the_core():
    core, _, window, state = _setup()
    net = ObserverNet().double()  # zero gains: the correction is zero, its gradient is not
    obs = LearnedObserver(core, net, window)
    I = torch.full((3, 3), 5.0, dtype=torch.float64)
    T = torch.full((3, 3), 298.15, dtype=torch.float64)
    V = torch.full((3, 3), 3.6, dtype=torch.float64)
    states, volts = obs.run(state, I, T, V, 10.0)
    loss = (states[-1].c_n.mean() - 20000.0) ** 2
    loss.backward()
    g = net.mlp[-1].weight.grad
    assert g is not None and float(g.abs().max()) > 0


def test_closure_head_is_bounded_blind_to_the_innovation_and_moves_no_lithium():
    core, _, window, state = _setup()
    torch.manual_seed(1)
    net = ObserverNet(closure_v=0.02).double()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    I, T = torch.full((3,), 5.0, dtype=torch.float64), torch.full((3,), 298.15, dtype=torch.float64)
    f = features(core, state, I, T, torch.zeros(3, dtype=torch.float64), window)
    dv = net.closure_voltage(f)
    assert (dv.abs() <= 0.02 + 1e-15).all() and float(dv.abs().max()) > 1e-4
    f2 = f.clone()
    f2[:, 0] = 7.0  # another innovation: the closure does not read it
    assert torch.equal(net.closure_voltage(f2), dv)
    # the step's model voltage carries the closure; the state keeps the cell's lithium
    obs = LearnedObserver(core, net, window)
    V = torch.full((3,), 3.7, dtype=torch.float64)
    new, v_model, e, _ = obs.step(state, I, T, V, 10.0)
    pred, guess = core.advance(state, I, T, 10.0)
    v_core = core.measure(pred, I, T, guess).voltage
    f_pred = features(core, pred, I, T, torch.zeros(3, dtype=torch.float64), window)
    assert torch.allclose(v_model, v_core + net.closure_voltage(f_pred), atol=1e-12)
    assert torch.allclose(e, V - v_model, atol=1e-12)
    n0, p0, _ = core.lithium(state)
    n1, p1, _ = core.lithium(new)
    assert torch.allclose(n1 + p1, n0 + p0, rtol=1e-12, atol=0)
    # without a closure head the term is zero
    assert torch.equal(ObserverNet().double().closure_voltage(f), torch.zeros(3, dtype=torch.float64))
