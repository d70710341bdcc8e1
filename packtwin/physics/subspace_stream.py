"""The subspace Kalman observer streamed through a whole pack, sample by sample (issue 9, item 7).

:class:`SubspaceStream` is a :class:`~packtwin.physics.observer_stream.PackStream` whose state is
corrected by :class:`~packtwin.physics.subspace_observer.SubspaceObserver` at every sample: one
sample of every cell in (V, I, T, dt), a :class:`StreamEstimate` out, the filter's estimate
(state, covariance, bias states) kept in between. The same input rules as the open-loop stream
apply (cell count, period, NaN current refused before anything changes; NaN temperature held
from the last valid one); a NaN voltage leaves that cell uncorrected for the sample.

The estimate's ``voltage`` is the filter's one-step-ahead model voltage (before the sample's
correction, biases included) and ``innovation`` is V minus it, as in ``packtwin evaluate``'s
``subspace`` row; the fields, SOC and plating margin are those of the corrected state.
:meth:`SubspaceStream.run` is the whole-sequence call (:meth:`SubspaceObserver.run`); both paths
give the same estimates (tested), and so does the evaluate row (:mod:`packtwin.eval.observer_predict`).

A stream never restarts: stepped through a store's cycle 1 and then its cycle 2 it gives the
evaluate row with ``observer_carry`` (cycle 2 goes on from cycle 1's final estimate; tested in
``tests/unit/test_observer_carry.py``). Cycle 2's sample 0 is not stepped: the generator records
it from the state cycle 1's final rest ended in, the same instant as cycle 1's last sample.
"""

from __future__ import annotations

from torch import Tensor
import torch

from packtwin.physics.core import ReducedCore
from packtwin.physics.observer_stream import (PackStream, StreamEstimate, _as_cells, _cells,
                                              cell_lines, cell_soc_window)
from packtwin.physics.loaded_inversion import SAMPLE_PRIORS, start_stoichiometry
from packtwin.physics.subspace_observer import SubspaceConfig, SubspaceEstimate, SubspaceObserver


