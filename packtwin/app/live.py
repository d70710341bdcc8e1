"""The live page of ``packtwin replay --app``: the pack streamed through the twin as it happens.

A replay (:class:`packtwin.eval.replay.Run`, the CLI's own stepping loop) is advanced by a Panel
periodic callback, so every update runs in the page's document (no thread touches Bokeh models).
Each tick streams its samples into a HoloViews ``Buffer`` (per-cell SOC and voltage, measured vs
estimated, growing in time) and the latest sample into a ``Pipe`` (per-cell SOC and plating
margin bars); the alarm list is the replay's ``Alarms.events`` and the plating status is
``app.summary.plating_alarms`` over the cycle so far.

Pacing: at speed S a sample of period P is due every P / S seconds; the callback runs at that
period, or at :data:`MIN_TICK_MS` with several samples per tick when samples come faster than a
browser should redraw. Speed 0 streams one sample per :data:`MIN_TICK_MS`.
"""

from __future__ import annotations

import math
from typing import Callable

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from holoviews.streams import Buffer, Pipe

from packtwin.app import summary as sm
from packtwin.app.summary_view import _table, alarms_table
from packtwin.app.views import PALETTE, S_TO_MIN, _autohide_toolbar

hv.extension("bokeh", logo=False)

MIN_TICK_MS = 100  # fastest redraw asked of the browser
LINE_COLUMNS = ("time_min", "cell", "soc", "v_est", "v_meas", "margin_mV")
CELL_COLORS = hv.Cycle("Category10").values
OK_COLOR, ALARM_COLOR = PALETTE["pred"], PALETTE["risk"]


def pacing(period_s: float, speed: float) -> tuple[int, int]:
    """(callback period [ms], samples per tick) for samples ``period_s`` apart at ``speed``."""
    if speed <= 0:
        return MIN_TICK_MS, 1
    ideal_ms = 1e3 * period_s / speed
    per_tick = max(1, math.ceil(MIN_TICK_MS / ideal_ms))
    return max(1, round(ideal_ms * per_tick)), per_tick


