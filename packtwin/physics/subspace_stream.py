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
:meth:`SubspaceStream.run` takes a whole sequence (checked as a whole, then stepped); without
a restart the estimates equal :meth:`SubspaceObserver.run`'s, the training path (tested), and
the evaluate row's (:mod:`packtwin.eval.observer_predict`).

Divergence reset (:mod:`packtwin.physics.divergence`, the evaluate rows' rule): a cell whose
state turns non-finite or whose one-step-ahead voltage stays more than 0.5 V off for 30 s is
restarted at that sample from the prior read at that sample (``restart_prior``: the stream's
own first-sample prior; after a "loaded_window" start, "loaded", as a real-time stream cannot
wait for the samples after a restart). Counted per cell in ``restarts``. A cell with a NaN
voltage at that sample waits for the next finite one. With the same prior the stream restarts
where the evaluate row does and gives its numbers (tested).

Without a restart, stepped through a store's cycle 1 and then its cycle 2 it gives the
evaluate row with ``observer_carry`` (cycle 2 goes on from cycle 1's final estimate; tested in
``tests/unit/test_observer_carry.py``). Cycle 2's sample 0 is not stepped: the generator records
it from the state cycle 1's final rest ended in, the same instant as cycle 1's last sample.
"""

from __future__ import annotations

from torch import Tensor
import torch

from packtwin.physics.core import ReducedCore
from packtwin.physics.divergence import diverged_samples, nonfinite, off_run
from packtwin.physics.observer_stream import (PackStream, StreamEstimate, _as_cells, _cells,
                                              cell_lines, cell_soc_window)
from packtwin.physics.loaded_inversion import SAMPLE_PRIORS, start_stoichiometry
from packtwin.physics.subspace_observer import (SubspaceConfig, SubspaceEstimate,
                                                SubspaceObserver, replace_cells)


class SubspaceStream(PackStream):
    """A pack's cells filtered by one :class:`SubspaceObserver`, one sample at a time.

    Args:
        observer: the filter (its core holds every cell's parameters).
        estimate: the estimate at the sample before the first one to be stepped.
        grid, rest_current_a: as :class:`PackStream`.
        restart_prior: the prior a divergence reset reads its sample with (one of
            :data:`packtwin.physics.loaded_inversion.SAMPLE_PRIORS`).
    """

    def __init__(self, observer: SubspaceObserver, estimate: SubspaceEstimate,
                 grid: dict | None = None, rest_current_a: float = 0.05,
                 restart_prior: str = "loaded"):
        if restart_prior not in SAMPLE_PRIORS:
            raise ValueError(f"SubspaceStream: restart_prior must be one of {SAMPLE_PRIORS}, "
                             f"got {restart_prior!r}")
        super().__init__(observer.core, estimate.state, grid, rest_current_a)
        self.observer, self.estimate = observer, estimate
        self.restart_prior = restart_prior
        self.restarts = torch.zeros(self.n_cells, dtype=torch.long)  # divergence resets per cell
        self._off_run = torch.zeros(self.n_cells, dtype=torch.long)
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
        stream = cls(obs, obs.init_loaded(sto, I0, T0, lo, hi), grid, restart_prior=prior)
        stream._last_T = T0
        return stream

    @classmethod
    def from_first_samples(cls, core: ReducedCore, V, I, T, period: float,
                           grid: dict | None = None, config: SubspaceConfig = SubspaceConfig(),
                           prior: str = "loaded_window", I_end=None) -> "SubspaceStream":
        """Start like the evaluate row with a prior that reads the samples after the first
        (``prior`` "loaded_window", :mod:`packtwin.physics.start_window`): V, I, T
        [cells, W + 1] are the first sample and the W after it (``period`` [s] apart, NaN where
        missing), buffered before the stream starts: a fixed lag of W samples at the start.
        The stream is returned at sample 0; step it from sample 1 on, the buffered ones
        included. ``I_end`` [cells, W + 1]: each sample's instant current where I is the
        period's mean (as :meth:`step`'s; None: I). Other priors read the first sample alone,
        as :meth:`from_first_sample`.

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
        if I_end is not None:
            Ie = _as_cells(I_end, B, core.dtype, "I_end", seq=True)
            if Ie.shape != I.shape:
                raise ValueError(f"SubspaceStream.from_first_samples: I_end has shape "
                                 f"{tuple(Ie.shape)}, expected that of I {tuple(I.shape)}")
            Ie = Ie[:, 1:]
            after += (torch.where(gap | ~torch.isfinite(Ie), after[1], Ie),)
        lo, hi = cell_soc_window(core)
        obs = SubspaceObserver(core, hi - lo, config)
        sto = start_stoichiometry(core, V[:, 0], I[:, 0], T[:, 0], cell_lines(core), prior, lo,
                                  hi, config.history_s, after=after, period=period)
        stream = cls(obs, obs.init_loaded(sto, I[:, 0], T[:, 0], lo, hi), grid)
        stream._last_T = T[:, 0]
        return stream

    def step(self, V, I, T, dt: float, I_end=None) -> StreamEstimate:
        """Predict over one sample, correct with its voltage, return the estimates at its end
        (a diverged cell restarted from the prior at this sample: module doc). ``I_end``: the
        current at the sample's instant where I is the period's mean (a store's
        ``current_end``); None: I is both, as a BMS that samples instants gives it."""
        V, I, T, filled = self._sample(V, I, T, dt, "SubspaceStream.step")
        if I_end is not None:
            I_end = _as_cells(I_end, self.n_cells, self.core.dtype, "I_end")
            if not torch.isfinite(I_end).all():
                raise ValueError(f"SubspaceStream.step: NaN/inf I_end in cells "
                                 f"{_cells(~torch.isfinite(I_end))}")
        # inference mode: less dispatch overhead than no_grad (the stream never back-propagates)
        with torch.inference_mode():
            est, v_model, _, out = self.observer.step_outputs(self.estimate, I, T, V, dt,
                                                              I_end)
            run = off_run(self._off_run, V, v_model)
            bad = (nonfinite(est.state) | (run >= diverged_samples(dt))) & torch.isfinite(V)
            if bad.any():
                est, out = self._restart(est, bad, V, I, T)
                v_model = torch.where(bad, out.voltage, v_model)
                run = torch.where(bad, torch.zeros_like(run), run)
                self.restarts = self.restarts + bad.long()
        self._off_run = run
        self.estimate, self.state, self._last_T, self._stepped = est, est.state, T, True
        return self._filtered(out, est.state, V, v_model, filled)

    def _restart(self, est: SubspaceEstimate, bad: Tensor, V: Tensor, I: Tensor, T: Tensor):
        """``est`` with the ``bad`` cells from the prior read at this sample, and the core's
        outputs at the result (the evaluate rows' restart)."""
        core, lo, hi = self.core, *self.sto_window
        sto = start_stoichiometry(core, V, I, T, cell_lines(core), self.restart_prior, lo, hi,
                                  self.observer.config.history_s)
        est = replace_cells(est, self.observer.init_loaded(sto, I, T, lo, hi), bad)
        return est, core.measure(est.state, I, T)

    def run(self, V, I, T, dt: float) -> list[StreamEstimate]:
        """The whole sequence V, I, T [B, K] -> estimates at samples 1..K, stepped (the input
        checked as a whole first, so that bad input changes nothing; the stream's estimate
        moves to the end). Without a restart the same numbers as
        :meth:`SubspaceObserver.run`, the training path (tested)."""
        if self._stepped:
            raise ValueError("SubspaceStream.run: call it on a fresh stream (no step() before)")
        V, I, T, _ = self._sequence(V, I, T, dt, "SubspaceStream.run")
        return [self.step(V[:, k], I[:, k], T[:, k], dt) for k in range(V.shape[1])]

    def _filtered(self, out, state, V: Tensor, v_model: Tensor, filled: Tensor
                  ) -> StreamEstimate:
        est = self._estimate(out, state.c_n, state.c_p, V, filled)
        return est._replace(voltage=v_model, innovation=V - v_model)
