"""Views of ``PackData``: they turn the selected data into HoloViews/Panel objects and hold no state.

Each plot is a ``DynamicMap`` fed by a ``Params`` stream on exactly the selection parameters it
depends on, so a widget change recomputes only the plots it affects; the time cursor is a Bokeh
``Span`` moved by a watcher, so moving the player never redraws a plot over time.
"""

from __future__ import annotations

import warnings
from functools import partial

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from packtwin import schema
from packtwin.app.reader import display_unit
from packtwin.app.selection import OVERVIEW
from packtwin.app.reductions import (PERCENTILES, X_AVG, broken_lines, finite_extent, sei_band,
                                     spread_format)
from packtwin.app.state import LIFE, PRED, TRUE, LifeSeries, PackData

hv.extension("bokeh", logo=False)
# A prediction missing for the selection is drawn as an all-NaN map; HoloViews' range code warns on it.
warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning, r"holoviews\.")

M_TO_UM = 1e6
S_TO_MIN = 1 / 60.0
PALETTE = {"cell": "#d95f02", "pred": "#1b9e77", "risk": "#e7298a", "band": "#7570b3",
           "grey": "#9a9a9a", "cursor": "#444444"}


def _autohide_toolbar(plot, element) -> None:
    # The toolbar shows on hover only, so it never covers a title; the tools stay active.
    plot.state.toolbar.autohide = True


def _colorbar_title(plot, element) -> None:
    # HoloViews titles a colour bar once, when the plot is made: follow the quantity shown now.
    title = plot.lookup_options(element, "plot").options.get("clabel")
    fig = plot.state
    for bar in (*fig.right, *fig.left, *fig.above, *fig.below):
        if title and type(bar).__name__ == "ColorBar":
            bar.title = title


def follow(obj):
    """Axis and colour ranges computed from this frame's data on every update.

    ``framewise`` must sit on each element: set on an Overlay it is ignored, and the plot keeps
    the ranges of the first frame (a warmer scenario's temperature curve then lies off the plot).
    """
    for el in (obj if isinstance(obj, hv.Overlay) else [obj]):
        el.opts(framewise=True)
    return obj.opts(framewise=True)


def integer_ticks():
    """Ticks at whole numbers only (cycle numbers), a fresh model per plot."""
    from bokeh.models import BasicTicker

    return BasicTicker(min_interval=1, num_minor_ticks=0)


PLOT = dict(width=380, height=280, toolbar="right", hooks=[_autohide_toolbar, _colorbar_title])


# ------------------------------------------------------------------ dimensions from the schema
def dim(name: str, unit: str | None = None, label: str | None = None) -> hv.Dimension:
    """A HoloViews dimension labelled from the schema (``unit`` overrides for display scaling)."""
    a = schema.var_attrs(name)
    unit = unit or display_unit(name)
    # "1" marks a dimensionless quantity in the schema; "(1)" after a label reads as noise.
    return hv.Dimension(name, label=label or a["long_name"], unit=None if unit == "1" else unit)


def time_dim() -> hv.Dimension:
    return dim(schema.TIME, unit="min")


def x_dim(name: str) -> hv.Dimension:
    return dim(name, unit="µm")


def selection_stream(data: PackData, *names: str) -> hv.streams.Params:
    return hv.streams.Params(parameterized=data.sel, parameters=list(names))


class TimeCursor:
    """A vertical line at the player's time on every time-axis plot.

    It is a Bokeh ``Span`` added by a plot hook and moved by a watcher, not a HoloViews element:
    moving the player then changes one number per plot instead of re-rendering the plots.
    """

    TAG = "packtwin-time-cursor"

    def __init__(self, data: PackData):
        self.data = data
        self.spans: list = []
        data.sel.param.watch(self._move, ["time_index", "scenario", "snapshot"])

    def location(self) -> float:
        return self.data.current_time() * S_TO_MIN

    def hook(self, plot, element) -> None:
        from bokeh.models import Span

        fig = plot.state
        if any(self.TAG in getattr(r, "tags", []) for r in fig.center):
            return
        span = Span(location=self.location(), dimension="height", line_color=PALETTE["cursor"],
                    line_dash="dotted", line_width=1.5, tags=[self.TAG])
        fig.add_layout(span)
        self.spans.append(span)

    def _move(self, *_) -> None:
        loc = self.location()
        for span in self.spans:
            span.location = loc


