"""The subspace observer streamed sample by sample: the same estimates as the whole-sequence call
and as ``packtwin evaluate``'s subspace row, on a tiny log the core made (started under load,
10 mV noise, a wrong first-voltage prior); bad input refused with the estimate kept."""

import numpy as np
import pytest
import torch

from packtwin.eval.observer_predict import _run_subspace
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.ekf import flatten
from packtwin.physics.subspace_stream import SubspaceStream

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)
F64 = torch.float64
GRID = {"x_n": np.linspace(2e-6, 83e-6, 3), "r_n": np.linspace(0, 1, 4),
        "x_p": np.linspace(98e-6, 166e-6, 3), "r_p": np.linspace(0, 1, 4)}
FIELDS = ("voltage", "innovation", "soc", "c_n_surf", "c_p_surf", "c_n_avg", "c_p_avg",
          "plating_margin", "c_s_n", "c_s_p")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def small_log():
    """Two cells from rest at 70 % / 50 %, 5 min at 1C, then 6 samples of 10 s (2C, rest,
    regen, 1C): V [2, 7] with noise, sample 0 under load."""
    p = CoreParams.nominal(2)
    p.R_contact = p.R_contact * torch.tensor([1.0, 1.5], dtype=F64)
    core = ReducedCore(p, TINY)
    c = core.design.constants
    rest = core.initial_state(torch.tensor([0.7, 0.5], dtype=F64) * 0.9 * c.neg.c_max)
    T = torch.full((2, 5), 298.15, dtype=F64)
    s, _ = core.simulate(rest, torch.full((2, 5), 5.0, dtype=F64), T, 60.0)
    I = torch.tensor([5.0] + [10.0] * 2 + [0.0] + [-2.5] * 2 + [5.0], dtype=F64)
    I = I[None].expand(2, -1).clone()
    _, out = core.simulate(s, I, torch.full_like(I, 298.15), 10.0)
    g = torch.Generator().manual_seed(1)
    V = out["voltage"] + 0.01 * torch.randn(I.shape, generator=g, dtype=F64)
    return core, V, I, torch.full_like(I, 298.15) + torch.tensor([[0.0], [2.0]], dtype=F64)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_stream_equals_the_whole_sequence_call_and_the_evaluate_row(small_log):
    core, V, I, T = small_log
    a, b = (SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID)
            for _ in range(2))
    steps = [a.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, V.shape[1])]
    seq = b.run(V[:, 1:], I[:, 1:], T[:, 1:], 10.0)
    for s, q in zip(steps, seq, strict=True):
        for name in FIELDS:
            assert torch.allclose(getattr(s, name), getattr(q, name), rtol=1e-10, atol=1e-12), name
    assert torch.allclose(flatten(a.estimate.state), flatten(b.estimate.state), rtol=1e-10)
    assert torch.allclose(a.estimate.P, b.estimate.P, rtol=1e-10, atol=1e-15)
    # the training path (SubspaceObserver.run, whole sequence): the same estimates
    start = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID).estimate
    states, volts, est, outs = a.observer.run(start, I[:, 1:], T[:, 1:], V[:, 1:], 10.0,
                                              outputs=True)
    assert torch.allclose(volts, torch.stack([s.voltage for s in steps], 1), rtol=1e-10)
    assert torch.allclose(flatten(est.state), flatten(a.estimate.state), rtol=1e-10)
    assert torch.allclose(torch.stack([o.c_n_surf for o in outs], 1),
                          torch.stack([s.c_n_surf for s in steps], 1), rtol=1e-10)
    assert not a.restarts.any()
    # packtwin evaluate's subspace row (observer_predict) on the same log: the same numbers
    grid = {k: torch.as_tensor(v, dtype=F64) for k, v in GRID.items()}
    rows, restarts, _, _ = _run_subspace(core.params, {"voltage": V, "current": I, "temperature": T},
                                      np.array([V.shape[1]] * 2), 10.0, grid, TINY)
    assert not restarts.any()
    for name in ("soc", "voltage", "c_s_n", "c_s_p", "plating_margin"):
        got = torch.stack([getattr(s, name) for s in steps], 1).numpy()
        np.testing.assert_allclose(got, rows[name][:, 1:], rtol=1e-10, atol=1e-9, err_msg=name)
    # not vacuous: the prior's SOC was off (large first innovation), the filter moved it
    assert float(steps[0].innovation.abs().max()) > 0.02
    assert steps[-1].c_s_n.shape == (2, 3, 4)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_stream_restarts_a_diverged_cell_where_the_evaluate_row_does(small_log):
    """A voltage sensor 1 V off on cell 1 from sample 2: 3 samples (30 s) over 0.5 V off, the
    stream restarts that cell at sample 4 from the prior read there, as evaluate's row with the
    same prior does, and gives its numbers; cell 0 goes on untouched."""
    core, V, I, T = small_log
    V = V.clone()
    V[1, 2:] += 1.0
    a, b = (SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID)
            for _ in range(2))
    steps = [a.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, V.shape[1])]
    assert a.restarts.tolist() == [0, 1]
    assert [float(s.innovation[1].abs()) > 0.5 for s in steps[:3]] == [False, True, True]
    seq = b.run(V[:, 1:], I[:, 1:], T[:, 1:], 10.0)
    assert b.restarts.tolist() == [0, 1]
    for s, q in zip(steps, seq, strict=True):
        for name in FIELDS:
            assert torch.equal(getattr(s, name), getattr(q, name)), name
    grid = {k: torch.as_tensor(v, dtype=F64) for k, v in GRID.items()}
    rows, restarts, _, _ = _run_subspace(core.params, {"voltage": V, "current": I,
                                                       "temperature": T},
                                         np.array([V.shape[1]] * 2), 10.0, grid, TINY,
                                         prior_name="loaded")
    assert restarts.tolist() == [0, 1]
    for name in ("soc", "voltage", "c_s_n", "c_s_p", "plating_margin"):
        got = torch.stack([getattr(s, name) for s in steps], 1).numpy()
        np.testing.assert_allclose(got, rows[name][:, 1:], rtol=1e-10, atol=1e-9, err_msg=name)
    # cell 1 at sample 4 is the prior read there (a fresh stream started at sample 4)
    fresh = SubspaceStream.from_first_sample(core, V[:, 4], I[:, 4], T[:, 4], GRID)
    v4 = core.measure(fresh.estimate.state, I[:, 4], T[:, 4]).voltage
    assert float(steps[3].voltage[1]) == pytest.approx(float(v4[1]), abs=1e-9)
    assert torch.equal(a.estimate.P[1], b.estimate.P[1])
    clean = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0])
    with pytest.raises(ValueError, match="restart_prior"):
        SubspaceStream(clean.observer, clean.estimate, restart_prior="loaded_window")


