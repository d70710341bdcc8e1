"""``PackData``: the data behind every plot for the current selection.

It joins the three parts of the app's model and adds nothing of its own but the notice:

- ``sel`` (``packtwin.app.selection.Selection``): what the user has chosen;
- ``reader`` (``packtwin.app.reader.StoreReader``): cached reads of the stores (and the live twin
  injected by ``packtwin.app.serve``);
- ``packtwin.app.reductions``: pure functions from the arrays read to what a view plots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from packtwin import schema
from packtwin.app import reductions as red
from packtwin.app.reader import PRED, TRUE, StoreReader, display_unit
from packtwin.app.selection import OVERVIEW, Selection
from packtwin.app.sources import Sources

__all__ = ["PackData", "PRED", "TRUE"]


class PackData(param.Parameterized):
    """The current selection's data; views only present what this object returns."""

    notice = param.String(default="", doc="what the plots cannot show for this selection")

    def __init__(self, sources: Sources, **params):
        super().__init__(**params)
        self.reader = StoreReader(sources)
        self.truth = self.reader.truth
        self.sel = Selection(self.reader)
        self.sel.param.watch(self._update_notice, ["scenario", "cell", "variant"])
        self._update_notice()

    # ------------------------------------------------------------------ notice
    def _update_notice(self, *_) -> None:
        s, r = self.sel, self.reader
        notes = []
        st = r.status[s.scenario]
        if not np.isfinite(st):
            notes.append(f"Scenario {s.scenario} has not been simulated yet.")
        elif st == schema.STATUS_FAILED:
            notes.append(f"Scenario {s.scenario} failed to simulate{r.reason(s.scenario)}.")
        elif st == schema.STATUS_PARTIAL:
            notes.append(f"Scenario {s.scenario} stopped early{r.reason(s.scenario)}.")
        if s.variant is None:
            notes.append("No predictions loaded: showing the simulated truth only "
                         "(start with --predictions or --checkpoint to compare).")
        else:
            pred, why = r.prediction(s.variant, s.scenario)
            if pred is None:
                notes.append(why)
            elif not r.has_cell(PRED, s.variant, s.scenario, s.cell):
                notes.append(f"The {s.variant} twin has no prediction for {r.cell_label(s.cell)}.")
        self.notice = " ".join(notes)

    # ------------------------------------------------------------------ the selected cycle
    def valid_mask(self) -> np.ndarray:
        return self.reader.valid_mask(self.sel.scenario, self.sel.snapshot)

    def times(self) -> np.ndarray:
        """Valid sample times of the selected cycle [s]."""
        return self.reader.times(self.sel.scenario, self.sel.snapshot)

    def current_time(self) -> float:
        t = self.times()
        return float(t[min(self.sel.time_index, t.size - 1)]) if t.size else 0.0

    def signal(self, name: str, source: str = TRUE, cell: int | None = None) -> np.ndarray | None:
        """One cell's signal over the selected cycle, in display units (None: not available)."""
        s = self.sel
        return self.reader.cell_signal(name, source, s.variant, s.scenario, s.snapshot,
                                       s.cell if cell is None else cell)

    def pack(self, name: str, source: str = TRUE) -> np.ndarray | None:
        """A signal of every cell over the selected cycle, shape (cell, valid time, ...)."""
        s = self.sel
        return self.reader.pack_signal(name, source, s.variant, s.scenario, s.snapshot)

    def snapshot_cycle(self) -> int:
        return self.reader.snapshot_cycle(self.sel.snapshot)

    # ------------------------------------------------------------------ particle concentration
    def cs_block(self, source: str = TRUE) -> np.ndarray | None:
        """The selected cell's c_s over the valid cycle, shape (time, x, r)."""
        return self.signal(self.sel.electrode_spec.var, source)

    def _cs_map(self, source: str, reduce, index) -> np.ndarray | None:
        """``reduce(c_s block, index)`` of one source, or predicted - true for ``"error"``."""
        if source == "error":
            return red.difference(reduce(self.cs_block(PRED), index),
                                  reduce(self.cs_block(TRUE), index))
        return reduce(self.cs_block(source), index)

    def cs_at_time(self, source: str) -> np.ndarray | None:
        """c_s (or, for ``source="error"``, predicted - true) over (r, x) at the chosen time."""
        return self._cs_map(source, red.cs_at_time, self.sel.time_index)

    def cs_over_time(self, source: str) -> np.ndarray | None:
        """c_s (or the error) over (r, time) at the chosen x, or averaged over x."""
        return self._cs_map(source, red.cs_over_time, self.sel.x_index)

    def cs_clim(self, source: str, at_time: bool) -> tuple[float, float]:
        """Colour range of a c_s map: predicted and true share one (over both at the chosen
        time, or over the cycle); the error a symmetric one. Both with a floor."""
        pick = self.cs_at_time if at_time else self.cs_over_time
        if source == "error":
            return red.symmetric_range(pick("error"), red.COLOUR_FLOORS["c_s error map"])
        return red.colour_range(pick(TRUE), pick(PRED), floor=red.COLOUR_FLOORS["c_s"])

    def c_max(self) -> float | None:
        return self.reader.c_max(self.sel.electrode_spec.var)

    # ------------------------------------------------------------------ pack-level views
    def overview(self) -> pd.DataFrame:
        """Every cell's position and the chosen quantity's value (NaN where unavailable)."""
        var, how = OVERVIEW[self.sel.quantity]
        if how == "cycle rmse":
            e = self.sel.electrode_spec.var
            values = red.cs_rmse_per_cell(self.pack(e, TRUE), self.pack(e, PRED), self.c_max())
        else:
            values = red.overview_values(self.pack(var), how, self.sel.time_index)
        return pd.DataFrame({
            "cell": self.reader.cells,
            "series_index": self.truth["series_index"].values.astype(int),
            "parallel_index": self.truth["parallel_index"].values.astype(int),
            "value": np.asarray(values, dtype=float),
        })

    def overview_label(self) -> tuple[str, str]:
        """(long name, units) of the overview quantity."""
        var, how = OVERVIEW[self.sel.quantity]
        if how == "cycle rmse":
            var = self.sel.electrode_spec.var
            name = f"{schema.var_attrs(var)['long_name']} RMSE over the cycle"
            return (name, "% of c_max") if self.c_max() else (name, display_unit(var))
        long = schema.var_attrs(var)["long_name"]
        name = long if how == "at time" else f"Minimum over the cycle: {long}"
        return name, display_unit(var)

    def overview_clim(self, values: np.ndarray) -> tuple[float, float]:
        return red.colour_range(values, floor=red.COLOUR_FLOORS[self.sel.quantity])

    def sei_curves(self) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, SEI thickness at cycle end per cell and cycle) of the selected scenario."""
        return self.reader.sei_end(self.sel.scenario)

    def sei_at_snapshots(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The selected cell's x-averaged SEI thickness at the end of each snapshot cycle."""
        s, r = self.sel, self.reader
        vals = r.sei_snapshots(source, s.variant, s.scenario)
        if vals is None or not r.has_cell(source, s.variant, s.scenario, s.cell):
            return np.array([], int), np.array([], float)
        snaps = self.truth[schema.SNAPSHOT].values
        masks = [r.valid_mask(s.scenario, int(k)) for k in snaps]
        return red.last_valid(vals[r.cell_pos[s.cell]], masks, self.truth["snapshot_cycle"].values)

    def params_table(self) -> pd.DataFrame:
        """Truth vs every twin's identified value of each per-cell parameter, selected cell."""
        s, r = self.sel, self.reader
        rows, twins = [], {v: [] for v in r.twins_for_params(s.variant, s.scenario)}
        for key in schema.param_keys_in(self.truth):
            name, p = schema.param_var(key), schema.PARAMETERS[key]
            rows.append((p.long_name, p.units, r.param_values(name, self.truth, "truth")[s.cell]))
            for variant, (ds, tag) in r.twins_for_params(s.variant, s.scenario).items():
                twins[variant].append(r.param_values(name, ds, tag).get(s.cell, np.nan))
        return red.params_table(rows, twins)
