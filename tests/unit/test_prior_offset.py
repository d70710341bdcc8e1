"""A deliberate start SOC error (evaluate's ``observer_prior_offset``, issue 9 item 4): the
start prior moves by the offset of each cell's window, the other way near an end; restarts
are not moved; out-of-range offsets refused."""

import numpy as np
import pytest
import torch

from packtwin.eval import observer_predict
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.loaded_inversion import offset_stoichiometry, start_stoichiometry
from packtwin.physics.observer_stream import cell_lines, cell_soc_window

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)
F64 = torch.float64
GRID = {"x_n": torch.linspace(2e-6, 83e-6, 3, dtype=F64), "r_n": torch.linspace(0, 1, 4, dtype=F64),
        "x_p": torch.linspace(98e-6, 166e-6, 3, dtype=F64),
        "r_p": torch.linspace(0, 1, 4, dtype=F64)}


def test_offset_moves_by_the_window_and_turns_back_at_its_ends():
    lo, hi = torch.tensor([0.0, 0.1, 0.1]), torch.tensor([1.0, 0.9, 0.9])
    sto = torch.tensor([0.5, 0.8, 0.2])
    got = offset_stoichiometry(sto, 0.3, lo, hi)
    # 0.5 + 0.3; 0.8 + 0.24 would leave 0.9: 0.8 - 0.24; 0.2 + 0.24
    assert torch.allclose(got, torch.tensor([0.8, 0.56, 0.44]))
    assert torch.allclose(offset_stoichiometry(sto, -0.3, lo, hi),
                          torch.tensor([0.2, 0.56, 0.44]))
    assert torch.equal(offset_stoichiometry(sto, 0.0, lo, hi), sto)
    with pytest.raises(ValueError, match=r"within \[-0.5, 0.5\].*got 0.7"):
        offset_stoichiometry(sto, 0.7, lo, hi)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_the_filter_starts_30_points_off_and_works_back(one_torch_thread):
    """Two cells at rest at 80 % / 20 % SOC, then 1C: with offset 0.3 the subspace filter's
    first SOC is 30 points off (down for the full cell, up for the empty one), and the
    voltage correction brings it back towards the truth over the next samples."""
    core = ReducedCore(CoreParams.nominal(2), TINY)
    c = core.design.constants
    lo, hi = cell_soc_window(core)
    soc = torch.tensor([0.8, 0.2], dtype=F64)
    sto = lo + soc * (hi - lo)
    rest = core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)
    I = torch.cat([torch.zeros(2, 1, dtype=F64), torch.full((2, 30), 5.0, dtype=F64)], 1)
    T = torch.full_like(I, 298.15)
    _, out = core.simulate(rest, I, T, 10.0)
    V = out["voltage"]
    seq = {"voltage": V, "current": I, "temperature": T}
    L = np.array([I.shape[1]] * 2)
    rows = {off: observer_predict._run_subspace(core.params, seq, L, 10.0, GRID, TINY, "loaded",
                                                None, off)
            for off in (0.0, 0.3)}
    np.testing.assert_allclose(rows[0.0][0]["soc"][:, 0], [0.8, 0.2], atol=0.01)  # rested read
    start = rows[0.3][0]["soc"][:, 0] - rows[0.0][0]["soc"][:, 0]
    np.testing.assert_allclose(start, [-0.3, 0.3], atol=1e-6)
    assert not rows[0.3][1].any()  # no restart: the filter converges on its own
    err0 = np.abs(rows[0.3][0]["soc"][:, 0] - rows[0.0][0]["soc"][:, 0])
    err_end = np.abs(rows[0.3][0]["soc"][:, -1] - rows[0.0][0]["soc"][:, -1])
    assert (err_end < 0.5 * err0).all(), (err0, err_end)


