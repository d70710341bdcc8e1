"""The pack stream on the reduced core: sample-by-sample and whole-sequence paths agree, a rested
start is inverted, any period works, and bad input (a loaded first sample, NaN, a wrong cell
count) is refused with its problem named and the state kept."""

import numpy as np
import pytest
import torch

from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.observer_stream import PackStream, cell_lines

SMALL = CoreConfig(n_x_n=3, n_x_s=2, n_x_p=3, n_r=8)
GRID = {"x_n": np.linspace(2e-6, 83e-6, 4), "r_n": np.linspace(0, 1, 5),
        "x_p": np.linspace(98e-6, 166e-6, 3), "r_p": np.linspace(0, 1, 4)}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _core(n=3):
    p = CoreParams.nominal(n)
    p.D_n = p.D_n * torch.linspace(0.7, 1.3, n, dtype=torch.float64)
    p.c_n_init = p.c_n_init * torch.linspace(0.8, 1.0, n, dtype=torch.float64)
    return ReducedCore(p, SMALL)


def _log(n, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    I = torch.zeros(n, K, dtype=torch.float64)
    I[:, 2:6] = 5.0
    I[:, 6:9] = torch.tensor([10.0, -5.0, 0.0])
    I[:, 9:] = 2.5
    I[1] *= 0.5
    T = 298.15 + 3.0 * torch.rand(n, K, generator=g, dtype=torch.float64)
    V = 3.8 + 0.01 * torch.rand(n, K, generator=g, dtype=torch.float64)
    return V, I, T


def _rest_stream(core, grid=GRID):
    state = core.initial_state()
    V0 = core.measure(state, torch.zeros(core.params.n_cells), torch.full((core.params.n_cells,), 298.15)).voltage
    return PackStream.from_rest(core, V0, 0.0, 298.15, grid)


def test_step_by_step_equals_the_whole_sequence():
    core = _core()
    V, I, T = _log(3, 12)
    a, b = _rest_stream(core), _rest_stream(core)
    steps = [a.step(V[:, k], I[:, k], T[:, k], 20.0) for k in range(12)]
    seq = b.run(V, I, T, 20.0)
    for s, q in zip(steps, seq):
        for name in ("voltage", "innovation", "soc", "c_n_surf", "c_p_surf", "plating_margin",
                     "c_s_n", "c_s_p"):
            assert torch.allclose(getattr(s, name), getattr(q, name), rtol=1e-12, atol=0), name
    for x, y in zip(a.state, b.state):
        assert (x is None and y is None) or torch.allclose(x, y, rtol=1e-12, atol=0)
    # not vacuous: the estimates moved (discharge, pulses) and the fields have the grid's shape
    assert float(steps[-1].soc.max()) < float(steps[0].soc.min()) - 0.01
    assert steps[-1].c_s_n.shape == (3, 4, 5) and steps[-1].c_s_p.shape == (3, 3, 4)


def test_from_rest_inverts_the_open_circuit_voltage():
    core = _core()
    c_max = core.design.constants.neg.c_max
    sto = torch.tensor([0.3, 0.55, 0.8], dtype=torch.float64)
    # a rest state on each cell's lithium line at these stoichiometries
    c_p = cell_lines(core).sto_p(sto) * core.design.constants.pos.c_max
    state = core.initial_state(sto * c_max, c_p)
    V0 = core.measure(state, torch.zeros(3), torch.full((3,), 298.15)).voltage
    stream = PackStream.from_rest(core, V0, torch.zeros(3), torch.full((3,), 298.15))
    assert torch.allclose(stream.state.c_n[:, 0, 0] / c_max, sto, atol=1e-6)
    assert torch.allclose(stream.state.c_p[:, 0, 0], c_p, rtol=1e-5)
    # SOC on each cell's own window: inside (0, 1) and ordered like the stoichiometries
    soc = (sto - stream.sto_window[0]) / (stream.sto_window[1] - stream.sto_window[0])
    assert ((soc > 0) & (soc < 1)).all() and bool((soc.diff() > 0).all())


def test_a_first_sample_under_load_is_refused():
    core = _core()
    with pytest.raises(ValueError, match=r"under load in cells \[1\].*prior state"):
        PackStream.from_rest(core, torch.full((3,), 3.7), torch.tensor([0.0, 5.0, 0.0]), 298.15)


def test_any_period_from_1_to_60_s():
    core = _core(2)
    out = {}
    for dt, n in ((1.0, 600), (60.0, 10)):
        s = _rest_stream(core, None)
        for _ in range(n):
            est = s.step(torch.full((2,), 3.7), 5.0, 298.15, dt)
        out[dt] = est
    # same charge passed: the same mean concentrations (lithium is conserved exactly) ...
    assert torch.allclose(out[1.0].c_n_avg, out[60.0].c_n_avg, rtol=1e-9)
    # ... and the same voltage to within the sub-step's discretisation error
    assert float((out[1.0].voltage - out[60.0].voltage).abs().max()) < 2e-3


def test_nan_inputs_are_refused_or_flagged_and_the_state_kept():
    core = _core()
    s = _rest_stream(core)
    before = [None if t is None else t.clone() for t in s.state]
    with pytest.raises(ValueError, match=r"NaN/inf current in cells \[2\]"):
        s.step(torch.full((3,), 3.7), torch.tensor([5.0, 5.0, float("nan")]), 298.15, 10.0)
    for x, y in zip(before, s.state):
        assert (x is None and y is None) or torch.equal(x, y)
    est = s.step(torch.tensor([3.7, float("nan"), 3.7]), 5.0,
                 torch.tensor([298.15, float("nan"), 300.0]), 10.0)
    assert torch.isnan(est.innovation[1]) and torch.isfinite(est.innovation[[0, 2]]).all()
    assert est.temperature_filled.tolist() == [False, True, False]
    assert torch.isfinite(est.voltage).all() and torch.isfinite(est.c_s_n).all()
    fresh = PackStream(core, core.initial_state())
    with pytest.raises(ValueError, match=r"NaN temperature at sample 0 in cells \[0\]"):
        fresh.step(torch.full((3,), 3.7), 5.0, torch.tensor([float("nan"), 298.0, 298.0]), 10.0)
    V, I, T = _log(3, 10)
    I[0, 4] = float("nan")
    with pytest.raises(ValueError, match=r"current at sample 4 in cells \[0\]"):
        PackStream(core, core.initial_state()).run(V, I, T, 10.0)


def test_wrong_cell_count_and_period_are_named():
    core = _core()
    s = _rest_stream(core)
    with pytest.raises(ValueError, match=r"I has shape \(4,\), expected \[cells\] with 3 cells"):
        s.step(torch.full((3,), 3.7), torch.zeros(4), 298.15, 10.0)
    with pytest.raises(ValueError, match="period dt"):
        s.step(torch.full((3,), 3.7), 0.0, 298.15, float("nan"))