class LivePack:
    """One browser session's live replay.

    Args:
        run: a fresh :class:`packtwin.eval.replay.Run` at speed 0 (this page paces it).
        speed: multiple of real time to start with.
        play: start streaming when the page opens (a served page); tests call :meth:`tick`.
        title: the page's subtitle (store and checkpoint).
    """

    def __init__(self, run, speed: float = 60.0, play: bool = False, title: str = ""):
        self.run, self.title = run, title
        self.samples = iter(run)
        self.cells = run.cells
        self.period_s = run.period_s()
        self.finished = False
        self.callback = None
        self.last = None  # the latest Sample
        self._margins: list[np.ndarray] = []  # this cycle's margins [V], per sample
        self._times: list[float] = []
        n_time = run.seq.valid.shape[1]
        self.lines = Buffer(pd.DataFrame({c: pd.Series(dtype=float) for c in LINE_COLUMNS}),
                            length=len(self.cells) * n_time, index=False)
        self.strip = Pipe(data=self._strip_frame(np.full(len(self.cells), np.nan),
                                                 np.full(len(self.cells), np.nan)))
        self.widgets = {
            "play": pn.widgets.Toggle(label="▶ play / ❚❚ pause", value=False,
                                      color="primary"),
            "speed": pn.widgets.FloatInput(label="Speed (x real time; 0: as fast as drawn)",
                                           value=float(speed), start=0.0, step=10.0),
            "step": pn.widgets.Button(label="one sample"),
        }
        self.widgets["play"].param.watch(self._play, "value")
        self.widgets["speed"].param.watch(self._speed, "value")
        self.widgets["step"].on_click(lambda _: self.advance(1))
        self.status = pn.pane.Markdown(self._status())
        self.alarm_list = _table(self._alarm_frame())
        self.plating = _table(pd.DataFrame({"cell": [], "status": []}))
        self.plots = self._plots()
        if play:
            self.widgets["play"].value = True

    # ------------------------------------------------------------------ streaming
    def per_tick(self) -> int:
        return pacing(self.period_s, self.widgets["speed"].value)[1]

    def tick(self) -> int:
        """What the periodic callback runs: the samples due in one period; returns how many."""
        return self.advance(self.per_tick())

    def advance(self, n: int) -> int:
        """Stream up to ``n`` samples into the views (fewer at the end of the replay)."""
        rows, got = [], 0
        for _ in range(n):
            s = next(self.samples, None)
            if s is None:
                self._finish()
                break
            if s.new_cycle:  # a new (scenario, snapshot): its lines start afresh
                rows = []
                self.lines.clear()
                self._margins, self._times = [], []
            rows.append(self._line_frame(s))
            self._margins.append(s.est["plating_margin"].numpy().astype(float))
            self._times.append(s.where["time_s"])
            self.last, got = s, got + 1
        if rows:
            self.lines.send(pd.concat(rows, ignore_index=True))
        if self.last is not None and got:
            soc = self.last.est["soc"].numpy().astype(float)
            self.strip.send(self._strip_frame(soc, self._margins[-1]))
            self.alarm_list.object = self._alarm_frame()
            self.plating.object = alarms_table(self.plating_status(), self.run.alarms.plating)
        self.status.object = self._status()
        return got

    def streamed(self) -> int:
        return 0 if self.last is None else self.last.index + 1

    def plating_status(self) -> pd.DataFrame:
        """``summary.plating_alarms`` of this cycle so far, at the replay's plating threshold."""
        return sm.plating_alarms(np.stack(self._margins, 1), None, np.asarray(self._times),
                                 self.cells, threshold=self.run.alarms.plating)

    def _finish(self) -> None:
        self.finished = True
        if self.widgets["play"].value:
            self.widgets["play"].value = False

    def _line_frame(self, s) -> pd.DataFrame:
        return pd.DataFrame({"time_min": np.full(len(s.cells), s.where["time_s"] * S_TO_MIN),
                             "cell": s.cells.astype(int),
                             "soc": s.est["soc"].numpy().astype(float),
                             "v_est": s.est["voltage"].numpy().astype(float),
                             "v_meas": s.v_meas.numpy().astype(float),
                             "margin_mV": 1e3 * s.est["plating_margin"].numpy().astype(float)})

    def _strip_frame(self, soc: np.ndarray, margin_v: np.ndarray) -> pd.DataFrame:
        with np.errstate(invalid="ignore"):
            alarm = margin_v < self.run.alarms.plating
        return pd.DataFrame({"cell": [str(int(c)) for c in self.cells], "soc": soc,
                             "margin_mV": 1e3 * margin_v,
                             "state": np.where(alarm, "alarm", "ok")})

    def _alarm_frame(self) -> pd.DataFrame:
        events = self.run.alarms.events
        if not events:
            return pd.DataFrame({"alarms": ["none so far"]})
        return pd.DataFrame({
            "alarm": [e["alarm"] for e in events],
            "scenario": [e["scenario"] for e in events],
            "snapshot": [e["snapshot"] for e in events],
            "at [min]": [f"{e['time_s'] * S_TO_MIN:.4g}" for e in events],
            "cells": [f"spread {e['spread']:.3f}" if e["alarm"] == "soc_spread"
                      else ", ".join(str(c) for c in sorted(e["cells"])) for e in events]})[::-1]

    def _status(self) -> str:
        s = self.last
        head = (f"**{self.streamed()} pack samples streamed** x {len(self.cells)} cells · speed "
                f"{self.widgets['speed'].value:g}x")
        if s is None:
            return head + " · press play"
        soc = s.est["soc"].numpy()
        return (head + f" · scenario {s.where['scenario']} snapshot {s.where['snapshot']} · "
                f"t = {s.where['time_s'] * S_TO_MIN:.1f} min · SOC spread "
                f"{float(soc.max() - soc.min()):.3f}" + (" · **replay finished**"
                                                         if self.finished else "")
                + ("" if self.finished or self.widgets["play"].value else " · **paused**"))

    # ------------------------------------------------------------------ controls
    def _play(self, event) -> None:
        if event.new and not self.finished:
            period_ms = pacing(self.period_s, self.widgets["speed"].value)[0]
            if self.callback is None:
                self.callback = pn.state.add_periodic_callback(self.tick, period=period_ms)
                # a closed tab stops its replay (no writes to a closed websocket)
                pn.state.on_session_destroyed(lambda _ctx: self.callback.stop())
            else:
                self.callback.period = period_ms
                self.callback.start()
        elif self.callback is not None and self.callback.running:
            self.callback.stop()
        # The status says "paused" once the server has stopped streaming (a reader of the page,
        # or a test, can tell a pause that took effect from one still in flight).
        self.status.object = self._status()

    def _speed(self, event) -> None:
        if self.callback is not None:
            self.callback.period = pacing(self.period_s, event.new)[0]
        self.status.object = self._status()

    # ------------------------------------------------------------------ plots
    def _cell_lines(self, data: pd.DataFrame, y: str, label: str, dash: str = "solid"):
        return [hv.Curve(data[data.cell == c], "time_min", y, label=f"cell {int(c)} {label}")
                .opts(color=CELL_COLORS[i % len(CELL_COLORS)], line_dash=dash, framewise=True)
                for i, c in enumerate(self.cells)]

    def _soc_plot(self, data: pd.DataFrame):
        return hv.Overlay(self._cell_lines(data, "soc", "")).opts(
            title="SOC per cell (estimated)", framewise=True)

    def _voltage_plot(self, data: pd.DataFrame):
        return hv.Overlay(self._cell_lines(data, "v_meas", "measured", "dashed")
                          + self._cell_lines(data, "v_est", "estimated")).opts(
            title="Voltage per cell: measured (dashed) vs estimated", framewise=True)

    def _bars(self, data: pd.DataFrame, y: str, title: str):
        bars = hv.Bars(data, "cell", [y, "state"]).opts(title=title, framewise=True)
        if y != "margin_mV":
            return bars.opts(color=PALETTE["band"])
        bars = bars.opts(color=hv.dim("state").categorize({"ok": OK_COLOR,
                                                           "alarm": ALARM_COLOR}))
        return (bars * hv.HLine(1e3 * self.run.alarms.plating).opts(
            color=ALARM_COLOR, line_dash="dashed")).opts(framewise=True)

    def _plots(self) -> dict:
        common = dict(responsive=True, height=300, hooks=[_autohide_toolbar])
        curve = dict(xlabel="time [min]", show_legend=False, tools=["hover"], **common)
        lines = {"soc": hv.DynamicMap(self._soc_plot, streams=[self.lines])
                 .opts(hv.opts.Curve(ylabel="SOC [1]", **curve)),
                 "voltage": hv.DynamicMap(self._voltage_plot, streams=[self.lines])
                 .opts(hv.opts.Curve(ylabel="voltage [V]", **curve))}
        bar = dict(xlabel="cell", **common)
        strips = {"soc_now": hv.DynamicMap(lambda data: self._bars(data, "soc", "SOC now"),
                                           streams=[self.strip])
                  .opts(hv.opts.Bars(ylabel="SOC [1]", **bar)),
                  "margin_now": hv.DynamicMap(
                      lambda data: self._bars(data, "margin_mV", "Plating margin now"),
                      streams=[self.strip]).opts(hv.opts.Bars(ylabel="margin [mV]", **bar))}
        return {**lines, **strips}

    def template(self) -> pn.template.BaseTemplate:
        tmpl = pn.template.BootstrapTemplate(title="packtwin · live pack", sidebar_width=300,
                                             header_background="#1b6f8a")
        tmpl.sidebar.extend([pn.pane.Markdown(self.title), self.widgets["play"],
                             self.widgets["speed"], self.widgets["step"]])
        pane = lambda key: pn.pane.HoloViews(self.plots[key], linked_axes=False,  # noqa: E731
                                             sizing_mode="stretch_width")
        tmpl.main.append(pn.Column(
            self.status, pn.Row(pane("soc"), pane("voltage"), sizing_mode="stretch_width"),
            pn.Row(pane("soc_now"), pane("margin_now"), sizing_mode="stretch_width"),
            pn.Row(pn.Column(pn.pane.Markdown("**Alarms** (latest first)"), self.alarm_list,
                             sizing_mode="stretch_width"),
                   pn.Column(pn.pane.Markdown("**Plating status this cycle so far**"),
                             self.plating, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width"))
        return tmpl


def serve_live(make_run: Callable[[], object], speed: float, port: int, show: bool,
               title: str, banner: str) -> int:
    """Serve a live page per browser session (each its own replay from the start, playing)."""
    from packtwin.app.serve import serve

    return serve(lambda: LivePack(make_run(), speed, play=True, title=title).template(), port,
                 show, "packtwin live pack", banner)
