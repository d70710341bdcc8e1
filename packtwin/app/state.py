"""``PackData``: the data behind every plot for the current selection.

It joins the three parts of the app's model and adds nothing of its own but the notice:

- ``sel`` (``packtwin.app.selection.Selection``): what the user has chosen;
- ``reader`` (``packtwin.app.reader.StoreReader``): cached reads of the stores (and the live twin
  injected by ``packtwin.app.serve``);
- ``packtwin.app.reductions`` and ``packtwin.app.summary``: pure functions from the arrays read
  to what a view plots.

Where the store has no truth of a variable (a measured store), the selected twin's estimate takes
its place (``source_of``) and its band ``k * <name>_std`` comes with it (``half_width``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import param

from packtwin import schema
from packtwin.app import reductions as red
from packtwin.app import summary as sm
from packtwin.app.reader import PRED, TRUE, StoreReader, display_unit
from packtwin.app.selection import OVERVIEW, Selection
from packtwin.app.sources import Sources

__all__ = ["LIFE", "LifeSeries", "PackData", "PRED", "TRUE"]

# Over life: what -> (truth's per-cycle summary, the life twin's per-cycle estimate).
LIFE = {"sei": ("sei_thickness_end", "sei_thickness_est"), "capacity": ("capacity", "capacity_est")}


@dataclass(frozen=True)
class LifeSeries:
    """A per-cycle quantity of every cell (cell, cycle) and what the life views mark on it."""

    cycles: np.ndarray
    values: np.ndarray
    source: str  # TRUE or PRED: where ``values`` come from
    twin: tuple[np.ndarray, np.ndarray] | None  # (cycles, values) of the twin beside the truth
    rates: np.ndarray  # per cell, mean change per cycle
    fastest: int  # position of the fastest-changing cell (-1: none)


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
        if s.variant is None and r.measured:
            notes.append("Measured store without estimates: showing the measured signals only "
                         "(start with --estimates EST.zarr from packtwin estimate).")
        elif s.variant is None:
            notes.append("No predictions loaded: showing the simulated truth only "
                         "(start with --predictions or --checkpoint to compare).")
        else:
            pred, why = r.prediction(s.variant, s.scenario)
            if pred is None:
                notes.append(why)
            elif not r.has_cell(PRED, s.variant, s.scenario, s.cell):
                notes.append(f"The {s.variant} twin has no prediction for {r.cell_label(s.cell)}.")
            elif r.measured:
                k = r.band_factor(s.variant)
                notes.append("Measured store: no truth; hidden states are the "
                             f"{s.variant} twin's estimates" +
                             (f", bands mean ± {k:.3g} std." if k else " (no band)."))
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

    def source_of(self, name: str) -> str:
        """Where a variable is read from: the truth where the store has it, else the twin."""
        return TRUE if self.reader.has_truth(name) else PRED

    def half_width(self, name: str, cell: int | None = None) -> np.ndarray | None:
        """Band half-width ``k * std`` of the twin's estimate of one cell over the cycle."""
        s = self.sel
        k = self.reader.band_factor(s.variant)
        std = None if k is None else self.signal(schema.std_var(name), PRED, cell)
        return None if std is None else k * std

    def pack_half_width(self, name: str) -> np.ndarray | None:
        """Band half-width of every cell over the cycle, None without a band or from the truth."""
        if self.source_of(name) == TRUE:
            return None
        s = self.sel
        return self.reader.spread(name, s.variant, s.scenario, s.snapshot)

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
        if source == "band":
            return reduce(self.half_width(self.sel.electrode_spec.var), index)
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
        if source == "band":
            return red.colour_range(pick("band"), floor=red.COLOUR_FLOORS["c_s error map"])
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
            values = self.pack(var, self.source_of(var))
            values = (np.full(self.reader.cells.size, np.nan) if values is None
                      else red.overview_values(values, how, self.sel.time_index))
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

    def has_life(self, what: str) -> bool:
        """Whether the store or a twin holds ``what`` ("sei", "capacity") over cycles."""
        true_name, est_name = LIFE[what]
        return self.reader.has_truth(true_name) or any(
            est_name in ds.data_vars for ds in self.reader.sources.predictions.values())

    def life(self, what: str) -> LifeSeries | None:
        """``what`` ("sei": SEI at cycle end [nm]; "capacity": capacity retention [% of the
        first cycle]) of every cell over the cycles of the selected scenario: the truth where
        the store has it, else the twin's per-cycle estimate; the twin's estimate of the truth's
        cells beside it; and the cell that changes fastest (SEI up, capacity down)."""
        s, r = self.sel, self.reader
        true_name, est_name = LIFE[what]
        truth = r.cycle_series(true_name, TRUE, None, s.scenario)
        est = (r.cycle_series(est_name, PRED, s.variant, s.scenario)
               if s.variant is not None else None)
        base, source = (truth, TRUE) if truth is not None else (est, PRED)
        if base is None:
            return None
        scale = sm.percent_of_first if what == "capacity" else (lambda v: v)
        cycles, values = base[0], scale(base[1])
        rates = sm.growth_per_cycle(cycles, values)
        twin = None
        if source == TRUE and est is not None:
            twin = (est[0], scale(est[1]))
        return LifeSeries(cycles, values, source, twin, rates,
                          sm.fastest(rates, higher=(what == "sei")))

    def sei_at_snapshots(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The selected cell's x-averaged SEI thickness at the end of each snapshot cycle."""
        s, r = self.sel, self.reader
        vals = r.sei_snapshots(source, s.variant, s.scenario)
        if vals is None or not r.has_cell(source, s.variant, s.scenario, s.cell):
            return np.array([], int), np.array([], float)
        snaps = self.truth[schema.SNAPSHOT].values
        masks = [r.valid_mask(s.scenario, int(k)) for k in snaps]
        return red.last_valid(vals[r.cell_pos[s.cell]], masks, self.truth["snapshot_cycle"].values)

    # ------------------------------------------------------------------ pack summary
    def soc_spread(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """SOC of every cell over the cycle (cell, time) and its band half-width (None: none)."""
        return self.pack("soc", self.source_of("soc")), self.pack_half_width("soc")

    def plating_alarms(self) -> pd.DataFrame:
        """Every cell's plating status over the cycle, worst first (``summary.plating_alarms``)."""
        margin = self.pack("plating_margin", self.source_of("plating_margin"))
        if margin is None:
            margin = np.full((self.reader.cells.size, self.times().size), np.nan)
        return sm.plating_alarms(margin, self.pack_half_width("plating_margin"), self.times(),
                                 self.reader.cells)

    def _param_figure(self, key: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        """A per-cell parameter of every cell from the truth, else the twin (with its band)."""
        s, r = self.sel, self.reader
        name = schema.param_var(key)
        if name in self.truth.data_vars:
            vals = r.param_values(name, self.truth, "truth")
            return np.array([vals.get(int(c), np.nan) for c in r.cells]), None
        ds, _ = r.prediction(s.variant, s.scenario) if s.variant else (None, "")
        if ds is None or name not in ds.data_vars:
            return None
        tag = (s.variant, s.scenario)
        vals = r.param_values(name, ds, tag)
        std = r.param_values(schema.std_var(name), ds, tag)
        k = r.band_factor(s.variant)
        hw = None if k is None or not std else np.array([k * std.get(int(c), np.nan)
                                                         for c in r.cells])
        return np.array([vals.get(int(c), np.nan) for c in r.cells]), hw

    def cell_figures(self) -> dict[sm.Criterion, tuple[np.ndarray, np.ndarray | None]]:
        """Per-cell figures by which a cell is weak (truth where the store has it, else the
        twin's estimate and band): capacity at the snapshot cycle, SOC at the chosen time, SEI at
        the cycle's end, the cycle's lowest plating margin, and the identified parameters."""
        s, r = self.sel, self.reader
        out: dict[sm.Criterion, tuple[np.ndarray, np.ndarray | None]] = {}
        for name in ("capacity", "capacity_est"):
            for source in (TRUE, PRED):
                vals = r.at_cycle(name, source, s.variant, s.scenario, self.snapshot_cycle())
                if vals is not None:
                    tag = "" if source == TRUE else f" ({s.variant})"
                    out[sm.Criterion(f"{schema.var_attrs(name)['long_name']}{tag}",
                                     schema.units(name), False)] = (vals, None)
        soc, soc_hw = self.soc_spread()
        if soc is not None:
            at = lambda a: None if a is None else red.overview_values(a, "at time",  # noqa: E731
                                                                      s.time_index)
            out[sm.Criterion("SOC at the chosen time", "1", False)] = (at(soc), at(soc_hw))
        sei = self.pack("sei_thickness_avg", self.source_of("sei_thickness_avg"))
        if sei is not None:
            hw = self.pack_half_width("sei_thickness_avg")
            out[sm.Criterion("SEI thickness at the cycle's end", "nm", True)] = (
                sm.last_finite(sei), None if hw is None else sm.last_finite(hw))
        alarms = self.plating_alarms().set_index("cell").reindex(r.cells)
        if np.isfinite(alarms.min_margin.values).any():
            out[sm.Criterion("Lowest plating margin in the cycle", "V", False)] = (
                alarms.min_margin.values, alarms.band.values)
        for key, worse in sm.PARAM_WORSE.items():
            fig = self._param_figure(key)
            if fig is not None:
                p = schema.PARAMETERS[key]
                out[sm.Criterion(p.long_name, p.units, worse)] = fig
        return out

    def weakest_cells(self, n: int = 3) -> pd.DataFrame:
        return sm.weakest_cells(self.reader.cells, self.cell_figures(), n)

    def outliers(self) -> pd.DataFrame:
        """Cells whose figure (capacity, SEI, parameters...) is a robust-z outlier of the pack."""
        figs = {c.label: v for c, (v, _) in self.cell_figures().items()
                if not c.label.startswith(("SOC", "Lowest plating"))}
        return sm.outlier_table(self.reader.cells, figs)

    def params_table(self) -> pd.DataFrame:
        """Truth vs every twin's identified value of each per-cell parameter, selected cell."""
        s, r = self.sel, self.reader
        found = r.twins_for_params(s.variant, s.scenario)
        rows, twins = [], {v: [] for v in found}
        bands = {v: [] for v in found if r.band_factor(v) is not None}
        # A measured store has no parameter table: the parameters the twins identified.
        keys = schema.param_keys_in(self.truth) or [
            k for k in schema.PARAMETERS if any(schema.param_var(k) in ds for ds, _ in found.values())]
        for key in keys:
            name, p = schema.param_var(key), schema.PARAMETERS[key]
            truth = r.param_values(name, self.truth, "truth").get(s.cell, np.nan)
            rows.append((p.long_name, p.units, truth))
            for variant, (ds, tag) in found.items():
                twins[variant].append(r.param_values(name, ds, tag).get(s.cell, np.nan))
                if variant in bands:
                    std = r.param_values(schema.std_var(name), ds, tag).get(s.cell, np.nan)
                    bands[variant].append(r.band_factor(variant) * std)
        return red.params_table(rows, twins, bands)
