"""``build_app``: the explorer page, widgets on the left and the views in the main area."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import panel as pn

from packtwin import schema
from packtwin.app import views
from packtwin.app.sources import Sources, open_sources
from packtwin.app.state import PackData
from packtwin.app.life_view import CapacityFade, snapshot_player
from packtwin.app.summary_view import PackSummary

TITLE = "packtwin · pack explorer"
ACCENT = "#1b6f8a"


class Explorer:
    """One browser session's app: the opened sources, ``PackData``, widgets and views.

    With a store that cannot be shown, ``data`` is None and the page holds only the message.
    """

    def __init__(self, sources: Sources, store_name: str = ""):
        self.sources = sources
        self.store_name = store_name
        self.data: PackData | None = None
        self.widgets: dict[str, pn.widgets.Widget] = {}
        if sources.errors:
            self.messages = pn.Column(*[pn.pane.Alert(e, alert_type="danger") for e in sources.errors])
            self.layout = pn.Column(pn.pane.Markdown(f"# {TITLE}"), self.messages,
                                    sizing_mode="stretch_width")
            return
        self.data = d = PackData(sources)
        self.overview = views.PackOverview(d)
        # Over life needs per-cycle summaries: the store's, or a twin's per-cycle estimates (a
        # measured log has neither unless a life estimate is loaded).
        self.sei = views.SeiSpread(d) if d.has_life("sei") else None
        self.fade = CapacityFade(d) if d.has_life("capacity") else None
        self.cursor = views.TimeCursor(d)
        self.summary = PackSummary(d, self.cursor)
        self.maps = views.ParticleMaps(d, self.cursor)
        self.signals = views.Signals(d, self.cursor)
        self.plating = views.Plating(d, self.cursor)
        self.params = views.ParamsTable(d)
        self.widgets = self._widgets()
        if self.fade is not None:
            self.widgets["snapshot_player"] = snapshot_player(d)
        self.messages = pn.Column(*[pn.pane.Alert(w, alert_type="warning") for w in sources.warnings],
                                  sizing_mode="stretch_width")
        self.notice = pn.pane.Alert(d.notice, alert_type="info", visible=bool(d.notice),
                                    sizing_mode="stretch_width")
        d.param.watch(self._show_notice, "notice")
        self.layout = self._page()

    # ------------------------------------------------------------------ widgets
    def _widgets(self) -> dict[str, pn.widgets.Widget]:
        p = self.data.sel.param
        w = {
            "ambient": pn.widgets.Select.from_param(p.ambient),
            "c_rate": pn.widgets.Select.from_param(p.c_rate),
            "protocol": pn.widgets.Select.from_param(p.protocol),
            "snapshot": pn.widgets.Select.from_param(p.snapshot),
            "cell": pn.widgets.Select.from_param(p.cell),
            "electrode": pn.widgets.RadioButtonGroup.from_param(p.electrode, color="primary",
                                                               variant="outline"),
            "x_index": pn.widgets.Select.from_param(p.x_index),
            "time_index": pn.widgets.Player.from_param(p.time_index, name="", interval=250,
                                                       loop_policy="loop", show_loop_controls=False,
                                                       width=280),
            "quantity": pn.widgets.Select.from_param(p.quantity),
            "variant": pn.widgets.RadioButtonGroup.from_param(p.variant, color="success",
                                                             variant="outline"),
        }
        # The toggle only means something when there are two twins to choose between.
        w["variant"].visible = len(p.variant.objects) > 1
        return w

    def _time_text(self, time_index: int, scenario: int, snapshot: int) -> str:
        n = int(self.data.valid_mask().sum())
        return (f"t = **{self.data.current_time() / 60:.1f} min** "
                f"(sample {time_index + 1} of {n}, snapshot cycle {self.data.snapshot_cycle()})")

    def _show_notice(self, event) -> None:
        self.notice.object = event.new
        self.notice.visible = bool(event.new)

    # ------------------------------------------------------------------ page
    def _store_summary(self) -> str:
        ds = self.data.truth
        n_s, n_p = schema.pack_shape(ds)
        twins = ", ".join(self.sources.variants) or "none"
        head = f"**Store** `{self.store_name}` · {n_s}S{n_p}P pack, {ds.sizes['cell']} cells, "
        if self.sources.measured:
            return (head + f"measured log ({ds.attrs.get('source_format')}), no truth · "
                    f"estimates and twins: {twins}")
        return (head + f"{ds.sizes['scenario']} scenarios, {ds.sizes.get('cycle', 0)} cycles · "
                f"model {ds.attrs.get('model')} ({ds.attrs.get('parameter_set')}) · twins: {twins}")

    def _sidebar(self) -> list:
        w = self.widgets
        d = self.data
        time_text = pn.pane.Markdown(pn.bind(self._time_text, d.sel.param.time_index,
                                             d.sel.param.scenario, d.sel.param.snapshot),
                                     margin=(0, 10))
        return [
            pn.pane.Markdown("### Scenario"), w["ambient"], w["c_rate"], w["protocol"], w["snapshot"],
            pn.pane.Markdown("### Cell"), w["cell"], w["quantity"],
            pn.pane.Markdown("### Particle"), w["electrode"], w["x_index"],
            pn.pane.Markdown("### Time in the cycle"), w["time_index"], time_text,
            *([pn.pane.Markdown("### Twin"), w["variant"]] if w["variant"].visible else []),
        ]

    def _main(self) -> list:
        section = lambda text: pn.pane.Markdown(f"### {text}", margin=(10, 10, 0, 10))  # noqa: E731
        return [
            pn.Column(pn.pane.Markdown(self._store_summary()), self.messages, self.notice,
                      sizing_mode="stretch_width"),
            section("Pack · click a cell to select it"),
            pn.Row(self.overview.panel(), *([self.sei.panel()] if self.sei else [])),
            section("Pack summary"),
            self.summary.panel(),
            *self._life(),
            section("Particle concentration of the selected cell"),
            self.maps.panel(),
            section("Measured signals and plating risk"),
            self.signals.panel(),
            self.plating.panel(),
            section("Identified parameters"),
            self.params.panel(),
        ]

    def _life(self) -> list:
        if self.fade is None:
            return []
        return [pn.pane.Markdown("### Pack over life · step the snapshot cycle to see its fields",
                                 margin=(10, 10, 0, 10)),
                self.widgets["snapshot_player"], self.fade.panel()]

    def _page(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(pn.pane.Markdown(f"## {TITLE}"), *self._sidebar(), width=310,
                                styles={"background": "#f4f6f8", "border-radius": "6px"},
                                margin=(5, 10)),
                      pn.Column(*self._main(), sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")

    def template(self) -> pn.template.BaseTemplate:
        """The page in a template with a header (what ``panel serve`` and ``packtwin app`` show)."""
        tmpl = pn.template.BootstrapTemplate(title=TITLE, header_background=ACCENT,
                                             sidebar_width=330)
        if self.data is None:
            tmpl.main.append(self.messages)
            return tmpl
        tmpl.sidebar.extend(self._sidebar())
        tmpl.main.append(pn.Column(*self._main(), sizing_mode="stretch_width"))
        return tmpl


def build_app(store: str | os.PathLike | None, predictions: Sequence[str | os.PathLike] = (),
              checkpoint: str | os.PathLike | None = None, *, live_load: Callable | None = None,
              live_predict: Callable | None = None,
              estimates: Sequence[str | os.PathLike] = ()) -> Explorer:
    """Open the stores (lazily) and build the explorer; never raises for bad inputs.

    ``store`` is a truth store (``packtwin generate``) or a measured one (``packtwin ingest``);
    ``estimates`` are stores from ``packtwin estimate``, shown with their bands."""
    sources = open_sources(store, predictions, checkpoint, live_load=live_load,
                           live_predict=live_predict, estimates=estimates)
    return Explorer(sources, store_name=Path(store).name if store is not None else "")
