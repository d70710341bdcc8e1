"""``PackSummary``: what a pack engineer asks for first, as plots and tables over ``PackData``.

The SOC spread across the pack over the cycle, every cell's SEI at the cycle's end with its band
and the robust-z outliers marked, the weakest cells by each figure, and the plating-risk alarms.
The numbers come from ``PackData`` (``packtwin.app.summary``); this module only presents them.
Each figure is the truth where the store has it, else the selected twin's estimate and band.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from packtwin.app import summary as sm
from packtwin.app.state import TRUE, PackData
from packtwin.app.views import (PALETTE, S_TO_MIN, TABLE_CSS, TimeCursor, _autohide_toolbar,
                                band_area, broken_lines, dim, follow, selection_stream, time_dim)


def status_text(threshold: float = sm.PLATING_THRESHOLD_V) -> dict[str, str]:
    return {sm.ALARM: f"ALARM: margin below {threshold:g} V",
            sm.POSSIBLE: f"possible: band below {threshold:g} V", sm.OK: "ok"}


def _fmt(v: float, digits: int = 4) -> str:
    return f"{v:.{digits}g}" if np.isfinite(v) else "–"


def _table(df: pd.DataFrame) -> pn.pane.DataFrame:
    # A static HTML table, as the parameters table: nothing to edit, no data source to sync.
    return pn.pane.DataFrame(df, index=False, justify="left", sizing_mode="stretch_width",
                             classes=["param-table"], stylesheets=[TABLE_CSS])


class PackSummary:
    """SOC spread and SEI per cell (plots), weakest cells, plating alarms and outliers (tables)."""

    DEPS = ("scenario", "snapshot", "cell", "variant")

    def __init__(self, data: PackData, cursor: TimeCursor):
        self.data = data
        self.cursor = cursor
        self.soc = hv.DynamicMap(self._soc, streams=[selection_stream(data, *self.DEPS)])
        # Not on the selected cell: the pack overview marks it, and every plot that follows the
        # cell costs each cell change a redraw (measured by scripts/bench_app.py).
        self.sei = hv.DynamicMap(self._sei, streams=[selection_stream(data, "scenario",
                                                                     "snapshot", "variant")])
        self.headline = pn.pane.Markdown(self._headline(), sizing_mode="stretch_width")
        self.weakest = _table(self._weakest())
        self.alarms = _table(self._alarms())
        self.outliers = _table(self._outliers())
        data.sel.param.watch(self._refresh, ["scenario", "snapshot", "variant"])
        data.sel.param.watch(self._refresh_weakest, ["time_index"])

    # ------------------------------------------------------------------ plots
    def _where(self, name: str) -> str:
        d = self.data
        if d.source_of(name) == TRUE:
            return ""
        return " · estimated" + ("" if d.sel.variant == "estimate" else f" ({d.sel.variant})")

    def _soc(self, **_) -> hv.Overlay:
        d = self.data
        t = d.times() * S_TO_MIN
        soc, hw = d.soc_spread()
        soc = np.full((0, t.size), np.nan) if soc is None else soc
        tdim, sdim = time_dim(), dim("soc")
        band = sm.pack_spread(soc) if soc.size else {
            **{k: np.full(t.size, np.nan) for k in ("min", "max", "median", "spread")},
            "widest": -1}
        mine = soc[d.reader.cell_pos[d.sel.cell]] if soc.shape[0] else np.full(t.size, np.nan)
        mine_hw = None if hw is None else hw[d.reader.cell_pos[d.sel.cell]]
        hi = hv.Dimension("soc_hi", label="upper", unit=sdim.unit)
        w = band["widest"]
        widest = (f" · widest {100 * band['spread'][w]:.1f} pp at {t[w]:.0f} min" if w >= 0
                  else "")
        parts = [
            hv.Area((t, band["min"], band["max"]), tdim, [sdim, hi], label="pack min–max").opts(
                color=PALETTE["band"], alpha=0.15, line_alpha=0),
            hv.Curve(broken_lines(t, soc), tdim, sdim, label="cells").opts(
                color=PALETTE["grey"], alpha=0.5, line_width=1),
            hv.Curve((t, band["median"]), tdim, sdim, label="pack median").opts(
                color=PALETTE["band"], line_dash="dashed", line_width=1.5),
            band_area(t, mine, mine_hw, tdim, sdim, "selected cell band"),
            hv.Curve((t, mine), tdim, sdim, label="selected cell").opts(color=PALETTE["cell"],
                                                                        line_width=2.5),
        ]
        return follow(hv.Overlay(parts)).opts(
            title=f"SOC spread across the pack{widest}{self._where('soc')}",
            legend_position="right", width=700, height=300, toolbar="right",
            hooks=[_autohide_toolbar, self.cursor.hook])

    def _sei(self, **_) -> hv.Overlay:
        d = self.data
        name = "sei_thickness_avg"
        sei = d.pack(name, d.source_of(name))
        cells = d.reader.cells
        end = sm.last_finite(sei) if sei is not None else np.full(cells.size, np.nan)
        hw = d.pack_half_width(name)
        err = sm.last_finite(hw) if hw is not None else np.zeros(cells.size)
        flag = sm.outliers(end)
        cdim = hv.Dimension("cell", label="Cell")
        sdim = dim("sei_thickness_end")
        x = cells.astype(float)
        parts = [
            hv.ErrorBars((x, end, np.nan_to_num(err)), cdim, [sdim, "band"], label="band").opts(
                color=PALETTE["pred"], line_width=1.5),
            hv.Scatter((x[~flag], end[~flag]), cdim, sdim, label="cells").opts(
                color=PALETTE["band"], size=8),
            hv.Scatter((x[flag], end[flag]), cdim, sdim,
                       label=f"outlier (|robust z| > {sm.OUTLIER_Z:g})").opts(
                color=PALETTE["risk"], size=12, marker="triangle"),
        ]
        return follow(hv.Overlay(parts)).opts(
            title=f"SEI at the end of cycle {d.snapshot_cycle()} per cell{self._where(name)}",
            legend_position="right", width=700, height=280, toolbar="right", padding=0.1,
            xticks=[(float(c), str(int(c))) for c in cells] if cells.size <= 32 else None,
            hooks=[_autohide_toolbar])

    # ------------------------------------------------------------------ tables
    def _headline(self) -> str:
        df = self.data.plating_alarms()
        alarm = df.cell[df.status == sm.ALARM].tolist()
        maybe = df.cell[df.status == sm.POSSIBLE].tolist()
        n_out = len(self.data.outliers())
        parts = [f"**Plating alarms:** {len(alarm)} cell(s)" + (f" {alarm}" if alarm else ""),
                 f"**possible (band below 0 V):** {len(maybe)}" + (f" {maybe}" if maybe else ""),
                 f"**outliers:** {n_out}"]
        return " · ".join(parts) + f" · cycle {self.data.snapshot_cycle()}"

    def _weakest(self) -> pd.DataFrame:
        df = self.data.weakest_cells()
        return pd.DataFrame({
            "figure": [f"{c} [{u}]" if u != "1" else c for c, u in zip(df.criterion, df.unit)],
            "rank": df["rank"], "cell": df.cell, "value": [_fmt(v) for v in df.value],
            "±": [("± " + _fmt(b, 2)) if np.isfinite(b) else "–" for b in df.band],
            "robust z": [f"{z:+.1f}" if np.isfinite(z) else "–" for z in df.robust_z]})

    def _alarms(self) -> pd.DataFrame:
        return alarms_table(self.data.plating_alarms())

    def _outliers(self) -> pd.DataFrame:
        df = self.data.outliers()
        if df.empty:
            return pd.DataFrame({"outliers": [f"none (no figure with |robust z| > "
                                              f"{sm.OUTLIER_Z:g})"]})
        return pd.DataFrame({"figure": df.quantity, "cell": df.cell,
                             "value": [_fmt(v) for v in df.value],
                             "robust z": [f"{z:+.1f}" for z in df.robust_z]})

    def _refresh(self, *_) -> None:
        self.headline.object = self._headline()
        self.weakest.object = self._weakest()
        self.alarms.object = self._alarms()
        self.outliers.object = self._outliers()

    def _refresh_weakest(self, *_) -> None:
        self.weakest.object = self._weakest()

    def panel(self) -> pn.viewable.Viewable:
        md = lambda text: pn.pane.Markdown(text, margin=(5, 10, 0, 10))  # noqa: E731
        return pn.Column(
            self.headline,
            pn.Row(pn.pane.HoloViews(self.soc, linked_axes=False),
                   pn.pane.HoloViews(self.sei, linked_axes=False)),
            pn.Row(pn.Column(md("**Weakest cells** (3 per figure)"), self.weakest,
                             sizing_mode="stretch_width"),
                   pn.Column(md("**Plating-risk alarms**"), self.alarms,
                             md(f"**Outliers** (modified z-score, |z| > {sm.OUTLIER_Z:g})"),
                             self.outliers, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")


def alarms_table(df: pd.DataFrame, threshold: float = sm.PLATING_THRESHOLD_V) -> pd.DataFrame:
    """``summary.plating_alarms`` (made at ``threshold`` [V]) as shown: the cells not ok (or the
    three lowest margins)."""
    df = df[df.status != sm.OK] if (df.status != sm.OK).any() else df.head(3)
    text = status_text(threshold)
    return pd.DataFrame({
        "cell": df.cell, "status": [text[s] for s in df.status],
        "lowest margin [V]": [_fmt(v) for v in df.min_margin],
        "±": [("± " + _fmt(b, 2)) if np.isfinite(b) else "–" for b in df.band],
        "at [min]": [_fmt(v / 60.0, 3) for v in df.t_min],
        f"below {threshold:g} V [min]": [f"{v:.1f}" for v in df.minutes_below]})