def _when(data: PackData) -> str:
    return f"t = {data.current_time() * S_TO_MIN:.1f} min"


def _source_title(data: PackData, source: str) -> str:
    k = data.reader.band_factor(data.sel.variant)
    return {TRUE: "True", PRED: f"Predicted ({data.sel.variant})", "error": "Error",
            "band": f"Band ±{k or 0:.3g} std ({data.sel.variant})"}[source]


def band_area(x: np.ndarray, mid: np.ndarray | None, half_width: np.ndarray | None,
              kdim: hv.Dimension, vdim: hv.Dimension, label: str) -> hv.Area:
    """The band ``mid ± half_width`` as an Area (empty without a band: overlay layers are fixed)."""
    hi = hv.Dimension(f"{vdim.name}_hi", label="upper", unit=vdim.unit)
    if mid is None or half_width is None:
        x, lo, up = np.array([]), np.array([]), np.array([])
    else:
        lo, up = mid - half_width, mid + half_width
    return hv.Area((x, lo, up), kdim, [vdim, hi], label=label).opts(
        color=PALETTE["pred"], alpha=0.25, line_alpha=0)


# ------------------------------------------------------------------ particle concentration maps
class ParticleMaps:
    """c_s of the selected cell and electrode: over (x, r) at the chosen time and over (time, r).

    Predicted, true and error sit side by side; predicted and true share one colour range (over
    both at the chosen time for the (x, r) maps, over the cycle for the (time, r) maps), the error
    a symmetric one.
    """

    DEPS = ("scenario", "snapshot", "cell", "electrode", "variant")

    def __init__(self, data: PackData, cursor: TimeCursor):
        self.data = data
        self.cursor = cursor
        # Without any twin, the predicted and error columns would only ever be empty; without the
        # truth of c_s (a measured store), the twin's estimate sits beside its band.
        var = data.sel.electrode_spec.var
        if not data.reader.has_truth(var):
            self.sources = (PRED, "band") if data.sel.variant is not None else ()
        else:
            self.sources = (PRED, TRUE, "error") if data.sel.variant is not None else (TRUE,)
        self.at_time = {s: hv.DynamicMap(partial(self._at_time, s),
                                         streams=[selection_stream(data, *self.DEPS, "time_index")])
                        for s in self.sources}
        self.over_time = {s: hv.DynamicMap(partial(self._over_time, s),
                                           streams=[selection_stream(data, *self.DEPS, "x_index")])
                          for s in self.sources}

    def _opts(self, source: str, at_time: bool) -> dict:
        d = self.data
        unit = display_unit(d.sel.electrode_spec.var)
        bar = dict(colorbar=True, clabel=f"{unit} (error)" if source == "error" else unit,
                   clim=d.cs_clim(source, at_time))
        if source == "error":
            return dict(cmap="RdBu_r", symmetric=True, **bar)
        if source == "band":
            return dict(cmap="Purples", **{**bar, "clabel": f"{unit} (± band)"})
        return dict(cmap="viridis", **bar)

    def _vdim(self, source: str) -> hv.Dimension:
        var = self.data.sel.electrode_spec.var
        if source in ("error", "band"):
            a = schema.var_attrs(var)
            return hv.Dimension(f"c_s_{source}", label=f"{a['long_name']} {source}",
                                unit=display_unit(var))
        return dim(var)

    def _at_time(self, source: str, **_) -> hv.QuadMesh:
        d = self.data
        e = d.sel.electrode_spec
        x, r = d.reader.coord(e.x) * M_TO_UM, d.reader.coord(e.r)
        z = d.cs_at_time(source)
        missing = z is None
        if missing:
            z = np.full((r.size, x.size), np.nan)
        title = f"{_source_title(d, source)} · cell {d.sel.cell} · {_when(d)}"
        if missing and source != TRUE:
            title = f"{_source_title(d, source)}: no prediction"
        qm = hv.QuadMesh((x, r, z), kdims=[x_dim(e.x), dim(e.r)], vdims=[self._vdim(source)])
        return follow(qm.opts(title=title, tools=["hover"], **self._opts(source, at_time=True),
                              **PLOT))

    def _over_time(self, source: str, **_) -> hv.QuadMesh:
        d = self.data
        e = d.sel.electrode_spec
        t, r = d.times() * S_TO_MIN, d.reader.coord(e.r)
        z = d.cs_over_time(source)
        missing = z is None or t.size == 0
        if missing:
            t = t if t.size else np.array([0.0, 1.0])
            z = np.full((r.size, t.size), np.nan)
        where = ("x-averaged" if d.sel.x_index == X_AVG
                 else f"x = {d.reader.coord(e.x)[d.sel.x_index] * M_TO_UM:.1f} µm")
        title = f"{_source_title(d, source)} · cell {d.sel.cell} · {where}"
        if missing and source != TRUE:
            title = f"{_source_title(d, source)}: no prediction"
        qm = hv.QuadMesh((t, r, z), kdims=[time_dim(), dim(e.r)], vdims=[self._vdim(source)])
        return follow(qm.opts(title=title, tools=["hover"], **self._opts(source, at_time=False),
                              **{**PLOT, "hooks": [*PLOT["hooks"], self.cursor.hook]}))

    def panel(self) -> pn.viewable.Viewable:
        pane = lambda m: pn.pane.HoloViews(m, linked_axes=False)  # noqa: E731
        if not self.sources:
            return pn.pane.Markdown("No particle concentration to show: the store has no truth "
                                    "of it and no estimates are loaded.")
        if self.sources == (TRUE,):  # truth only: both maps on one row
            return pn.Row(pane(self.at_time[TRUE]), pane(self.over_time[TRUE]))
        return pn.Column(pn.Row(*map(pane, self.at_time.values())),
                         pn.Row(*map(pane, self.over_time.values())))