def test_bad_sample_is_refused_and_the_estimate_kept(small_log):
    core, V, I, T = small_log
    stream = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0])
    before = stream.estimate
    with pytest.raises(ValueError, match=r"NaN/inf current in cells \[1\]"):
        stream.step(V[:, 1], torch.tensor([5.0, float("nan")], dtype=F64), T[:, 1], 10.0)
    with pytest.raises(ValueError, match="expected \\[cells\\] with 2 cells"):
        stream.step(V[:1, 1], I[:1, 1], T[:1, 1], 10.0)
    assert stream.estimate is before
    with pytest.raises(ValueError, match=r"cells \[0\]"):
        SubspaceStream.from_first_sample(core, torch.tensor([float("nan"), 3.7]), I[:, 0], T[:, 0])
    # a NaN voltage: that cell goes uncorrected, the other is filtered
    est = stream.step(torch.tensor([float("nan"), float(V[1, 1])], dtype=F64), I[:, 1], T[:, 1],
                      10.0)
    assert torch.isnan(est.innovation[0]) and torch.isfinite(est.innovation[1])
    assert torch.equal(stream.estimate.P[0], before.P[0] + torch.diag(stream.observer._q))


def test_loaded_prior_reproduces_the_first_voltage(small_log):
    """prior="loaded" (the default): the filter's start state is the one the loaded inversion
    read V0 with, so its model voltage at sample 0 is V0; the OCV prior's is far off (the load's
    overpotential was read as lost charge). An unknown prior is refused."""
    core, V, I, T = small_log
    out = {}
    for prior in ("loaded", "ocv"):
        s = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], prior=prior)
        out[prior] = core.measure(s.estimate.state, I[:, 0], T[:, 0]).voltage
    assert torch.allclose(out["loaded"], V[:, 0], atol=1e-6)
    assert float((out["ocv"] - V[:, 0]).abs().min()) > 0.02
    with pytest.raises(ValueError, match="prior"):
        SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], prior="rested")


# -- the speed work (issue 9's streaming target): what it must not change -------------------

