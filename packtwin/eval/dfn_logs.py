"""Observer logs made by PyBaMM's DFN (the project's truth), laid out like
:mod:`packtwin.eval.observer_bench`'s logs.

Each cell (the generator's own draw, :func:`draw`) is solved by the DFN with the generator's
options (:func:`packtwin.sim.reference.run_profile`: SEI, plating, lumped thermal) from its
charged rest state: first a lead-in (constant current for a drawn time, optionally followed by a
rest), then the condition's load. The log starts at the end of the lead-in (sample 0, under load
unless the condition rests first) and holds the condition's load. The truth fields are the DFN's
c_s(x, r) on its own nodes interpolated onto the core's grid (particle centres through the
thickness, shell centres in r; linear, :func:`to_core_grid`); the measured voltage is the DFN's
plus Gaussian noise, the temperature input the DFN's lumped temperature.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from packtwin.eval.observer_bench import NOISE_V, prior_soc_errors, soc_of
from packtwin.physics.core import CoreState, ReducedCore, map_state
from packtwin.physics.core_grid import interp_linear
from packtwin.physics.observer_stream import cell_lines, cell_soc_window
from packtwin.physics.ocv_inversion import invert_ocv

CAPACITY_AH = 5.0
PRIORS = ("offset", "ocv")
MAX_DRAWS = 4  # draws of a cell's lead-in (and drive) before a DFN failure is raised


@dataclass(frozen=True)
class Condition:
    """One kind of log.

    ``profile``: the log's load [(C-rate, seconds)] (discharge > 0), or ``drive=True`` for a
    random piecewise-constant drive of ``drive_s`` seconds per cell (:func:`random_drive`);
    ``scale``: the profile's C-rates times a factor drawn per cell in this range;
    ``lead_s`` / ``lead_c``: the lead-in's duration [s] and C-rate, drawn per cell in these ranges;
    ``rest_s``: a rest after the lead-in (a rested start); ``prior``: ``"offset"`` (true SOC
    +- ``soc_error``, random sign) or ``"ocv"`` (the first noisy voltage read as an OCV).
    """

    name: str
    ambient_c: float
    profile: tuple[tuple[float, float], ...] = ()
    drive: bool = False
    drive_s: float = 600.0
    scale: tuple[float, float] = (1.0, 1.0)
    lead_s: tuple[float, float] = (120.0, 1200.0)
    lead_c: tuple[float, float] = (1.0, 1.0)
    rest_s: float = 0.0
    prior: str = "offset"
    soc_error: tuple[float, float] = (0.3, 0.3)

    def __post_init__(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"Condition {self.name!r}: prior must be one of {PRIORS}, "
                             f"got {self.prior!r}")
        if not self.drive and not self.profile:
            raise ValueError(f"Condition {self.name!r}: give a profile or drive=True")


def pulses(repeats: int = 2) -> tuple[tuple[float, float], ...]:
    """The generator's drive-like pulse pattern (C-rate, seconds), ``repeats`` times."""
    from packtwin.sim.config import GenerateConfig

    return tuple((float(c), float(s)) for c, s in GenerateConfig().protocol.pulse_pattern) * repeats


def random_drive(gen: torch.Generator, duration_s: float, period: float,
                 c_range: tuple[float, float] = (0.5, 1.0)) -> list[tuple[float, float]]:
    """Segments of 60-180 s: rest (20 %), charge at 0.25-0.5C (15 %) or discharge in
    ``c_range``; durations multiples of ``period``."""
    out, left = [], duration_s
    while left > 0:
        seg = min(left, period * int(torch.randint(int(60 / period), int(180 / period) + 1, (1,),
                                                   generator=gen)))
        u = float(torch.rand(1, generator=gen))
        v = float(torch.rand(1, generator=gen))
        c = 0.0 if u < 0.2 else (-(0.25 + 0.25 * v) if u < 0.35
                                 else c_range[0] + (c_range[1] - c_range[0]) * v)
        out.append((c, seg))
        left -= seg
    return out