class SubspaceStream(PackStream):
    """A pack's cells filtered by one :class:`SubspaceObserver`, one sample at a time.

    Args:
        observer: the filter (its core holds every cell's parameters).
        estimate: the estimate at the sample before the first one to be stepped.
        grid, rest_current_a: as :class:`PackStream`.
    """

    def __init__(self, observer: SubspaceObserver, estimate: SubspaceEstimate,
                 grid: dict | None = None, rest_current_a: float = 0.05):
        super().__init__(observer.core, estimate.state, grid, rest_current_a)
        self.observer, self.estimate = observer, estimate
        self._stepped = False

    @classmethod
    def from_first_sample(cls, core: ReducedCore, V0, I0, T0, grid: dict | None = None,
                          config: SubspaceConfig = SubspaceConfig(), prior: str = "loaded"
                          ) -> "SubspaceStream":
        """Start like the evaluate row: the first voltage V0 read by ``prior`` (of
        :data:`packtwin.physics.loaded_inversion.SAMPLE_PRIORS`, the priors that need the
        first sample alone; "loaded": through the core carrying
        the first current, "ocv": as an open-circuit voltage) on each cell's inventory line,
        the core's state after ``config.history_s`` at the first current I0 [A] and
        temperature T0 [K] (:func:`loaded_prior`), the configured prior uncertainty. A first
        sample under load is accepted (the filter corrects the SOC).

        Raises:
            ValueError: a wrong cell count, NaN/inf in the first sample (cells named) or an
                unknown prior.
        """
        if prior not in SAMPLE_PRIORS:
            # "loaded_window" reads samples after the start, which a stream does not have yet
            raise ValueError(f"SubspaceStream.from_first_sample: prior must be one of "
                             f"{SAMPLE_PRIORS} (a stream starts from its first sample alone), "
                             f"got {prior!r}")
        B = core.params.n_cells
        V0, I0, T0 = (_as_cells(x, B, core.dtype, name) for x, name in
                      ((V0, "V0"), (I0, "I0"), (T0, "T0")))
        bad = ~(torch.isfinite(V0) & torch.isfinite(I0) & torch.isfinite(T0))
        if bad.any():
            raise ValueError(f"SubspaceStream.from_first_sample: NaN/inf V0, I0 or T0 in cells "
                             f"{_cells(bad)}; the prior needs all three")
        lo, hi = cell_soc_window(core)
        obs = SubspaceObserver(core, hi - lo, config)
        sto = start_stoichiometry(core, V0, I0, T0, cell_lines(core), prior, lo, hi,
                                  config.history_s)
        stream = cls(obs, obs.init_loaded(sto, I0, T0, lo, hi), grid)
        stream._last_T = T0
        return stream

    @classmethod
    def from_first_samples(cls, core: ReducedCore, V, I, T, period: float,
                           grid: dict | None = None, config: SubspaceConfig = SubspaceConfig(),
                           prior: str = "loaded_window") -> "SubspaceStream":
        """Start like the evaluate row with a prior that reads the samples after the first
        (``prior`` "loaded_window", :mod:`packtwin.physics.start_window`): V, I, T
        [cells, W + 1] are the first sample and the W after it (``period`` [s] apart, NaN where
        missing), buffered before the stream starts: a fixed lag of W samples at the start.
        The stream is returned at sample 0; step it from sample 1 on, the buffered ones
        included. Other priors read the first sample alone, as :meth:`from_first_sample`.

        Raises:
            ValueError: a wrong cell count or shape, NaN/inf in the first sample, an unknown
                prior.
        """
        B = core.params.n_cells
        V, I, T = (_as_cells(x, B, core.dtype, name, seq=True) for x, name in
                   ((V, "V"), (I, "I"), (T, "T")))
        if prior in SAMPLE_PRIORS:
            return cls.from_first_sample(core, V[:, 0], I[:, 0], T[:, 0], grid, config, prior)
        if prior != "loaded_window":
            raise ValueError(f"SubspaceStream.from_first_samples: prior must be 'loaded_window' "
                             f"or one of {SAMPLE_PRIORS}, got {prior!r}")
        bad = ~(torch.isfinite(V[:, 0]) & torch.isfinite(I[:, 0]) & torch.isfinite(T[:, 0]))
        if bad.any():
            raise ValueError(f"SubspaceStream.from_first_samples: NaN/inf V, I or T at the first "
                             f"sample in cells {_cells(bad)}; the prior needs all three")
        Va, Ia, Ta = V[:, 1:], I[:, 1:], T[:, 1:]
        # a missing voltage leaves its sample out; past a missing current or temperature the
        # open-loop run does not know the load, so the window ends there
        gap = ~(torch.isfinite(Ia) & torch.isfinite(Ta))
        valid = torch.isfinite(Va) & (torch.cumsum(gap.long(), dim=1) == 0)
        after = (torch.nan_to_num(Va), torch.where(gap, 0.0, Ia),
                 torch.where(gap, T[:, :1].expand_as(Ta), Ta), valid)
        lo, hi = cell_soc_window(core)
        obs = SubspaceObserver(core, hi - lo, config)
        sto = start_stoichiometry(core, V[:, 0], I[:, 0], T[:, 0], cell_lines(core), prior, lo,
                                  hi, config.history_s, after=after, period=period)
        stream = cls(obs, obs.init_loaded(sto, I[:, 0], T[:, 0], lo, hi), grid)
        stream._last_T = T[:, 0]
        return stream

    def step(self, V, I, T, dt: float) -> StreamEstimate:
        """Predict over one sample, correct with its voltage, return the estimates at its end."""
        V, I, T, filled = self._sample(V, I, T, dt, "SubspaceStream.step")
        # inference mode: less dispatch overhead than no_grad (the stream never back-propagates)
        with torch.inference_mode():
            est, v_model, _, out = self.observer.step_outputs(self.estimate, I, T, V, dt)
        self.estimate, self.state, self._last_T, self._stepped = est, est.state, T, True
        return self._filtered(out, est.state, V, v_model, filled)

    def run(self, V, I, T, dt: float) -> list[StreamEstimate]:
        """The whole-sequence path: V, I, T [B, K] -> estimates at samples 1..K (one
        :meth:`SubspaceObserver.run`; the stream's estimate moves to the end)."""
        if self._stepped:
            raise ValueError("SubspaceStream.run: call it on a fresh stream (no step() before)")
        V, I, T, filled = self._sequence(V, I, T, dt, "SubspaceStream.run")
        states, volts, est, outs = self.observer.run(self.estimate, I, T, V, dt, outputs=True)
        self.estimate, self.state, self._last_T, self._stepped = est, est.state, T[:, -1], True
        with torch.no_grad():
            return [self._filtered(o, st, V[:, k], volts[:, k], filled[:, k])
                    for k, (st, o) in enumerate(zip(states, outs))]

    def _filtered(self, out, state, V: Tensor, v_model: Tensor, filled: Tensor
                  ) -> StreamEstimate:
        est = self._estimate(out, state.c_n, state.c_p, V, filled)
        return est._replace(voltage=v_model, innovation=V - v_model)
