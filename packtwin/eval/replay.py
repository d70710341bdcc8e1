"""``packtwin replay --checkpoint CKPT --store STORE [--speed 60] [--out OUT] [--max-samples N]``.

Streams a store (measured from ``packtwin ingest``, or simulated: only its measured variables are
read) through the streaming twin (:class:`packtwin.model.stream.TwinStream`) one sample of the
whole pack at a time, paced at ``--speed`` times real time (0: as fast as possible), as a
battery-management system would see it. Each cycle (scenario x snapshot) starts a new stream at
its first sample (the rested cell's voltage). Every ``--every`` samples a pack summary line is
printed (SOC mean and spread, worst voltage error, lowest plating margin); an alarm line is
printed when a condition starts:

* ``plating``: a cell's estimated plating margin below ``--plating-alarm`` [V] (default 0),
* ``soc_spread``: max - min SOC across the pack above ``--soc-spread-alarm`` (default 0.10),
* ``voltage``: a cell's |estimated - measured voltage| above ``--voltage-alarm`` [V] (default
  0.05): the twin no longer explains that cell's measurement.

Cells are new by default (the embedding table's mean for every cell: nothing is fitted from data
the stream has not seen yet); ``--trained-cells`` uses the table's rows when the store's cells
are the training store's. ``--out`` writes the streamed estimates as an estimate store of one member
(``schema.validate(ds, kind="estimate")``, as ``packtwin estimate`` writes with one checkpoint)
aligned with the input (same scenario, cell, snapshot and time coordinates; samples not streamed
are NaN), with the run and its alarms in ``attrs["replay"]``.

``--app [--port P] [--show]`` serves the replay as a live page instead
(:mod:`packtwin.app.live`): the same :class:`Run` advanced by the page's periodic callback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from packtwin import quantities
from packtwin.data import outputs, windows
from packtwin.errors import PacktwinError
from packtwin.model.stream import TwinStream
from packtwin.quantities import Features


class ReplayError(PacktwinError, ValueError):
    """The replay cannot run as asked; the message names the problem."""


@dataclass
class Alarms:
    """Thresholds and the alarm events so far (a condition is reported when it starts)."""

    plating: float = 0.0
    soc_spread: float = 0.10
    voltage: float = 0.05
    events: list[dict] = field(default_factory=list)
    _active: dict = field(default_factory=dict)

    def check(self, where: dict, est: dict, v_meas: torch.Tensor, cells: np.ndarray) -> list[str]:
        """New alarm lines for this sample (conditions that were not active at the last one)."""
        soc = est["soc"]
        verr = (est["voltage"] - v_meas).abs()
        now = {"plating": cells[(est["plating_margin"] < self.plating).numpy()].tolist(),
               "voltage": cells[(verr > self.voltage).numpy()].tolist(),
               "soc_spread": ["pack"] if float(soc.max() - soc.min()) > self.soc_spread else []}
        lines = []
        for kind, who in now.items():
            started = sorted(set(who) - set(self._active.get(kind, [])), key=str)
            if started:
                event = {"alarm": kind, **where, "cells": started}
                if kind == "soc_spread":
                    event["spread"] = float(soc.max() - soc.min())
                self.events.append(event)
                lines.append(f"ALARM {kind}: {_where(where)} "
                             + (f"SOC spread {event['spread']:.3f} > {self.soc_spread:g}"
                                if kind == "soc_spread" else f"cells {started}"))
        self._active = now
        return lines

    def reset(self) -> None:
        self._active = {}


def _where(w: dict) -> str:
    return f"scenario {w['scenario']} snapshot {w['snapshot']} t={w['time_s']:g} s"


def summary_line(where: dict, est: dict, v_meas: torch.Tensor, cells: np.ndarray) -> str:
    soc, margin = est["soc"], est["plating_margin"]
    verr = (est["voltage"] - v_meas).abs()
    k, m = int(verr.argmax()), int(margin.argmin())
    return (f"{_where(where)} | SOC mean {float(soc.mean()):.3f} [{float(soc.min()):.3f}, "
            f"{float(soc.max()):.3f}] spread {float(soc.max() - soc.min()):.3f} | V error max "
            f"{1e3 * float(verr[k]):.1f} mV (cell {cells[k]}) | plating margin min "
            f"{1e3 * float(margin[m]):.1f} mV (cell {cells[m]})")


@dataclass
class Sample:
    """One streamed pack sample: where it is, every cell's estimates and the alarms it started."""

    where: dict  # scenario, snapshot, time_s [s] (store clock), sample (time index)
    rows: np.ndarray  # rows of the sequences, in cell order
    cells: np.ndarray  # the cells of those rows
    est: dict  # quantities.NET_OUTPUTS -> [n_cells, ...] tensors
    v_meas: torch.Tensor  # [n_cells] measured voltage [V]
    alarms: list[str]  # alarm lines of the conditions that started at this sample
    index: int  # pack samples streamed before this one
    new_cycle: bool  # the first sample of a (scenario, snapshot) cycle


