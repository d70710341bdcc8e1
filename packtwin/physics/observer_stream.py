"""A pack streamed through the reduced core, sample by sample (issue 9, item 7).

:class:`PackStream` holds the per-cell :class:`~packtwin.physics.core.CoreState` of a whole pack.
Each :meth:`PackStream.step` takes one sample (measured voltage V, current I, temperature T of
every cell, and the period dt) and returns :class:`StreamEstimate`: concentrations on the core's
particles and, given a store's grid, on that grid, surface concentrations, SOC, the modelled
voltage and its innovation (measured minus modelled), and the plating margin.
:meth:`PackStream.run` is the whole-sequence call (:meth:`ReducedCore.simulate`, autograd-ready,
for training); both give the same estimates (tested).

Conventions (the stores'): I and T of sample k hold over the period ending at k (discharge > 0);
V is read at its end. Any period is accepted (the core sub-steps at <= ``max_substep_s``); the
issue asks for 1-60 s.

Bad input is refused before anything changes (the stream's state is kept, nothing computed is
lost), with the sample and cells named:

* a cell count that differs from the pack's;
* a NaN / inf current or period (the state cannot be propagated without the charge passed;
  interpolate the gap first);
* a NaN temperature is replaced by the cell's last valid one (temperature moves slowly; the
  estimate says which cells were filled) and refused when no valid one was seen yet;
* a NaN voltage only leaves that cell's innovation NaN (the open-loop core does not read V);
* :meth:`PackStream.from_rest` reads the first voltage as an open-circuit voltage and refuses a
  first sample under load (|I| above ``rest_current_a``): under load V holds the overpotentials
  and the inverted SOC would be wrong by tens of percent (measured in issue 9). Start such a log
  from a prior state instead (:meth:`PackStream.__init__`, e.g. from the EKF).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.core import CoreOutputs, CoreState, ReducedCore
from packtwin.physics.ocv_inversion import StoichiometryLine, invert_ocv


class StreamEstimate(NamedTuple):
    """Per cell [B] unless noted."""

    voltage: Tensor  # modelled terminal voltage [V]
    innovation: Tensor  # measured minus modelled voltage [V] (NaN where V was NaN)
    soc: Tensor  # [1]: negative electrode-mean stoichiometry within the cell's SOC window
    c_n_surf: Tensor  # [B, Xn] surface concentrations on the core's particles [mol/m3]
    c_p_surf: Tensor  # [B, Xp]
    c_n_avg: Tensor  # electrode-mean concentrations [mol/m3]
    c_p_avg: Tensor
    plating_margin: Tensor  # phi_s - phi_e at the negative electrode/separator face [V]
    c_s_n: Tensor | None  # [B, len(x_n), len(r_n)] on the store's grid, or None
    c_s_p: Tensor | None
    temperature_filled: Tensor  # bool: T was NaN and the last valid value was used


def cell_lines(core: ReducedCore) -> StoichiometryLine:
    """Each cell's lithium-inventory line (tensor fields [B]) from its own parameters."""
    c, p = core.design.constants, core.params
    vol_n = p.eps_s_n * c.neg.L * c.neg.A
    vol_p = p.eps_s_p * c.pos.L * c.pos.A
    return StoichiometryLine(p.c_n_init * vol_n + core.design.c_p_init * vol_p,
                             c.neg.c_max * vol_n, c.pos.c_max * vol_p)


def cell_soc_window(core: ReducedCore) -> tuple[Tensor, Tensor]:
    """Each cell's negative stoichiometry at 0 % and 100 % SOC [B]: where its own OCV meets the
    voltage limits (the per-cell, tensor form of :func:`ocv_inversion.soc_window`)."""
    c = core.design.constants
    n = core.params.n_cells
    v = torch.tensor([c.v_min, c.v_max], dtype=core.dtype)
    line = cell_lines(core)
    return invert_ocv(v[0].expand(n), line), invert_ocv(v[1].expand(n), line)