def test_stream_step_is_the_reference_filter_and_a_cold_measurement(small_log):
    """The default stream (inference mode, the observer's step_outputs) gives bit for bit what
    the reference formula gives: SubspaceObserver.step, then a cold core.measure of the
    corrected state (the pre-speed-work stream, and evaluate's rows)."""
    core, V, I, T = small_log
    a, b = (SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID)
            for _ in range(2))
    est = b.estimate
    for k in range(1, V.shape[1]):
        got = a.step(V[:, k], I[:, k], T[:, k], 10.0)
        with torch.no_grad():
            est, v_model, _ = b.observer.step(est, I[:, k], T[:, k], V[:, k], 10.0)
            out = core.measure(est.state, I[:, k], T[:, k])
        assert torch.equal(got.voltage, v_model)
        for name in ("c_n_surf", "c_p_surf", "c_n_avg", "c_p_avg", "plating_margin"):
            assert torch.equal(getattr(got, name), getattr(out, name)), (k, name)
        assert torch.equal(flatten(a.estimate.state), flatten(est.state))
        assert torch.equal(a.estimate.P, est.P)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_warm_start_stays_with_the_reference_and_its_two_paths_agree(small_log):
    """The opt-in SubspaceConfig(warm_start=True) (Newton warm starts): its stream and its
    whole-sequence call give the same estimates, and both stay within Newton-tolerance of the
    cold reference (here at most 2e-7 mol/m3 and 5e-12 V apart; a divergence is a bug)."""
    from packtwin.physics.subspace_observer import SubspaceConfig

    core, V, I, T = small_log
    fast = SubspaceConfig(warm_start=True)
    ref, a, b = (SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID, config=c)
                 for c in (SubspaceConfig(), fast, fast))
    want = [ref.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, V.shape[1])]
    steps = [a.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, V.shape[1])]
    seq = b.run(V[:, 1:], I[:, 1:], T[:, 1:], 10.0)
    for s, q in zip(steps, seq, strict=True):
        for name in FIELDS:
            assert torch.allclose(getattr(s, name), getattr(q, name), rtol=1e-10, atol=1e-12), name
    for s, w in zip(steps, want, strict=True):
        assert float((s.voltage - w.voltage).abs().max()) < 1e-9  # V
        for name in ("c_n_surf", "c_p_surf", "c_s_n", "c_s_p"):
            assert float((getattr(s, name) - getattr(w, name)).abs().max()) < 1e-3, name
    assert float((flatten(a.estimate.state) - flatten(ref.estimate.state)).abs().max()) < 1e-3
    # not vacuous: the warm path did take fewer Newton iterations (it differs from the cold one)
    assert not torch.equal(flatten(a.estimate.state), flatten(ref.estimate.state))


def test_spline_cache_made_in_inference_mode_still_differentiates():
    """The graphite OCP's cached knots, first made inside a stream's inference mode, are no
    inference tensors: autograd through the OCP still works afterwards."""
    from packtwin.physics import ocp

    ocp._spline_tensors.cache_clear()
    with torch.inference_mode():
        ocp.ocp_negative(torch.tensor([0.5], dtype=F64))
    sto = torch.tensor([0.3, 0.6], dtype=F64, requires_grad=True)
    ocp.ocp_negative(sto).sum().backward()
    assert torch.allclose(sto.grad, ocp.ocp_negative_slope(sto.detach()))


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_stream_with_the_instant_current_equals_the_evaluate_row(small_log):
    # a store's current_end (the current when the voltage is read) through both paths: sample
    # 2's period ended at rest although its mean is 10 A (a cut-off inside it)
    core, V, I, T = small_log
    I_end = I.clone()
    I_end[:, 2] = 0.0
    a = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID)
    steps = [a.step(V[:, k], I[:, k], T[:, k], 10.0, I_end[:, k]) for k in range(1, V.shape[1])]
    grid = {k: torch.as_tensor(v, dtype=F64) for k, v in GRID.items()}
    rows, _, _, _ = _run_subspace(core.params, {"voltage": V, "current": I, "temperature": T,
                                                "current_end": I_end},
                                  np.array([V.shape[1]] * 2), 10.0, grid, TINY)
    for name in ("soc", "voltage", "c_s_n"):
        got = torch.stack([getattr(s, name) for s in steps], 1).numpy()
        np.testing.assert_allclose(got, rows[name][:, 1:], rtol=1e-10, atol=1e-9, err_msg=name)
    plain = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], GRID)
    other = [plain.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, 4)]
    # not vacuous: read at rest, sample 2's model voltage is another one
    assert float((other[1].voltage - steps[1].voltage).abs().min()) > 0.01
    with pytest.raises(ValueError, match="NaN/inf I_end in cells \\[1\\]"):
        a.step(V[:, 1], I[:, 1], T[:, 1], 10.0, torch.tensor([0.0, float("nan")], dtype=F64))
