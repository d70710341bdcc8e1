"""The windowed loaded start (packtwin/physics/start_window.py, issue #9 item 4): where one
loaded voltage cannot decide the SOC, the samples after it do."""

import pytest
import torch

from packtwin.physics import start_window
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.loaded_inversion import invert_loaded, start_stoichiometry
from packtwin.physics.observer_stream import cell_lines, cell_soc_window
from packtwin.physics.subspace_observer import loaded_prior
from packtwin.physics.subspace_stream import SubspaceStream

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)
HISTORY = 120.0  # short histories keep the test fast (2 core steps per candidate)
PERIOD = 10.0


@pytest.fixture(scope="module")
def core():
    return ReducedCore(CoreParams.nominal(2), TINY)


def _log(core, sto, steps=12):
    """A core-made log from the loaded state at ``sto`` [B]: 1C pulses and rests at 25 degC."""
    B = core.params.n_cells
    lo, hi = cell_soc_window(core)
    pattern = [5.0] * 3 + [0.0] * 3
    I = torch.tensor([pattern[k % 6] for k in range(steps + 1)], dtype=torch.float64)
    I = I.expand(B, -1).clone()
    T = torch.full((B, steps + 1), 298.15, dtype=torch.float64)
    start = loaded_prior(core, sto, I[:, 0], T[:, 0], HISTORY, lo, hi)
    _, out = core.simulate(start, I[:, 1:], T[:, 1:], PERIOD)
    V0 = core.measure(start, I[:, 0], T[:, 0]).voltage
    return torch.cat([V0[:, None], out["voltage"]], 1), I, T, lo, hi


def test_ill_conditioned_flags_falls_inside_the_window_only():
    sto = torch.linspace(0.1, 1.0, 10, dtype=torch.float64).expand(4, -1)
    rising = torch.linspace(3.3, 4.1, 10, dtype=torch.float64)
    inside = rising.clone()
    inside[4] = inside[3] - 0.05  # a 50 mV fall at sto 0.5
    outside = rising.clone()
    outside[-1] = outside[-2] - 0.05  # the same fall past the window's top
    small = rising.clone()
    small[4] = small[3] - 0.005  # below the tolerance
    v = torch.stack([rising, inside, outside, small])
    lo, hi = torch.full((4,), 0.1, dtype=torch.float64), torch.full((4,), 0.85, dtype=torch.float64)
    I = torch.full((4,), 5.0, dtype=torch.float64)
    assert start_window.ill_conditioned(sto, v, I, lo, hi).tolist() == [False, True, False, False]
    # charge: the voltage must fall with sto_n along the search direction, i.e. sign flipped
    assert start_window.ill_conditioned(sto, -v, -I, lo, hi).tolist() == [False, True, False,
                                                                          False]
    assert not start_window.ill_conditioned(sto, v, torch.zeros(4), lo, hi).any()


def test_window_rms_is_smallest_at_the_true_soc(core):
    lo, hi = cell_soc_window(core)
    true = lo + (hi - lo) * torch.tensor([0.5, 0.7], dtype=torch.float64)
    V, I, T, lo, hi = _log(core, true)
    cand = true[:, None] + (hi - lo)[:, None] * torch.tensor([-0.1, 0.0, 0.1],
                                                             dtype=torch.float64)
    valid = torch.ones_like(V, dtype=torch.bool)
    rms = start_window.window_rms(core, cand, V, I, T, valid, PERIOD, lo, hi, HISTORY)
    assert rms.argmin(1).tolist() == [1, 1]
    assert (rms[:, 1] < 1e-9).all() and (rms[:, [0, 2]] > 5e-3).all()
    # samples past a cycle's end do not count: without any, no candidate is preferred
    none = torch.zeros_like(valid)
    none[:, 0] = True
    assert torch.isinf(start_window.window_rms(core, cand, V, I, T, none, PERIOD, lo, hi,
                                               HISTORY)).all()


def test_well_conditioned_start_is_the_nearest_root_bitwise(core):
    lo, hi = cell_soc_window(core)
    V, I, T, lo, hi = _log(core, lo + (hi - lo) * torch.tensor([0.4, 0.8], dtype=torch.float64))
    line = cell_lines(core)
    valid = torch.ones_like(V, dtype=torch.bool)
    got, chose = start_window.window_start(core, V, I, T, valid, PERIOD, line, lo, hi, HISTORY)
    assert not chose.any()
    assert torch.equal(got, invert_loaded(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi,
                                          HISTORY))


