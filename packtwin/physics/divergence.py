"""When a filter has diverged: the rule shared by ``packtwin evaluate``'s filter rows
(:mod:`packtwin.eval.observer_predict`) and the streamed observer
(:mod:`packtwin.physics.subspace_stream`), so that both restart at the same sample.

A cell's filter has diverged where its state turned non-finite, or where its one-step-ahead
voltage has been more than :data:`DIVERGED_V` off the measured one for :data:`DIVERGED_S`
(every sample of it); it is then restarted from its start prior read at that sample, as a BMS's
divergence reset does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.core import CoreState

# Chosen on the development draws (seeds 11-14, both starts, every split): a filter that kept its
# estimate stayed within 0.23 V over any 30 s (the loaded start's worst -10 C cell), the EKF
# that ran away at -10 C (seed 13) was 4.0 V off over 30 s; held-out seed 17's EKF runaway
# (cycle 2, -10 C) was 2.4 V off.
DIVERGED_V, DIVERGED_S = 0.5, 30.0


def diverged_samples(period: float) -> int:
    """Consecutive samples over :data:`DIVERGED_V` that make a divergence (at least 2: one
    sample can be a cut-off's step the one-step-ahead voltage cannot see)."""
    return max(2, int(np.ceil(DIVERGED_S / period - 1e-9)))


def off_run(run: Tensor, V: Tensor, v_model: Tensor, counted: Tensor | None = None) -> Tensor:
    """Samples in a row [B] whose one-step-ahead voltage ``v_model`` is more than
    :data:`DIVERGED_V` off the measured ``V``, ``run`` the count before this sample; a sample
    within it, with a NaN voltage or not ``counted`` (padding) ends the run."""
    off = (V - v_model).abs() > DIVERGED_V
    if counted is not None:
        off = off & counted
    return torch.where(off, run + 1, torch.zeros_like(run))


def nonfinite(state: CoreState) -> Tensor:
    """Cells [B] whose particle or electrolyte concentrations are not all finite."""
    return ~(torch.isfinite(state.c_n).flatten(1).all(1)
             & torch.isfinite(state.c_p).flatten(1).all(1)
             & torch.isfinite(state.c_e).all(1))