# ------------------------------------------------------------------ pack overview
class PackOverview:
    """The cells in their series/parallel positions, coloured by the chosen quantity.

    Clicking a cell selects it: a Tap stream on the cells layer (a Tap on a DynamicMap that returns
    an Overlay is never connected to the plot, so each layer is its own DynamicMap).
    """

    DEPS = ("scenario", "snapshot", "quantity", "time_index", "electrode", "variant")
    CMAPS = {"SEI thickness": "YlOrBr", "SOC": "Blues", "Max plating risk": "RdYlGn",
             "Temperature": "Inferno", "c_s error": "Reds"}
    HALF = 0.44  # half the side of a cell's square, in positions

    def __init__(self, data: PackData):
        self.data = data
        values = selection_stream(data, *self.DEPS)
        self.cells = hv.DynamicMap(self._cells, streams=[values])
        self.chosen = hv.DynamicMap(self._chosen, streams=[selection_stream(data, "cell")])
        self.labels = hv.DynamicMap(self._labels, streams=[selection_stream(data, *self.DEPS)])
        self.dmap = self.cells * self.chosen * self.labels
        self.tap = hv.streams.Tap(source=self.cells, x=None, y=None)
        self.tap.add_subscriber(self.select_at)

    def select_at(self, x: float | None = None, y: float | None = None, **_) -> int | None:
        """Select the cell drawn at (series position x, parallel position y), if any."""
        if x is None or y is None:
            return None
        df = self.data.overview()
        hit = df[(np.abs(df.series_index - x) <= 0.5) & (np.abs(df.parallel_index - y) <= 0.5)]
        if hit.empty:
            return None
        cell = int(hit.cell.iloc[0])
        self.data.sel.cell = cell
        return cell

    def _cells(self, **_) -> hv.Rectangles:
        d = self.data
        df = d.overview()
        name, unit = d.overview_label()
        h = self.HALF
        rects = {"x0": (df.series_index - h).values, "y0": (df.parallel_index - h).values,
                 "x1": (df.series_index + h).values, "y1": (df.parallel_index + h).values,
                 "value": df.value.values, "cell": df.cell.values}
        vdim = hv.Dimension("value", label=name, unit=unit)
        q = d.sel.quantity
        n_s, n_p = schema.pack_shape(d.truth)
        when = "" if q in ("Max plating risk", "c_s error") else f" · {_when(d)}"
        var = OVERVIEW[q][0]
        if var is not None and d.source_of(var) == PRED and d.sel.variant is not None:
            when += " · estimate"
        return follow(hv.Rectangles(rects, vdims=[vdim, "cell"]).opts(
            color="value", cmap=self.CMAPS[q], clim=d.overview_clim(df.value.values),
            colorbar=True, clabel=f"{name} [{unit}]" if unit != "1" else name,
            line_color="white", line_width=1, tools=["hover", "tap"], nonselection_alpha=1.0,
            title=f"Pack {n_s}S{n_p}P · {q}{when}",
            xlabel=schema.COORDS["series_index"].long_name,
            ylabel=schema.COORDS["parallel_index"].long_name,
            xticks=[(i, f"S{i + 1}") for i in range(n_s)],
            yticks=[(j, f"P{j + 1}") for j in range(n_p)], invert_yaxis=True,
            xlim=(-0.5, n_s - 0.5), ylim=(-0.5, n_p - 0.5),
            width=480, height=320, toolbar="right", hooks=[_autohide_toolbar, _colorbar_title]))

    def _chosen(self, **_) -> hv.Rectangles:
        h = self.HALF
        s, p = self.data.reader.cell_position(self.data.sel.cell)
        return hv.Rectangles([(s - h, p - h, s + h, p + h)]).opts(
            fill_alpha=0, line_color=PALETTE["cell"], line_width=4)

    def _labels(self, **_) -> hv.Labels:
        df = self.data.overview()
        text = [f"{c}\n{v}" for c, v in zip(df.cell, spread_format(df.value.values))]
        return hv.Labels((df.series_index.values.astype(float),
                          df.parallel_index.values.astype(float), text),
                         kdims=["x0", "y0"], vdims="text").opts(text_font_size="8pt",
                                                                text_color="black")

    def panel(self) -> pn.viewable.Viewable:
        return pn.pane.HoloViews(self.dmap, linked_axes=False)


