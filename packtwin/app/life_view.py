"""The pack over life: capacity fade of every cell and a player over the snapshot cycles.

The SEI spread over cycles is ``views.SeiSpread`` (beside the pack overview); this module adds the
capacity retention of every cell over the cycles (the fastest-fading cell marked, the twin's
per-cycle estimate beside the truth) and a player that steps the snapshot cycle, so every field
view (pack overview, c_s maps, signals, plating, summary) shows that snapshot.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn

from packtwin import schema
from packtwin.app.state import PackData
from packtwin.app.views import (dim, empty_life, life_layers, life_plot, life_twin_label,
                                selection_stream)


class CapacityFade:
    """Capacity of every cell over the cycles, as % of its first cycle's."""

    DEPS = ("scenario", "cell", "variant", "snapshot")

    def __init__(self, data: PackData):
        self.data = data
        self.life_label = life_twin_label(data, "capacity")
        self.dmap = hv.DynamicMap(self._plot, streams=[selection_stream(data, *self.DEPS)])

    def _plot(self, **_) -> hv.Overlay:
        d = self.data
        life = d.life("capacity") or empty_life(d)
        cdim = dim(schema.CYCLE)
        vdim = hv.Dimension("capacity_retention", label="Capacity retention",
                            unit="% of the first cycle")
        return life_plot(d, life, life_layers(d, life, cdim, vdim, self.life_label),
                         "Capacity fade", "%")

    def panel(self) -> pn.viewable.Viewable:
        return pn.pane.HoloViews(self.dmap, linked_axes=False)


def snapshot_player(data: PackData) -> pn.widgets.DiscretePlayer:
    """Steps the snapshot cycle (the same parameter as the sidebar's snapshot selector)."""
    return pn.widgets.DiscretePlayer.from_param(
        data.sel.param.snapshot, name="Snapshot cycle", interval=1500, loop_policy="once",
        show_loop_controls=False, width=320)