def draw(seed: int, n: int) -> tuple[list[dict], dict]:
    """The generator's cell-to-cell draw for ``n`` cells with ``seed`` (its default variation);
    checked physical like the generator's."""
    from packtwin.sim.config import GenerateConfig
    from packtwin.sim.generate import check_cells, draw_cells

    cfg = GenerateConfig()
    cfg = dataclasses.replace(cfg, seed=seed,
                              pack=dataclasses.replace(cfg.pack, n_series=n, n_parallel=1))
    cells, nominal = draw_cells(cfg)
    check_cells(cfg, cells, nominal)
    return cells, nominal


def to_core_grid(core: ReducedCore, field_: np.ndarray, x_src, r_src, electrode: str) -> Tensor:
    """DFN field [..., x_src, r_src] -> [..., X, Nr] on the core's particles and shell centres
    (linear in r, then in x; constant beyond the source's end nodes)."""
    x_core = core.grid_x.x_n(core.dtype) if electrode == "n" else core.grid_x.x_p(core.dtype)
    f = torch.as_tensor(np.asarray(field_), dtype=core.dtype)
    in_r = interp_linear(core.sphere["centres"], torch.as_tensor(np.asarray(r_src), dtype=core.dtype), f)
    moved = interp_linear(x_core, torch.as_tensor(np.asarray(x_src), dtype=core.dtype),
                          in_r.transpose(-1, -2))
    return moved.transpose(-1, -2)


def state_from_fields(core: ReducedCore, c_s_n, c_s_p, c_e, grid) -> CoreState:
    """A core state from DFN fields at one instant: c_s_n [B, x_n, r_n], c_s_p [B, x_p, r_p]
    and c_e [B, x] on the coordinates ``grid["x_n"]``, ``["r_n"]``, ``["x_p"]``, ``["r_p"]``,
    ``["x"]`` (a DFN run's dict or a store), interpolated onto the core's grid; the core's own
    SEI thickness."""
    dtype = core.dtype
    return CoreState(to_core_grid(core, c_s_n, grid["x_n"], grid["r_n"], "n"),
                     to_core_grid(core, c_s_p, grid["x_p"], grid["r_p"], "p"),
                     interp_linear(core.grid_x.centres(dtype),
                                   torch.as_tensor(np.asarray(grid["x"]), dtype=dtype),
                                   torch.as_tensor(np.asarray(c_e, dtype=float), dtype=dtype)),
                     core.params.L_sei.clone())


def _draw_segments(cond: Condition, period: float, gen: torch.Generator):
    """One cell's lead-in and load [(A, s)] for ``cond``."""
    lo_s, hi_s = cond.lead_s
    lead = period * int(torch.randint(int(lo_s / period), int(hi_s / period) + 1, (1,),
                                      generator=gen))
    lead_c = cond.lead_c[0] + (cond.lead_c[1] - cond.lead_c[0]) * float(
        torch.rand(1, generator=gen))
    scale = cond.scale[0] + (cond.scale[1] - cond.scale[0]) * float(torch.rand(1, generator=gen))
    load = random_drive(gen, cond.drive_s, period) if cond.drive else list(cond.profile)
    segments = [(CAPACITY_AH * lead_c, lead)]
    if cond.rest_s > 0:
        segments.append((0.0, cond.rest_s))
    segments += [(CAPACITY_AH * scale * c, s) for c, s in load]
    return lead, segments, load