# ------------------------------------------------------------------ SEI spread over cycles
def life_layers(d: PackData, life: LifeSeries, cdim: hv.Dimension, vdim: hv.Dimension,
                twin_label: str) -> list:
    """A per-cycle quantity of every cell: pack band, cells, median, the fastest-changing cell,
    the selected cell and (beside the truth) the twin's per-cycle estimate of it. The layers are
    the same in every frame (an empty one where there is nothing to draw)."""
    cycles, vals = life.cycles, life.values
    band = sei_band(vals)
    hi = hv.Dimension(f"{vdim.name}_hi", label="upper", unit=vdim.unit)
    lo_p, hi_p = (int(p) for p in PERCENTILES)
    pos = d.reader.cell_pos[d.sel.cell]
    fast = vals[life.fastest] if life.fastest >= 0 else np.full(cycles.size, np.nan)
    tc, tv = (life.twin[0], life.twin[1][pos]) if life.twin else (np.array([]), np.array([]))
    return [
        hv.Area((cycles, band["min"], band["max"]), cdim, [vdim, hi], label="pack min–max"
                ).opts(color=PALETTE["band"], alpha=0.15, line_alpha=0),
        hv.Area((cycles, band["lo"], band["hi"]), cdim, [vdim, hi],
                label=f"{lo_p}–{hi_p}th percentile").opts(color=PALETTE["band"], alpha=0.3,
                                                          line_alpha=0),
        hv.Curve(broken_lines(cycles, vals), cdim, vdim, label="cells").opts(
            color=PALETTE["grey"], alpha=0.5, line_width=1),
        hv.Curve((cycles, band["median"]), cdim, vdim, label="pack median").opts(
            color=PALETTE["band"], line_dash="dashed", line_width=1.5),
        hv.Curve((cycles, fast), cdim, vdim, label="fastest cell").opts(
            color=PALETTE["risk"], line_width=2),
        hv.Curve((cycles, vals[pos]), cdim, vdim, label="selected cell").opts(
            color=PALETTE["cell"], line_width=3),
        hv.Curve((tc, tv), cdim, vdim, label=twin_label).opts(
            color=PALETTE["pred"], line_dash="dashed", line_width=2),
    ]