def test_the_ekf_start_moves_too(one_torch_thread):
    core = ReducedCore(CoreParams.nominal(1), TINY)
    c = core.design.constants
    lo, hi = cell_soc_window(core)
    sto = lo + 0.6 * (hi - lo)
    rest = core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)
    I = torch.zeros(1, 3, dtype=F64)
    T = torch.full_like(I, 298.15)
    V = core.simulate(rest, I, T, 10.0)[1]["voltage"]
    seq, L = {"voltage": V, "current": I, "temperature": T}, np.array([3])
    soc = [observer_predict._run_ekf(core.params, seq, L, 10.0, GRID,
                                     observer_predict.EKFConfig(), TINY, "loaded", None,
                                     off)[0]["soc"][0, 0] for off in (0.0, -0.3)]
    assert soc[0] == pytest.approx(0.6, abs=0.01) and soc[1] == pytest.approx(0.3, abs=0.01)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_reprior_rebuilds_the_state_at_the_corrected_soc(one_torch_thread):
    """SubspaceConfig.reprior_soc: once a cell's SOC has moved more than that since its prior,
    its state becomes the loaded prior at the corrected SOC (SOC kept, moved reset, SEI film and
    covariance kept); the stream and evaluate's row do the same; 0 changes nothing."""
    from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver, loaded_prior
    from packtwin.physics.subspace_stream import SubspaceStream

    core = ReducedCore(CoreParams.nominal(2), TINY)
    c = core.design.constants
    lo, hi = cell_soc_window(core)
    sto = lo + torch.tensor([0.8, 0.2], dtype=F64) * (hi - lo)
    rest = core.initial_state(sto * c.neg.c_max, cell_lines(core).sto_p(sto) * c.pos.c_max)
    I = torch.cat([torch.zeros(2, 1, dtype=F64), torch.full((2, 12), 5.0, dtype=F64)], 1)
    T = torch.full_like(I, 298.15)
    V = core.simulate(rest, I, T, 10.0)[1]["voltage"]
    cfg = SubspaceConfig(reprior_soc=0.1, reprior_covariance=False)  # P: its own test below
    obs = SubspaceObserver(core, hi - lo, cfg)
    start = offset_stoichiometry(sto, 0.3, lo, hi)
    est = obs.init_loaded(start, I[:, 0], T[:, 0], lo, hi)
    plain = SubspaceObserver(core, hi - lo, SubspaceConfig(reprior_soc=0.0))
    fired = []
    for k in range(1, 6):
        new, _, _ = obs.step(est, I[:, k], T[:, k], V[:, k], 10.0)
        ref, _, _ = plain.step(est, I[:, k], T[:, k], V[:, k], 10.0)  # the same step, no re-prior
        jumped = ref.moved.abs() > 0.1
        assert torch.equal(new.moved, torch.where(jumped, 0.0, ref.moved))
        assert torch.equal(new.P, ref.P) and torch.equal(new.state.L_sei, ref.state.L_sei)
        assert torch.equal(new.state.c_n[~jumped], ref.state.c_n[~jumped])
        if jumped.any():
            fired.append((k, jumped.nonzero()[:, 0].tolist()))
            # the plain step's SOC, the loaded prior's profiles
            soc_ref = core.measure(ref.state, I[:, k], T[:, k]).c_n_avg
            soc_new = core.measure(new.state, I[:, k], T[:, k]).c_n_avg
            assert torch.allclose(soc_new[jumped], soc_ref[jumped], rtol=1e-6)
            want = loaded_prior(core, soc_ref / c.neg.c_max, est.prior_current, T[:, k],
                                cfg.history_s, lo, hi)
            assert torch.allclose(new.state.c_n[jumped], want.c_n[jumped])
            assert not torch.allclose(new.state.c_n[jumped], ref.state.c_n[jumped])
        est = new
    assert fired and fired[0] == (1, [0, 1]), fired  # 30 points off: the first correction
    # the reports' re-prior count (evaluate's observer_repriors) counts exactly these
    assert obs.reprior_count.tolist() == [sum(i in cells for _, cells in fired) for i in (0, 1)]
    assert plain.reprior_count.tolist() == [0, 0]
    # the streamed path and evaluate's row: the same numbers with the same setting
    # (both from the 30-point start: the stream's own prior, moved as evaluate moves it)
    sto0 = start_stoichiometry(core, V[:, 0], I[:, 0], T[:, 0], cell_lines(core), "loaded", lo,
                               hi, cfg.history_s)
    s = SubspaceStream(obs, obs.init_loaded(offset_stoichiometry(sto0, 0.3, lo, hi), I[:, 0],
                                            T[:, 0], lo, hi), GRID)
    steps = [s.step(V[:, k], I[:, k], T[:, k], 10.0) for k in range(1, V.shape[1])]
    seq, L = {"voltage": V, "current": I, "temperature": T}, np.array([V.shape[1]] * 2)
    rows, off = (observer_predict._run_subspace(core.params, seq, L, 10.0, GRID, TINY, "loaded",
                                                None, 0.3, conf)[0]
                 for conf in (cfg, SubspaceConfig(reprior_soc=0.0)))
    np.testing.assert_allclose(torch.stack([x.c_s_n for x in steps], 1).numpy(),
                               rows["c_s_n"][:, 1:], rtol=1e-10, atol=1e-9)
    assert not np.allclose(rows["c_s_n"], off["c_s_n"])  # the re-prior acted there too
    assert rows["repriors"].min() >= 1 and off["repriors"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="reprior_soc"):
        SubspaceObserver(core, hi - lo, SubspaceConfig(reprior_soc=-0.1))
    with pytest.raises(observer_predict.ObserverError, match="unknown SubspaceConfig"):
        observer_predict.subspace_config({"reprior": 0.1})