class Run:
    """The replay's stepping loop as an iterator of :class:`Sample` (the CLI printer and the live
    app both consume it), with its record (samples, wall time, per-step latency, alarm events).

    Args:
        net: the TwinNet.
        seq: the store's sequences (``windows.load_sequences``), rows scenario x cell x
            snapshot; every cell of a (scenario, snapshot) is one pack sample.
        embeddings: [n_cells of seq, d], in the order of ``np.unique(seq.cell)``.
        speed: multiple of real time (0: no pacing, e.g. when the caller paces); sample k of a
            cycle is due at (t_k - t_0) / speed after the cycle's start.
        max_samples: stop after this many pack samples (None: all).
        sleep, clock: injected for tests.
    """

    def __init__(self, net, seq: windows.Sequences, embeddings: torch.Tensor, speed: float = 0.0,
                 max_samples: int | None = None, alarms: Alarms | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        if speed < 0:
            raise ReplayError(f"--speed must be >= 0 (0: as fast as possible), got {speed}")
        self.net, self.seq, self.embeddings = net, seq, embeddings
        self.speed, self.max_samples = speed, max_samples
        self.alarms = alarms or Alarms()
        self.sleep, self.clock = sleep, clock
        self.cells = np.unique(seq.cell)
        self.done, self._step_s, self._lag_s, self._t_start = 0, [], 0.0, None

    def period_s(self) -> float:
        """The store's sample period [s] (median step of the first row's clock)."""
        t = Features.unpack(torch.from_numpy(self.seq.features[:1])).time[0].numpy()
        ok = self.seq.valid[0].astype(bool)
        return float(np.median(np.diff(t[ok]))) if ok.sum() > 1 else 1.0

    def __iter__(self) -> Iterator[Sample]:
        seq, clock = self.seq, self.clock
        f = Features.unpack(torch.from_numpy(seq.features))
        groups = sorted({(int(a), int(b)) for a, b in zip(seq.scenario, seq.snapshot)})
        self._t_start = clock()
        stream = TwinStream(self.net, embeddings=self.embeddings)
        for scenario, snapshot in groups:
            rows = np.flatnonzero((seq.scenario == scenario) & (seq.snapshot == snapshot))
            rows = rows[np.argsort(seq.cell[rows], kind="stable")]
            samples = np.flatnonzero(seq.valid[rows].all(axis=0))
            if not samples.size or self._full():
                continue
            time_s = f.time[rows]
            stream.reset(time0=float(time_s[0, samples[0]]))
            self.alarms.reset()
            t0_wall, prev = clock(), None
            for k in samples:
                if self._full():
                    break
                if self.speed > 0:
                    due = t0_wall + float(time_s[0, k] - time_s[0, samples[0]]) / self.speed
                    wait = due - clock()
                    if wait > 0:
                        self.sleep(wait)
                    else:
                        self._lag_s = max(self._lag_s, -wait)
                dt = torch.zeros(len(rows)) if prev is None else time_s[:, k] - time_s[:, prev]
                tic = time.perf_counter()
                est = stream.step(f.voltage[rows, k], f.current[rows, k], f.temperature[rows, k],
                                  dt, f.ambient_temperature[rows, k], f.cycle[rows, k])
                self._step_s.append(time.perf_counter() - tic)
                where = {"scenario": scenario, "snapshot": snapshot,
                         "time_s": float(time_s[0, k]), "sample": int(k)}
                v_meas = f.voltage[rows, k]
                lines = self.alarms.check(where, est, v_meas, seq.cell[rows])
                yield Sample(where, rows, seq.cell[rows], est, v_meas, lines, self.done,
                             prev is None)
                prev = k
                self.done += 1

    def _full(self) -> bool:
        return self.max_samples is not None and self.done >= self.max_samples

    def record(self) -> dict:
        """What was streamed so far; raises if nothing was."""
        if not self.done:
            raise ReplayError("no valid pack sample to stream (every sample of the selection has "
                              "a cell with valid = 0)")
        a = self.alarms
        return {"samples": self.done, "cells": int(len(self.cells)), "speed": self.speed,
                "wall_s": round(self.clock() - self._t_start, 3),
                "max_lag_s": round(self._lag_s, 3),
                "step_ms_median": round(1e3 * float(np.median(self._step_s)), 4),
                "step_ms_max": round(1e3 * float(np.max(self._step_s)), 4),
                "thresholds": {"plating_margin_below_V": a.plating,
                               "soc_spread_above": a.soc_spread,
                               "voltage_error_above_V": a.voltage},
                "alarms": a.events}


def replay(net, seq: windows.Sequences, embeddings: torch.Tensor, speed: float = 0.0,
           max_samples: int | None = None, every: int = 10, alarms: Alarms | None = None,
           say: Callable[[str], None] | None = print,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> tuple[dict, dict]:
    """Stream ``seq`` cycle by cycle (:class:`Run`), printing summaries every ``every`` samples
    (0: none) and alarm lines through ``say``; returns (outputs, record).

    outputs: ``quantities.NET_OUTPUTS`` -> [N, T, ...] float32 (NaN where not streamed).
    """
    run = Run(net, seq, embeddings, speed, max_samples, alarms, sleep, clock)
    n, n_t = seq.valid.shape
    outs: dict[str, np.ndarray] = {}
    for s in run:
        for name in quantities.NET_OUTPUTS:
            arr = s.est[name].numpy()
            if name not in outs:
                outs[name] = np.full((n, n_t) + arr.shape[1:], np.nan, dtype=np.float32)
            outs[name][s.rows, s.where["sample"]] = arr
        if say:
            if every and s.index % every == 0:
                say(summary_line(s.where, s.est, s.v_meas, s.cells))
            for line in s.alarms:
                say(line)
    return outs, run.record()


def cell_embeddings(net, cells: np.ndarray, trained: bool) -> torch.Tensor:
    """[len(cells), d]: the table's rows (``trained``) or its mean for every cell (new cells)."""
    table = net.embedding.weight.detach()
    if trained:
        if int(cells.max()) >= net.n_cells:
            raise ReplayError(f"--trained-cells: the store has cell {int(cells.max())}, the "
                              f"checkpoint's table has {net.n_cells} cells; drop "
                              f"--trained-cells to stream them as new cells")
        return table[torch.as_tensor(cells, dtype=torch.long)]
    return table.mean(0, keepdim=True).expand(len(cells), -1).clone()


def write_estimates(twin, ds, sel, seq: windows.Sequences, outs: dict, cells: np.ndarray,
                    emb: torch.Tensor, record: dict, out: str, inputs: Sequence[str]) -> None:
    """The streamed estimates as an estimate store of one member (``schema`` kind
    ``estimate``, as ``packtwin estimate`` writes with one checkpoint), aligned with the input."""
    from packtwin.eval import estimate, predict

    attrs = {"checkpoints": json.dumps([record["checkpoint"]]), "input_store": record["store"],
             "input_kind": record["input_kind"], "ensemble_size": 1,
             "uncertainty": json.dumps(estimate.describe_band(1, estimate.DEFAULT_LEVEL)),
             "embedding_fit": json.dumps({"what": "none: streamed causally; cells as "
                                                  + record["cells_as"]}),
             "replay": json.dumps(record)}
    embeddings = {int(c): emb[i] for i, c in enumerate(cells)}
    ds_out = predict.assemble(twin.module, estimate.with_grid(ds, twin.store_info), sel, seq,
                              [{k: torch.from_numpy(v) for k, v in outs.items()}], embeddings,
                              attrs, schema_kind=estimate.SCHEMA_KIND)
    ds_out.attrs.pop("adapted_cells", None)
    for e in quantities.ELECTRODES:
        ds_out[e.variable].attrs["c_max"] = float(twin.net.c_max[e.index])
    predict.write_predictions(ds_out, out, inputs)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="packtwin replay",
        description="Stream a store through the streaming twin at a multiple of real time, "
                    "with pack summaries and alarms; optionally write the estimates.")
    p.add_argument("--checkpoint", required=True, help="TwinModule checkpoint")
    p.add_argument("--store", required=True, help="measured (packtwin ingest) or simulated store")
    p.add_argument("--speed", type=float, default=60.0,
                   help="multiple of real time (default 60: a 1 h cycle in 1 min; 0: no pacing)")
    p.add_argument("--out", help="write the streamed estimates to this store (.zarr)")
    p.add_argument("--max-samples", type=int, default=None, help="stop after N pack samples")
    p.add_argument("--every", type=int, default=10, help="a summary line every N samples (0: none)")
    p.add_argument("--scenarios", type=str, default=None, help="positional scenarios, e.g. 0,2")
    p.add_argument("--snapshots", type=str, default=None, help="positional snapshots")
    p.add_argument("--trained-cells", action="store_true",
                   help="the store's cells are the training store's: use their embeddings")
    p.add_argument("--plating-alarm", type=float, default=0.0, help="[V] margin below: alarm")
    p.add_argument("--soc-spread-alarm", type=float, default=0.10, help="SOC spread above: alarm")
    p.add_argument("--voltage-alarm", type=float, default=0.05,
                   help="[V] |estimated - measured voltage| above: alarm")
    p.add_argument("--quiet", action="store_true", help="no summary or alarm lines")
    p.add_argument("--app", action="store_true",
                   help="watch it live: serve a page on 127.0.0.1 (per-cell SOC and voltage, "
                        "SOC and plating-margin bars, alarms; play/pause and speed)")
    p.add_argument("--port", type=int, default=5006, help="--app: port (0: any free port)")
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                   help="--app: open a browser tab")
    return p


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ReplayError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from packtwin.eval import estimate, predict
    from packtwin.model.checkpoint import load_twin
    from packtwin.model.module import check_normalisation

    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    inputs = [args.store, args.checkpoint]
    if args.out:
        outputs.guard(args.out, predict.PREDICTION_KIND, inputs, what="--out")
    if args.speed < 0:  # before anything is loaded
        raise ReplayError(f"--speed must be >= 0 (0: as fast as possible), got {args.speed}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ReplayError(f"--max-samples must be >= 1, got {args.max_samples}")
    if args.app and args.out:
        raise ReplayError("--out and --app do not go together: the page streams; run without "
                          "--app to write the estimates")
    say = None if args.quiet else print
    twin = load_twin(args.checkpoint)
    ds, kind = estimate.open_input(args.store)
    estimate.check_compatible(twin.module, ds, args.checkpoint)
    sel = predict.selection_of(ds, _ints(args.scenarios), None, _ints(args.snapshots))
    seq = windows.load_sequences(ds, sel, with_targets=False, source=f"store {args.store!r}")
    estimate.check_first_samples(seq, args.store)
    check_normalisation(twin.net, seq, f"store {args.store!r} for checkpoint "
                                       f"{args.checkpoint!r}")
    cells = np.unique(seq.cell)
    emb = cell_embeddings(twin.net, cells, args.trained_cells)

    def alarms() -> Alarms:
        return Alarms(args.plating_alarm, args.soc_spread_alarm, args.voltage_alarm)

    if args.app:
        try:
            from packtwin.app.live import serve_live
        except ImportError as exc:
            raise ReplayError(f"--app needs the app extra (pip install 'packtwin[app]'): "
                              f"{exc}") from None

        return serve_live(lambda: Run(twin.net, seq, emb, 0.0, args.max_samples, alarms()),
                          args.speed, args.port, args.show,
                          f"**store** `{args.store}`  \n**checkpoint** `{args.checkpoint}`",
                          f"packtwin replay: streaming {args.store} live")
    outs, record = replay(twin.net, seq, emb, args.speed, args.max_samples, args.every,
                          alarms(), say)
    record.update({"checkpoint": str(args.checkpoint), "store": str(args.store),
                   "input_kind": kind, "cells_as": "trained" if args.trained_cells else "new"})
    if args.out:
        write_estimates(twin, ds, sel, seq, outs, cells, emb, record, args.out, inputs)
    if say:
        say(f"replayed {record['samples']} pack samples x {record['cells']} cells in "
            f"{record['wall_s']:.2f} s (speed {args.speed:g}; step median "
            f"{record['step_ms_median']:.3f} ms); {len(record['alarms'])} alarm(s)"
            + (f"; wrote {args.out}" if args.out else ""))
    return 0