def life_twin_label(d: PackData, what: str) -> str:
    """Legend label of the twin's per-cycle estimate beside the truth (fixed per page: an
    overlay's layers keep their keys from frame to frame); empty where no twin has one."""
    true_name, est_name = LIFE[what]
    twins = [ds for ds in d.reader.sources.predictions.values() if est_name in ds.data_vars]
    return "twin over life" if twins and d.reader.has_truth(true_name) else ""


def empty_life(d: PackData) -> LifeSeries:
    n = d.reader.cells.size
    return LifeSeries(np.array([], int), np.empty((n, 0)), PRED, None, np.full(n, np.nan), -1)


def fastest_text(d: PackData, life: LifeSeries, unit: str) -> str:
    if life.fastest < 0:
        return ""
    cell = int(d.reader.cells[life.fastest])
    return f" · fastest: cell {cell} ({life.rates[life.fastest]:+.3g} {unit}/cycle)"


def life_plot(d: PackData, life: LifeSeries, parts: list, what: str, unit: str) -> hv.Overlay:
    """The layers of a plot over cycles with the snapshot cycle marked, titled with the selected
    and the fastest-changing cell."""
    parts = [*parts, hv.VLine(d.snapshot_cycle()).opts(color=PALETTE["cursor"],
                                                       line_dash="dotted")]
    return follow(hv.Overlay(parts)).opts(
        title=(f"{what}{' (estimated)' if life.source == PRED else ''} · cell {d.sel.cell}"
               f"{fastest_text(d, life, unit)}"),
        legend_position="right", width=760, height=320, toolbar="right", padding=0.05,
        xticks=integer_ticks(), hooks=[_autohide_toolbar])


class SeiSpread:
    """Every cell's SEI thickness at cycle end, the pack band, the fastest-growing cell and the
    selected cell vs the twin (at snapshots, and over life where the twin estimates per cycle).
    Without the truth's per-cycle summaries, the twin's per-cycle estimate is drawn instead."""

    DEPS = ("scenario", "cell", "variant", "snapshot")

    def __init__(self, data: PackData):
        self.data = data
        self.twin_label = "predicted at snapshots" if data.sel.variant is not None else ""
        self.life_label = life_twin_label(data, "sei")
        self.dmap = hv.DynamicMap(self._plot, streams=[selection_stream(data, *self.DEPS)])

    def _plot(self, **_) -> hv.Overlay:
        d = self.data
        cdim, sdim = dim(schema.CYCLE), dim("sei_thickness_end")
        # A twin without SEI over life: an empty frame of the same layers.
        life = d.life("sei") or empty_life(d)
        parts = life_layers(d, life, cdim, sdim, self.life_label)
        tc, tv = d.sei_at_snapshots(TRUE)
        parts.append(hv.Scatter((tc, tv), cdim, sdim, label="true at snapshots").opts(
            color=PALETTE["cell"], size=8, marker="circle"))
        pc, pv = (d.sei_at_snapshots(PRED) if d.sel.variant is not None
                  else (np.array([]), np.array([])))
        # Without any twin the layer stays (the overlay's layers are fixed) but leaves the legend.
        parts.append(hv.Scatter((pc, pv), cdim, sdim, label=self.twin_label).opts(
            color=PALETTE["pred"], size=11, marker="diamond"))
        return life_plot(d, life, parts, "SEI spread over cycles", "nm")

    def panel(self) -> pn.viewable.Viewable:
        return pn.pane.HoloViews(self.dmap, linked_axes=False)