class PackStream:
    """Per-cell state of a pack stepped through the core one sample at a time.

    Args:
        core: the pack's core (per-cell parameters).
        state: the state at the sample before the first one to be stepped.
        grid: optional store grid {"x_n", "r_n", "x_p", "r_p"} (x in metres from the negative
            collector, r as a fraction of the radius: ``packtwin.schema``) for the fields.
        rest_current_a: |I| below which a sample counts as rest [A].
    """

    def __init__(self, core: ReducedCore, state: CoreState, grid: dict | None = None,
                 rest_current_a: float = 0.05):
        self.core = core
        self.state = state
        self.grid = None if grid is None else {k: torch.as_tensor(np.asarray(grid[k]),
                                                                  dtype=core.dtype)
                                               for k in ("x_n", "r_n", "x_p", "r_p")}
        self.rest_current_a = rest_current_a
        self.n_cells = core.params.n_cells
        self._last_I: Tensor | None = None
        self._guess: tuple[Tensor, Tensor] | None = None
        self._last_T: Tensor | None = None
        self.sto_window = cell_soc_window(core)

    @classmethod
    def from_rest(cls, core: ReducedCore, V0, I0, T0, grid: dict | None = None,
                  rest_current_a: float = 0.05) -> "PackStream":
        """Start from a first sample at rest: each cell's V0 read as its open-circuit voltage.

        Raises:
            ValueError: a first sample under load, or NaN in it (cells named).
        """
        B = core.params.n_cells
        V0, I0, T0 = (_as_cells(x, B, core.dtype, name) for x, name in
                      ((V0, "V0"), (I0, "I0"), (T0, "T0")))
        bad = ~torch.isfinite(V0) | ~torch.isfinite(I0)
        if bad.any():
            raise ValueError(f"PackStream.from_rest: the first sample has NaN/inf voltage or "
                             f"current in cells {_cells(bad)}; a rested start needs both")
        loaded = I0.abs() > rest_current_a
        if loaded.any():
            raise ValueError(
                f"PackStream.from_rest: the first sample is under load in cells "
                f"{_cells(loaded)} (|I| up to {float(I0.abs().max()):.3g} A > "
                f"{rest_current_a} A): its voltage is not an open-circuit voltage. Start from a "
                f"prior state instead (PackStream(core, state), e.g. an EKF's estimate)")
        line = cell_lines(core)
        sto_n = invert_ocv(V0, line)
        c_p = line.sto_p(sto_n) * core.design.constants.pos.c_max
        state = core.initial_state(sto_n * core.design.constants.neg.c_max, c_p)
        stream = cls(core, state, grid, rest_current_a)
        stream._last_T = T0  # a NaN here is refused if a later sample needs it
        return stream

    # -- one sample --------------------------------------------------------------------------
    def step(self, V, I, T, dt: float) -> StreamEstimate:
        """Advance the pack by one sample and return the estimates at its end."""
        V, I, T, filled = self._sample(V, I, T, dt, "PackStream.step")
        # Warm-start Newton only when no cell's current changed: ReducedCore.simulate's rule,
        # so that the stream and the whole-sequence call give the same numbers.
        same = self._last_I is not None and bool((I == self._last_I).all())
        # inference mode: ~20-30 % less dispatch overhead than no_grad (the stream never
        # back-propagates; run() is the differentiable path)
        with torch.inference_mode():
            state, guess = self.core.advance(self.state, I, T, dt, self._guess if same else None)
            out = self.core.measure(state, I, T, guess)
        self.state, self._guess, self._last_I, self._last_T = state, guess, I, T
        return self._estimate(out, state.c_n, state.c_p, V, filled)

    # -- a whole sequence ----------------------------------------------------------------------
    def run(self, V, I, T, dt: float) -> list[StreamEstimate]:
        """The whole-sequence path: V, I, T [B, K] -> estimates at samples 1..K (one
        :meth:`ReducedCore.simulate` call; the stream's state moves to the end)."""
        V, I, T, filled = self._sequence(V, I, T, dt, "PackStream.run")
        state, out = self.core.simulate(self.state, I, T, dt)
        self.state, self._last_I, self._last_T = state, I[:, -1], T[:, -1]
        ests = []
        for k in range(I.shape[1]):
            o = CoreOutputs(*(out[name][:, k] for name in CoreOutputs._fields))
            ests.append(self._estimate(o, out["c_n"][:, k], out["c_p"][:, k], V[:, k],
                                       filled[:, k]))
        return ests

    # -- helpers -------------------------------------------------------------------------------
    def _sample(self, V, I, T, dt, who: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One sample's V, I, T [B] checked (cell count, period, finite current) and T filled."""
        B, dtype = self.n_cells, self.core.dtype
        V, I, T = (_as_cells(x, B, dtype, name) for x, name in ((V, "V"), (I, "I"), (T, "T")))
        _check_period(dt)
        if not torch.isfinite(I).all():
            raise ValueError(f"{who}: NaN/inf current in cells "
                             f"{_cells(~torch.isfinite(I))}; the state cannot be propagated "
                             f"without the charge passed (interpolate the gap first)")
        T, filled = self._fill_temperature(T[:, None], who)
        return V, I, T[:, 0], filled[:, 0]

    def _sequence(self, V, I, T, dt, who: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`_sample` for whole sequences [B, K], on a fresh stream only."""
        if self._last_I is not None:
            raise ValueError(f"{who}: call it on a fresh stream (no step() before): "
                             "it starts from the stream's state with a cold Newton start")
        B, dtype = self.n_cells, self.core.dtype
        V, I, T = (_as_cells(x, B, dtype, name, seq=True) for x, name in
                   ((V, "V"), (I, "I"), (T, "T")))
        _check_period(dt)
        if not (V.shape == I.shape == T.shape):
            raise ValueError(f"{who}: V, I, T shapes differ: {tuple(V.shape)}, "
                             f"{tuple(I.shape)}, {tuple(T.shape)}")
        bad = ~torch.isfinite(I)
        if bad.any():
            k = int(bad.any(0).nonzero()[0])
            raise ValueError(f"{who}: NaN/inf current at sample {k} in cells "
                             f"{_cells(bad[:, k])}; interpolate the gap first")
        T, filled = self._fill_temperature(T, who)
        return V, I, T, filled

    def _fill_temperature(self, T: Tensor, who: str) -> tuple[Tensor, Tensor]:
        """Forward-fill NaN temperatures [B, K] per cell from the last valid value."""
        filled = ~torch.isfinite(T)
        if not filled.any():
            return T, filled
        last = self._last_T
        cols = []
        for k in range(T.shape[1]):
            col = T[:, k] if last is None else torch.where(filled[:, k], last, T[:, k])
            if not torch.isfinite(col).all():
                raise ValueError(f"{who}: NaN temperature at sample {k} in cells "
                                 f"{_cells(~torch.isfinite(col))} with no earlier valid value "
                                 f"to hold")
            cols.append(col)
            last = col
        return torch.stack(cols, 1), filled

    def _estimate(self, out: CoreOutputs, c_n: Tensor, c_p: Tensor, V: Tensor,
                  filled: Tensor) -> StreamEstimate:
        core = self.core
        c_max_n = core.design.constants.neg.c_max
        lo, hi = self.sto_window
        soc = (out.c_n_avg / c_max_n - lo) / (hi - lo)
        fields = (None, None)
        if self.grid is not None:
            g = self.grid
            fields = (core.particle_field(c_n, out.c_n_surf, core.grid_x.x_n(core.dtype),
                                          g["x_n"], g["r_n"]),
                      core.particle_field(c_p, out.c_p_surf, core.grid_x.x_p(core.dtype),
                                          g["x_p"], g["r_p"]))
        return StreamEstimate(out.voltage, V - out.voltage, soc, out.c_n_surf, out.c_p_surf,
                              out.c_n_avg, out.c_p_avg, out.plating_margin, fields[0],
                              fields[1], filled)


def _as_cells(x, n_cells: int, dtype, name: str, seq: bool = False) -> Tensor:
    t = torch.as_tensor(x, dtype=dtype)
    if t.dim() == 0 and not seq:
        t = t.expand(n_cells)
    want = "[cells, samples]" if seq else "[cells]"
    if t.dim() != (2 if seq else 1) or t.shape[0] != n_cells:
        raise ValueError(f"PackStream: {name} has shape {tuple(t.shape)}, expected {want} with "
                         f"{n_cells} cells (the pack's core was built for {n_cells})")
    return t


def _check_period(dt) -> None:
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"PackStream: the period dt must be a finite number of seconds > 0, "
                         f"got {dt!r}")


def _cells(mask: Tensor) -> list[int]:
    idx = mask.nonzero().flatten().tolist()
    return idx if len(idx) <= 10 else idx[:10] + [f"... {len(idx)} in all"]
