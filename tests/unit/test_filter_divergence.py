"""The divergence reset of the evaluate path's filters (``observer_predict._filter_cycles``):
a cycle whose one-step-ahead voltage stays more than DIVERGED_V off for DIVERGED_S restarts
from the prior at that sample; shorter or smaller excursions do not."""

import numpy as np
import torch

from packtwin import schema
from packtwin.eval import observer_predict as op
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams

COARSE = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=4)


def test_diverged_samples_is_30_s_of_samples_and_never_one():
    assert op.diverged_samples(10.0) == 3
    assert op.diverged_samples(1.0) == 30
    assert op.diverged_samples(60.0) == 2  # one sample can be a cut-off's step


def test_a_filter_off_for_30_s_restarts_there_and_short_or_small_excursions_do_not(
        one_torch_thread):
    core = ReducedCore(CoreParams.nominal(3), COARSE)
    grid = {schema.X_N: core.grid_x.x_n(core.dtype).numpy(), schema.R_N: np.linspace(0.1, 0.9, 4),
            schema.X_P: core.grid_x.x_p(core.dtype).numpy(), schema.R_P: np.linspace(0.1, 0.9, 4)}
    K = 20
    V = torch.full((3, K), 3.7, dtype=core.dtype)
    I = torch.zeros(3, K, dtype=core.dtype)
    T = torch.full((3, K), 298.15, dtype=core.dtype)
    lengths = np.array([K, K, 12])
    # one-step-ahead voltage offsets [V]: row 0 one sample at 2 V, then 0.45 V for 8 samples
    # (both legitimate); row 1 1 V off from sample 5 until restarted; row 2 1 V off from
    # sample 10: 2 samples inside its cycle (length 12), the rest is padding (never counted)
    off = torch.zeros(3, K, dtype=core.dtype)
    off[0, 3] = 2.0
    off[0, 6:14] = 0.45
    off[1, 5:] = 1.0
    off[2, 10:] = 1.0
    restarted_at = {}
    state = {"restarted": torch.zeros(3, dtype=torch.bool)}

    def prior(k):
        restarted_at.setdefault(k, 0)
        restarted_at[k] += 1
        return core.initial_state()

    def advance(est, k):
        v = V[:, k] + torch.where(state["restarted"], torch.zeros(3, dtype=core.dtype), off[:, k])
        return est, v

    def restart(est, fresh, bad):
        state["restarted"] = state["restarted"] | bad
        return fresh

    rows, restarts, large, _ = op._filter_cycles(core, V, I, T, lengths, grid, prior, advance,
                                                 lambda e: e, restart, None,
                                                 op.diverged_samples(10.0))
    assert restarts.tolist() == [0, 1, 0]
    assert sorted(restarted_at) == [0, 7]  # the start, and row 1 at its 3rd sample over 0.5 V
    assert state["restarted"].tolist() == [False, True, False]
    # the row's voltage after the restart is the fresh state's, not the diverged one
    assert abs(rows["voltage"][1, 7] - V[1, 7].item()) < 1.0
    # without the reset (n_diverged None) nothing restarts
    state["restarted"][:] = False
    restarted_at.clear()
    _, restarts, _, _ = op._filter_cycles(core, V, I, T, lengths, grid, prior, advance,
                                          lambda e: e, restart, None, None)
    assert restarts.tolist() == [0, 0, 0] and sorted(restarted_at) == [0]