# ------------------------------------------------------------------ measured signals and plating
class Signals:
    """Measured voltage, current and temperature of the selected cell, with the twin's voltage."""

    DEPS = ("scenario", "snapshot", "cell", "variant")

    def __init__(self, data: PackData, cursor: TimeCursor):
        self.data = data
        self.cursor = cursor
        self.dmaps = {name: hv.DynamicMap(partial(self._plot, name),
                                          streams=[selection_stream(data, *self.DEPS)])
                      for name in ("voltage", "current", "temperature")}

    def _plot(self, name: str, **_) -> hv.Overlay:
        d = self.data
        t = d.times() * S_TO_MIN
        y = d.signal(name)
        parts = [hv.Curve((t, y), time_dim(), dim(name), label="measured").opts(
            color="#1f77b4", line_width=2)]
        if name == "voltage":
            p = d.signal(name, PRED) if d.sel.variant is not None else None
            tp, yp = (t, p) if p is not None else (np.array([]), np.array([]))
            # A fixed label: the overlay's layers must keep their keys from frame to frame.
            parts.append(hv.Curve((tp, yp), time_dim(), dim(name), label="twin").opts(
                color=PALETTE["pred"], line_dash="dashed", line_width=2))
            hw = d.half_width(name) if p is not None else None
            parts.append(band_area(t, p, hw, time_dim(), dim(name), "twin band"))
        title = f"{schema.var_attrs(name)['long_name']} · cell {d.sel.cell}"
        if name == "voltage" and d.sel.variant is not None:
            title += " · twin dashed"
        return follow(hv.Overlay(parts)).opts(title=title, width=380, height=250, toolbar="right",
                                              hooks=[_autohide_toolbar, self.cursor.hook],
                                              show_legend=False)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Row(*[pn.pane.HoloViews(m, linked_axes=False) for m in self.dmaps.values()])