def dfn_logs(core: ReducedCore, cells: Sequence[dict], nominal: dict, cond: Condition,
             period: float, gen: torch.Generator, dfn_cfg=None) -> dict:
    """One log per cell of ``cells`` (the true parameters of ``core``'s cells, same order) for
    ``cond``; see the module doc. Adds to the log dict of :mod:`packtwin.eval.observer_bench`:
    ``I_start`` (the current over the step ending at sample 0), ``true_start`` (the DFN's
    state at sample 0 on the core's grid), ``soc_start``,
    ``prior_soc_error``, ``lead_s``, ``dfn_failures`` and ``dfn_seconds``.

    A cell whose DFN run fails (PyBaMM's solver error, or an early stop when the condition
    empties it) is drawn again (lead-in and drive), up to :data:`MAX_DRAWS` times; the failed
    draws are listed in ``dfn_failures`` (a draw without failures is unchanged by this).

    Raises:
        pybamm.SolverError, packtwin.sim.cell.StepTerminated: the last draw failed too.
    """
    import time

    import pybamm

    from packtwin.sim.cell import StepTerminated
    from packtwin.sim.reference import run_profile

    if len(cells) != core.params.n_cells:
        raise ValueError(f"dfn_logs: {len(cells)} cells but the core has {core.params.n_cells}")
    ambient = 273.15 + cond.ambient_c
    per_cell, leads, t0 = [], [], time.perf_counter()
    failures: list[dict] = []
    for b, cell in enumerate(cells):
        for attempt in range(MAX_DRAWS):
            lead, segments, load = _draw_segments(cond, period, gen)
            try:
                ref = run_profile(cell, nominal, segments, ambient, period, dfn_cfg)
                break
            except (pybamm.SolverError, StepTerminated) as err:  # draw again
                if attempt == MAX_DRAWS - 1:
                    raise
                failures.append({"cell": b, "lead_s": lead, "error": str(err)[:200]})
        k0 = int(round((lead + cond.rest_s) / period))
        K = int(round(sum(s for _, s in load) / period))
        per_cell.append((ref, k0, K))
        leads.append(lead)
    K = per_cell[0][2]
    dtype = core.dtype

    def stack(name, sl):
        return torch.as_tensor(np.stack([r[name][sl(k0)] for r, k0, _ in per_cell]), dtype=dtype)

    log_sl = lambda k0: slice(k0 + 1, k0 + 1 + K)  # noqa: E731
    ref0 = per_cell[0][0]
    c_n = to_core_grid(core, np.stack([r["c_s_n"][log_sl(k0)] for r, k0, _ in per_cell]),
                       ref0["x_n"], ref0["r_n"], "n")
    c_p = to_core_grid(core, np.stack([r["c_s_p"][log_sl(k0)] for r, k0, _ in per_cell]),
                       ref0["x_p"], ref0["r_p"], "p")
    at_start = (np.stack([r[f][k0] for r, k0, _ in per_cell]) for f in ("c_s_n", "c_s_p", "c_e"))
    true_start = state_from_fields(core, *at_start, ref0)
    V_true = stack("voltage", log_sl)
    noise = NOISE_V * torch.randn((V_true.shape[0], K + 1), generator=gen, dtype=dtype)
    lo, hi = cell_soc_window(core)
    soc_start = soc_of(core, true_start.c_n, lo, hi)
    B = len(cells)
    if cond.prior == "offset":
        prior_soc = (soc_start + prior_soc_errors(B, gen, *cond.soc_error, soc=soc_start)
                     ).clamp(0.02, 0.98)
    else:  # the first sample's voltage (noisy) read as an open-circuit voltage
        V0 = stack("voltage", lambda k0: k0) + noise[:, 0]
        prior_soc = ((invert_ocv(V0, cell_lines(core)) - lo) / (hi - lo)).clamp(0.0, 1.0)
    return {"I": stack("current", log_sl), "I_start": stack("current", lambda k0: k0),
            "T": stack("temperature", log_sl), "V_true": V_true,
            "V": V_true + noise[:, 1:], "c_n": c_n, "c_p": c_p, "true_start": true_start,
            "soc_start": soc_start, "prior_soc": prior_soc, "prior_soc_error": prior_soc - soc_start,
            "lead_s": leads, "dfn_failures": failures, "dfn_seconds": time.perf_counter() - t0}


def cat_logs(logs: Sequence[dict]) -> dict:
    """Logs of the same length side by side (cells concatenated)."""
    out: dict = {}
    for key, val in logs[0].items():
        vals = [lg[key] for lg in logs]
        if isinstance(val, Tensor):
            out[key] = torch.cat(vals, 0)
        elif isinstance(val, CoreState):
            out[key] = map_state(lambda *f: torch.cat(f, 0), *vals)
        elif isinstance(val, list):
            out[key] = [x for v in vals for x in v]
        else:
            out[key] = vals
    return out