def test_ill_conditioned_start_is_chosen_by_the_samples_after_it(core, monkeypatch):
    """A start voltage 60 mV off (its root several SOC points off): the window's choice lands
    within a fine-grid step of the truth where the root alone does not."""
    lo, hi = cell_soc_window(core)
    true = lo + (hi - lo) * torch.tensor([0.45, 0.65], dtype=torch.float64)
    V, I, T, lo, hi = _log(core, true)
    V = V.clone()
    V[:, 0] -= 0.06
    line = cell_lines(core)
    valid = torch.ones_like(V, dtype=torch.bool)
    root = invert_loaded(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi, HISTORY)
    monkeypatch.setattr(start_window, "ill_conditioned", lambda *a, **k: torch.ones(2,
                                                                                   dtype=torch.bool))
    got, chose = start_window.window_start(core, V, I, T, valid, PERIOD, line, lo, hi, HISTORY)
    assert chose.all()
    soc = lambda s: (s - lo) / (hi - lo)  # noqa: E731
    assert ((soc(root) - soc(true)).abs() > 0.03).all()
    grid, _ = start_window.loaded_curve(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi, HISTORY)
    fine_step = (grid[:, 1] - grid[:, 0]).abs() / ((start_window.FINE_POINTS - 1) / 2)
    assert ((got - true).abs() <= fine_step + 1e-12).all(), (soc(got), soc(true))


def test_loaded_window_prior_needs_the_samples_after(core):
    V, I, T = (torch.full((2,), x, dtype=torch.float64) for x in (3.7, 5.0, 298.15))
    with pytest.raises(ValueError, match="after"):
        start_stoichiometry(core, V, I, T, prior="loaded_window")
    lo, hi = cell_soc_window(core)
    Vl, Il, Tl, lo, hi = _log(core, lo + (hi - lo) * torch.tensor([0.4, 0.8],
                                                                   dtype=torch.float64))
    valid = torch.ones_like(Vl[:, 1:], dtype=torch.bool)
    got = start_stoichiometry(core, Vl[:, 0], Il[:, 0], Tl[:, 0], prior="loaded_window", lo=lo,
                              hi=hi, history_s=HISTORY, after=(Vl[:, 1:], Il[:, 1:], Tl[:, 1:],
                                                               valid), period=PERIOD)
    assert torch.equal(got, start_stoichiometry(core, Vl[:, 0], Il[:, 0], Tl[:, 0], lo=lo, hi=hi,
                                                history_s=HISTORY))
    with pytest.raises(ValueError, match="first sample alone"):
        SubspaceStream.from_first_sample(core, V, I, T, prior="loaded_window")


def test_stream_start_with_the_window(core, monkeypatch):
    """SubspaceStream.from_first_samples: the evaluate row's windowed start, buffered."""
    lo, hi = cell_soc_window(core)
    V, I, T, lo, hi = _log(core, lo + (hi - lo) * torch.tensor([0.45, 0.65], dtype=torch.float64))
    from packtwin.physics.subspace_observer import SubspaceConfig

    cfg = SubspaceConfig(history_s=HISTORY)
    plain = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], config=cfg)
    windowed = SubspaceStream.from_first_samples(core, V, I, T, PERIOD, config=cfg)
    # well-conditioned: the same start as the first sample alone
    assert torch.equal(plain.estimate.state.c_n, windowed.estimate.state.c_n)
    V = V.clone()
    V[:, 0] -= 0.06
    V[1, 5] = float("nan")  # a missing sample in the window is left out, not fatal
    monkeypatch.setattr(start_window, "ill_conditioned",
                        lambda *a, **k: torch.ones(2, dtype=torch.bool))
    stream = SubspaceStream.from_first_samples(core, V, I, T, PERIOD, config=cfg)
    valid = torch.isfinite(V[:, 1:])
    want = start_stoichiometry(core, V[:, 0], I[:, 0], T[:, 0], prior="loaded_window", lo=lo,
                               hi=hi, history_s=HISTORY,
                               after=(torch.nan_to_num(V[:, 1:], nan=3.7), I[:, 1:], T[:, 1:],
                                      valid), period=PERIOD)
    same = stream.observer.init_loaded(want, I[:, 0], T[:, 0], lo, hi)
    assert torch.equal(stream.estimate.state.c_n, same.state.c_n)
    assert torch.isfinite(stream.step(V[:, 1], I[:, 1], T[:, 1], PERIOD).voltage).all()
    with pytest.raises(ValueError, match="first sample"):
        bad = V.clone()
        bad[0, 0] = float("nan")
        SubspaceStream.from_first_samples(core, bad, I, T, PERIOD, config=cfg)