class Plating:
    """Plating margin of every cell over the cycle (selected cell and twin on top), 0 V threshold."""

    DEPS = ("scenario", "snapshot", "cell", "variant")
    THRESHOLD_V = 0.0  # below 0 V vs Li, lithium plating is thermodynamically possible

    def __init__(self, data: PackData, cursor: TimeCursor):
        self.data = data
        self.cursor = cursor
        self.twin_label = ("twin" if data.sel.variant is not None
                           and data.source_of("plating_margin") == TRUE else "")
        self.dmap = hv.DynamicMap(self._plot, streams=[selection_stream(data, *self.DEPS)])

    def _plot(self, **_) -> hv.Overlay:
        d = self.data
        t = d.times() * S_TO_MIN
        tdim, mdim = time_dim(), dim("plating_margin")
        # Without its truth (a measured store) every cell's margin is the twin's estimate, and
        # the selected cell's carries the twin's band.
        src = d.source_of("plating_margin")
        every = d.pack("plating_margin", src)
        every = np.empty((0, t.size)) if every is None else every
        mine = d.signal("plating_margin", src)
        mine = np.full(t.size, np.nan) if mine is None else mine
        est = d.signal("plating_margin", PRED) if d.sel.variant is not None else None
        pred = est if src == TRUE else None
        hw = d.half_width("plating_margin") if est is not None else None
        band = band_area(t, est, hw, tdim, mdim, "twin band")
        # The 0 V threshold always in view, with every cell's and the twin's margin and band.
        lo, hi = finite_extent(every, pred, band.dimension_values(1), band.dimension_values(2),
                               np.array([self.THRESHOLD_V]))
        pad = 0.08 * (hi - lo) or 0.01
        tp, yp = (t, pred) if pred is not None else (np.array([]), np.array([]))
        parts = [
            hv.Curve(broken_lines(t, every), tdim, mdim, label="cells").opts(
                color=PALETTE["grey"], alpha=0.5, line_width=1),
            hv.HSpan(lo - pad, self.THRESHOLD_V).opts(color=PALETTE["risk"], alpha=0.12),
            band,
            hv.Curve((t, mine), tdim, mdim, label="selected cell").opts(color=PALETTE["cell"],
                                                                        line_width=2.5),
            hv.Curve((tp, yp), tdim, mdim, label=self.twin_label).opts(color=PALETTE["pred"],
                                                              line_dash="dashed", line_width=2),
            hv.HLine(self.THRESHOLD_V).opts(color=PALETTE["risk"], line_dash="dashed"),
        ]
        return follow(hv.Overlay(parts)).opts(
            title=f"Plating margin (risk below {self.THRESHOLD_V:g} V) · cell {d.sel.cell}",
            ylim=(lo - pad, hi + pad), xlabel=tdim.pprint_label, ylabel=mdim.pprint_label,
            width=700, height=380, toolbar="right", hooks=[_autohide_toolbar, self.cursor.hook],
            legend_position="right")

    def panel(self) -> pn.viewable.Viewable:
        return pn.pane.HoloViews(self.dmap, linked_axes=False)


# ------------------------------------------------------------------ identified parameters
TABLE_CSS = """
table.param-table { border-collapse: collapse; font-size: 13px; width: 100%; }
table.param-table th { background: #eef2f5; text-align: left; padding: 6px 10px; }
table.param-table td { padding: 5px 10px; border-bottom: 1px solid #e3e6ea; }
"""

class ParamsTable:
    """Truth vs the twins' identified per-cell parameters of the selected cell."""

    def __init__(self, data: PackData):
        self.data = data
        # A static HTML table: nothing to edit, and no Bokeh data source to keep in sync.
        self.table = pn.pane.DataFrame(self._frame(), index=False, justify="left",
                                       sizing_mode="stretch_width", classes=["param-table"],
                                       stylesheets=[TABLE_CSS])
        self.title = pn.pane.Markdown(self._title())
        data.sel.param.watch(self._refresh, ["cell", "variant", "scenario"])

    def _title(self) -> str:
        label = self.data.reader.cell_label(self.data.sel.cell)
        if self.data.reader.measured:
            return f"**{label}**: each twin's identified value (no truth: a measured pack)"
        return f"**{label}**: each twin's identified value vs the truth"

    def _frame(self) -> pd.DataFrame:
        df = self.data.params_table()
        out = df.copy()
        for col in out.columns:
            if col in ("parameter", "units"):
                continue
            if col.endswith("[%]"):
                out[col] = [f"{v:+.2f}" if np.isfinite(v) else "–" for v in df[col]]
            elif col.endswith("±"):
                out[col] = [f"± {v:.2g}" if np.isfinite(v) else "–" for v in df[col]]
            else:
                out[col] = [f"{v:.4g}" if np.isfinite(v) else "–" for v in df[col]]
        return out

    def _refresh(self, *_) -> None:
        self.table.object = self._frame()
        self.title.object = self._title()

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(self.title, self.table, sizing_mode="stretch_width")