def test_reprior_only_early(one_torch_thread):
    """reprior_within_s: a correction past that time since the prior does not re-prior."""
    from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver

    core = ReducedCore(CoreParams.nominal(1), TINY)
    lo, hi = cell_soc_window(core)
    I, T = torch.full((1,), 5.0, dtype=F64), torch.full((1,), 298.15, dtype=F64)
    obs = SubspaceObserver(core, hi - lo, SubspaceConfig(reprior_soc=0.1, reprior_within_s=15.0))
    est = obs.init_loaded(lo + 0.5 * (hi - lo), I, T, lo, hi)
    est = est._replace(moved=torch.tensor([0.2], dtype=F64))  # 20 points corrected already
    early, _, _ = obs.step(est, I, T, torch.full((1,), 3.6, dtype=F64), 10.0)
    assert float(early.moved) == 0.0 and float(early.age) == 10.0  # re-priored at 10 s
    late, _, _ = obs.step(est._replace(age=torch.tensor([10.0], dtype=F64)), I, T,
                          torch.full((1,), 3.6, dtype=F64), 10.0)
    assert abs(float(late.moved)) > 0.1 and float(late.age) == 20.0  # 20 s: too late


def test_init_state_is_never_repriored(one_torch_thread):
    """A state handed to init() has no recipe to rebuild at another SOC: with the default
    re-prior on, the same moved estimate re-priors from init_loaded but not from init."""
    from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver, loaded_prior

    core = ReducedCore(CoreParams.nominal(1), TINY)
    lo, hi = cell_soc_window(core)
    I, T = torch.full((1,), 5.0, dtype=F64), torch.full((1,), 298.15, dtype=F64)
    obs = SubspaceObserver(core, hi - lo)
    assert obs.config.reprior_soc == SubspaceConfig().reprior_soc > 0  # the default is on
    sto = lo + 0.5 * (hi - lo)
    moved = torch.tensor([0.2], dtype=F64)  # 20 points corrected already
    V = torch.full((1,), 3.6, dtype=F64)
    given = obs.init(loaded_prior(core, sto, I, T, 600.0, lo, hi))
    assert float(given.age) == float("inf")
    kept, _, _ = obs.step(given._replace(moved=moved), I, T, V, 10.0)
    assert abs(float(kept.moved)) > 0.1 and int(obs.reprior_count) == 0
    redone, _, _ = obs.step(obs.init_loaded(sto, I, T, lo, hi)._replace(moved=moved), I, T, V,
                            10.0)
    assert float(redone.moved) == 0.0 and int(obs.reprior_count) == 1


def test_reprior_covariance_restores_the_prior_block(one_torch_thread):
    """reprior_covariance: a re-priored cell's covariance along the directions goes back to the
    prior's, its cross terms with the biases to 0 and the biases' block is kept; a cell that
    was not re-priored keeps the filter's P (on by default); off keeps P for every cell."""
    from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceObserver

    core = ReducedCore(CoreParams.nominal(2), TINY)
    lo, hi = cell_soc_window(core)
    I, T = torch.full((2,), 5.0, dtype=F64), torch.full((2,), 298.15, dtype=F64)
    kw = dict(reprior_soc=0.1, biases=("dR",), dR_min_step_a=0.0)
    on = SubspaceObserver(core, hi - lo, SubspaceConfig(reprior_covariance=True, **kw))
    off = SubspaceObserver(core, hi - lo, SubspaceConfig(reprior_covariance=False, **kw))
    assert SubspaceConfig().reprior_covariance  # the default
    est = on.init_loaded(lo + 0.5 * (hi - lo), I, T, lo, hi)
    v_model = off.step(est, I, T, torch.full((2,), 3.6, dtype=F64), 10.0)[1]
    V = torch.stack([v_model[0] + 0.1, v_model[1] + 0.001])  # cell 1: a small correction
    # cell 0 corrected by 20 points already (re-priors at this step), cell 1 not
    est = est._replace(moved=torch.tensor([0.2, 0.0], dtype=F64))
    a, _, _ = on.step(est, I, T, V, 10.0)
    b, _, _ = off.step(est, I, T, V, 10.0)
    m, p0 = on.m, on._p0
    assert float(a.moved[0]) == 0.0 and float(b.moved[0]) == 0.0  # both re-priored cell 0
    assert torch.equal(a.P[1], b.P[1])  # not re-priored: the filter's P
    assert torch.allclose(a.P[0, :m, :m], torch.diag(p0[:m]))
    assert torch.count_nonzero(a.P[0, :m, m:]) == 0 and torch.count_nonzero(a.P[0, m:, :m]) == 0
    assert torch.equal(a.P[0, m:, m:], b.P[0, m:, m:])
    assert not torch.allclose(b.P[0, :m, :m], torch.diag(p0[:m]))  # the update shrank it