def test_window_reads_each_sample_at_its_instant_current(core, monkeypatch):
    """A window whose third period ends in a rest reached 4 s into it (a cut-off inside a
    period): the store's mean current over it is 2 A, its voltage read at 0 A. With the instant
    current (``I_end``) the true start's open-loop run matches the log exactly (a candidate
    10 points off does not); read at the mean current that sample alone is > 10 mV off. An
    ``I_end`` equal to I changes nothing (the current-switch-free log of every other test)."""
    lo, hi = cell_soc_window(core)
    true = lo + (hi - lo) * torch.tensor([0.5, 0.6], dtype=torch.float64)
    B, K = 2, 8
    I = torch.full((B, K + 1), 5.0, dtype=torch.float64)
    I[:, 3] = 5.0 * 4.0 / PERIOD  # 4 s at 5 A, then rest: the period's mean
    I[:, 4:] = 0.0
    I_end = I.clone()
    I_end[:, 3] = 0.0
    T = torch.full((B, K + 1), 298.15, dtype=torch.float64)
    start = loaded_prior(core, true, I[:, 0], T[:, 0], HISTORY, lo, hi)
    _, out = core.simulate(start, I[:, 1:], T[:, 1:], PERIOD, I_end=I_end[:, 1:])
    V = torch.cat([core.measure(start, I[:, 0], T[:, 0]).voltage[:, None], out["voltage"]], 1)
    valid = torch.ones_like(V, dtype=torch.bool)
    cand = true[:, None] + (hi - lo)[:, None] * torch.tensor([0.0, 0.1], dtype=torch.float64)
    at_instant = start_window.window_rms(core, cand, V, I, T, valid, PERIOD, lo, hi, HISTORY,
                                         I_end=I_end)
    assert (at_instant[:, 0] < 1e-9).all() and (at_instant[:, 1] > 5e-3).all()
    at_mean = start_window.window_rms(core, cand[:, :1], V, I, T, valid, PERIOD, lo, hi, HISTORY)
    assert (at_mean[:, 0] * (K ** 0.5) > 0.01).all()  # one sample's error, > 10 mV
    same = start_window.window_rms(core, cand, V, I, T, valid, PERIOD, lo, hi, HISTORY, I_end=I)
    torch.testing.assert_close(same, start_window.window_rms(core, cand, V, I, T, valid, PERIOD,
                                                             lo, hi, HISTORY),
                               rtol=1e-9, atol=1e-12)
    # through start_stoichiometry's fifth ``after`` entry (evaluate passes the store's
    # current_end) and the stream's buffered start: where the window decides (forced here),
    # it lands within a fine-grid step of the truth
    monkeypatch.setattr(start_window, "ill_conditioned",
                        lambda *a, **k: torch.ones(2, dtype=torch.bool))
    line = cell_lines(core)
    got = start_stoichiometry(core, V[:, 0], I[:, 0], T[:, 0], line, "loaded_window", lo, hi,
                              HISTORY, after=(V[:, 1:], I[:, 1:], T[:, 1:], valid[:, 1:],
                                              I_end[:, 1:]), period=PERIOD)
    grid, _ = start_window.loaded_curve(core, V[:, 0], I[:, 0], T[:, 0], line, lo, hi, HISTORY)
    fine_step = (grid[:, 1] - grid[:, 0]).abs() / ((start_window.FINE_POINTS - 1) / 2)
    assert ((got - true).abs() <= fine_step + 1e-12).all()
    from packtwin.physics.subspace_observer import SubspaceConfig

    cfg = SubspaceConfig(history_s=HISTORY)
    stream = SubspaceStream.from_first_samples(core, V, I, T, PERIOD, config=cfg, I_end=I_end)
    ref = SubspaceStream.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], config=cfg)
    assert stream.estimate.state.c_n.shape == ref.estimate.state.c_n.shape
    with pytest.raises(ValueError, match="I_end has shape"):
        SubspaceStream.from_first_samples(core, V, I, T, PERIOD, config=cfg, I_end=I_end[:, :3])
