"""``PackData``: the selection state of the explorer and the data behind every plot.

Views only present what this object returns. Arrays stay lazy in the stores; each accessor loads
just the slice it needs (one cell's cycle, or one scalar signal for every cell) and keeps it in a
small cache, so moving the time player or switching views re-reads nothing.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import param
import xarray as xr

from packtwin import schema
from packtwin.app.sources import LIVE, VARIANTS, Sources

X_AVG = -1  # x_index value meaning "average over the electrode's thickness"
TRUE, PRED = "true", "pred"
PERCENTILES = (10.0, 90.0)


@dataclass(frozen=True)
class Electrode:
    var: str
    x: str
    r: str


ELECTRODES = {
    "negative": Electrode("c_s_n", schema.X_N, schema.R_N),
    "positive": Electrode("c_s_p", schema.X_P, schema.R_P),
}

# Pack-overview colourings: quantity -> (variable it comes from, how it reduces over time).
OVERVIEW = {
    "SEI thickness": ("sei_thickness_avg", "at time"),
    "SOC": ("soc", "at time"),
    "Max plating risk": ("plating_margin", "cycle min"),
    "Temperature": ("temperature", "at time"),
    "c_s error": (None, "cycle rmse"),
}


def _c_rate_label(charge: float, discharge: float) -> str:
    return f"{charge:g}C charge / {discharge:g}C discharge"


class PackData(param.Parameterized):
    """Opened stores plus the user's selection; every plot's data is a method of this class."""

    ambient = param.Selector(default=None, objects=[], label="Ambient temperature")
    c_rate = param.Selector(default=None, objects=[], label="C-rate")
    protocol = param.Selector(default=None, objects=[], label="Protocol")
    scenario = param.Integer(default=0, doc="scenario coordinate chosen by the three selectors")
    snapshot = param.Selector(default=None, objects=[], label="Snapshot cycle")
    cell = param.Selector(default=None, objects=[], label="Cell")
    electrode = param.Selector(default="negative", objects=list(ELECTRODES), label="Electrode")
    x_index = param.Selector(default=X_AVG, objects=[X_AVG], label="Position for c_s(r, t)")
    time_index = param.Integer(default=0, bounds=(0, 0), label="Time in the cycle")
    quantity = param.Selector(default="SEI thickness", objects=list(OVERVIEW),
                              label="Colour cells by")
    variant = param.Selector(default=None, objects=[None], label="Twin")
    notice = param.String(default="", doc="what the plots cannot show for this selection")

    def __init__(self, sources: Sources, **params):
        if sources.truth is None:
            raise ValueError("PackData needs an opened truth store; show sources.errors instead")
        super().__init__(**params)
        self.sources = sources
        self.truth: xr.Dataset = sources.truth
        self._cache: OrderedDict = OrderedDict()
        self._syncing = False
        ds = self.truth
        self._cell_pos = {int(c): i for i, c in enumerate(ds[schema.CELL].values)}
        self.scenarios = pd.DataFrame({
            "scenario": ds[schema.SCENARIO].values.astype(int),
            "ambient": ds["ambient_temperature"].values.astype(float),
            # A label, not a (charge, discharge) tuple: pandas compares tuples element-wise.
            "c_rate": [_c_rate_label(float(c), float(d)) for c, d in
                       zip(ds["charge_c_rate"].values, ds["discharge_c_rate"].values)],
            "c_rate_key": [(float(c), float(d)) for c, d in
                           zip(ds["charge_c_rate"].values, ds["discharge_c_rate"].values)],
            "protocol": ds["protocol"].values.astype(int),
        })
        self.status = np.asarray(ds["status"].values, dtype=float)
        # Bounds and options first, then values (a value outside old bounds would be refused).
        self.param.ambient.objects = {f"{t:g} °C": t for t in sorted(set(self.scenarios.ambient))}
        self.param.c_rate.objects = [_c_rate_label(*c) for c in sorted(set(self.scenarios.c_rate_key))]
        self.param.protocol.objects = {schema.PROTOCOLS[p]: p
                                       for p in sorted(set(self.scenarios.protocol))}
        self.param.snapshot.objects = {f"cycle {int(c)}": int(i) for i, c in zip(
            ds[schema.SNAPSHOT].values, ds["snapshot_cycle"].values)}
        self.param.cell.objects = {self.cell_label(int(c)): int(c) for c in ds[schema.CELL].values}
        variants = sources.variants
        ordered = [v for v in VARIANTS if v in variants] + [v for v in variants if v not in VARIANTS]
        self.param.variant.objects = ordered or [None]
        first = self.scenarios.iloc[int(np.argmax(self.status == schema.STATUS_OK))
                                    if np.any(self.status == schema.STATUS_OK) else 0]
        with param.parameterized.discard_events(self):
            self.ambient, self.c_rate, self.protocol = first.ambient, first.c_rate, first.protocol
            self.scenario = int(first.scenario)
            self.snapshot = int(ds[schema.SNAPSHOT].values[0])
            self.cell = int(ds[schema.CELL].values[0])
            self.variant = self.param.variant.objects[0]
        self.param.watch(self._pick_scenario, ["ambient", "c_rate", "protocol"])
        self._x_options()
        self._time_bounds(reset=True)
        self._update_notice()

    # ------------------------------------------------------------------ selection bookkeeping
    def cell_label(self, cell: int) -> str:
        i = self._cell_pos[cell]
        s = int(self.truth["series_index"].values[i])
        p = int(self.truth["parallel_index"].values[i])
        return f"cell {cell} (S{s + 1} P{p + 1})"

    def _pick_scenario(self, *events) -> None:
        if self._syncing:
            return
        sc = self.scenarios
        want = {"ambient": self.ambient, "c_rate": self.c_rate, "protocol": self.protocol}
        hit = sc[(sc.ambient == want["ambient"]) & (sc.c_rate == want["c_rate"])
                 & (sc.protocol == want["protocol"])]
        if hit.empty:
            # The pack was not run at this combination: keep the value just chosen and take the
            # closest scenario with it (most other selectors agreeing, then the first in the store).
            changed = [e.name for e in events] or ["ambient"]
            pool = sc[sc[changed[-1]] == want[changed[-1]]]
            pool = pool if not pool.empty else sc
            score = sum((pool[k] == v).astype(int) for k, v in want.items())
            hit = pool[score == score.max()]
        row = hit.iloc[0]
        self._syncing = True
        try:
            self.param.update(ambient=row.ambient, c_rate=row.c_rate, protocol=row.protocol)
        finally:
            self._syncing = False
        self.scenario = int(row.scenario)

    @param.depends("scenario", "snapshot", watch=True, on_init=False)
    def _time_bounds(self, reset: bool = False) -> None:
        n = int(self.valid_mask().sum())
        hi = max(n - 1, 0)
        self.param.time_index.bounds = (0, hi)
        if reset or self.time_index > hi:
            self.time_index = min(self.time_index, hi) if not reset else hi // 2

    @param.depends("electrode", watch=True)
    def _x_options(self) -> None:
        e = ELECTRODES[self.electrode]
        xs = self.truth[e.x].values
        opts = {"x-averaged": X_AVG}
        opts.update({f"x = {x * 1e6:.1f} µm": i for i, x in enumerate(xs)})
        self.param.x_index.objects = opts
        if self.x_index not in opts.values():
            self.x_index = X_AVG

    @param.depends("scenario", "cell", "variant", watch=True)
    def _update_notice(self) -> None:
        notes = []
        st = self.status[self.scenario]
        if not np.isfinite(st):
            notes.append(f"Scenario {self.scenario} has not been simulated yet.")
        elif st == schema.STATUS_FAILED:
            notes.append(f"Scenario {self.scenario} failed to simulate{self._reason()}.")
        elif st == schema.STATUS_PARTIAL:
            notes.append(f"Scenario {self.scenario} stopped early{self._reason()}.")
        if self.variant is None:
            notes.append("No predictions loaded: showing the simulated truth only "
                         "(start with --predictions or --checkpoint to compare).")
        else:
            pred, why = self.prediction()
            if pred is None:
                notes.append(why)
            elif self.cell not in pred[schema.CELL].values:
                notes.append(f"The {self.variant} twin has no prediction for "
                             f"{self.cell_label(self.cell)}.")
        self.notice = " ".join(notes)

    def _reason(self) -> str:
        from packtwin.data.store import json_attr

        msgs = json_attr(self.truth, "messages", {}) or {}
        msg = msgs.get(str(self.scenario)) if isinstance(msgs, dict) else None
        return f": {msg}" if msg else ""

    # ------------------------------------------------------------------ cached slice loading
    def _cached(self, key: tuple, fn: Callable):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        val = fn()
        self._cache[key] = val
        if len(self._cache) > 96:
            self._cache.popitem(last=False)
        return val

    def prediction(self, scenario: int | None = None) -> tuple[xr.Dataset | None, str]:
        """The selected twin's dataset for a scenario, or None and why not."""
        scenario = self.scenario if scenario is None else scenario
        if self.variant is None:
            return None, "No predictions loaded."
        if self.variant == LIVE:
            try:
                ds = self.sources.live.scenario(scenario)
            except Exception as exc:  # a model failure shows in the page, the truth stays usable
                return None, f"Live twin failed on scenario {scenario}: {exc}"
        else:
            ds = self.sources.predictions[self.variant]
        if scenario not in ds[schema.SCENARIO].values:
            return None, f"The {self.variant} twin has no prediction for scenario {scenario}."
        return ds, ""

    def _pred_slice(self, name: str, cell: int | None, scenario: int, snapshot: int
                    ) -> xr.DataArray | None:
        ds, _ = self.prediction(scenario)
        if ds is None or name not in ds.data_vars:
            return None
        if snapshot not in ds[schema.SNAPSHOT].values:
            return None
        idx = {schema.SCENARIO: scenario, schema.SNAPSHOT: snapshot}
        if cell is not None:
            if cell not in ds[schema.CELL].values:
                return None
            idx[schema.CELL] = cell
        return ds[name].sel(idx)

    def valid_mask(self, scenario: int | None = None, snapshot: int | None = None) -> np.ndarray:
        s = self.scenario if scenario is None else scenario
        k = self.snapshot if snapshot is None else snapshot
        return self._cached(("valid", s, k), lambda: np.asarray(
            self.truth["valid"].sel({schema.SCENARIO: s, schema.SNAPSHOT: k}).values, bool))

    def times(self) -> np.ndarray:
        """Valid sample times of the selected cycle [s]."""
        return self.truth[schema.TIME].values[self.valid_mask()]

    def current_time(self) -> float:
        t = self.times()
        return float(t[self.time_index]) if t.size else 0.0

    def cell_signal(self, name: str, source: str = TRUE, cell: int | None = None) -> np.ndarray | None:
        """One cell's signal over the valid part of the selected cycle (None: not available)."""
        cell = self.cell if cell is None else cell
        if self.truth[name].ndim == 4:
            # A scalar signal: one read of every cell serves all later cell changes.
            if source == PRED:
                ds, _ = self.prediction()
                if (ds is None or name not in ds.data_vars or cell not in ds[schema.CELL].values
                        or self.snapshot not in ds[schema.SNAPSHOT].values):
                    return None
            block = self.pack_signal(name, source)
            return None if block is None else block[self._cell_pos[cell]]
        key = (name, source, self.variant if source == PRED else None, self.scenario, cell,
               self.snapshot)

        def load():
            if source == TRUE:
                da = self.truth[name].sel({schema.SCENARIO: self.scenario, schema.CELL: cell,
                                           schema.SNAPSHOT: self.snapshot})
            else:
                da = self._pred_slice(name, cell, self.scenario, self.snapshot)
                if da is None:
                    return None
            return np.asarray(da.values)[self.valid_mask()]

        return self._cached(key, load)

    def pack_signal(self, name: str, source: str = TRUE) -> np.ndarray | None:
        """A scalar signal of every cell over the selected cycle, shape (cell, valid time)."""
        key = ("pack", name, source, self.variant if source == PRED else None, self.scenario,
               self.snapshot)

        def load():
            if source == TRUE:
                da = self.truth[name].sel({schema.SCENARIO: self.scenario,
                                           schema.SNAPSHOT: self.snapshot})
                da = da.reindex({schema.CELL: self.truth[schema.CELL].values})
            else:
                da = self._pred_slice(name, None, self.scenario, self.snapshot)
                if da is None:
                    return None
                da = da.reindex({schema.CELL: self.truth[schema.CELL].values})  # NaN where absent
            return np.asarray(da.transpose(schema.CELL, schema.TIME, ...).values)[:, self.valid_mask()]

        return self._cached(key, load)

    # ------------------------------------------------------------------ particle concentration
    def electrode_spec(self) -> Electrode:
        return ELECTRODES[self.electrode]

    def cs_cycle(self, source: str = TRUE) -> np.ndarray | None:
        """The selected cell's c_s over the valid cycle, shape (time, x, r)."""
        e = self.electrode_spec()
        return self.cell_signal(e.var, source)

    def cs_at_time(self, source: str = TRUE) -> np.ndarray | None:
        """c_s over (r, x) at the chosen time (rows r, columns x, as images are drawn)."""
        block = self.cs_cycle(source)
        if block is None or block.shape[0] == 0:
            return None
        return block[self.time_index].T

    def cs_over_time(self, source: str = TRUE) -> np.ndarray | None:
        """c_s over (r, time) at the chosen x, or averaged over x."""
        block = self.cs_cycle(source)
        if block is None:
            return None
        prof = block.mean(axis=1) if self.x_index == X_AVG else block[:, self.x_index, :]
        return prof.T

    def cs_error(self, which: Callable[[str], np.ndarray | None]) -> np.ndarray | None:
        pred, true = which(PRED), which(TRUE)
        return None if pred is None or true is None else pred - true

    def _cs_blocks(self, at_time: bool) -> list[np.ndarray]:
        blocks = [b for b in (self.cs_cycle(TRUE), self.cs_cycle(PRED)) if b is not None and b.size]
        return [b[self.time_index] for b in blocks] if at_time else blocks

    def cs_clim(self, at_time: bool = False) -> tuple[float, float]:
        """One colour range for predicted and true c_s of the selected cell: at the chosen time
        (``at_time``, so the radial structure of that instant is visible) or over the cycle."""
        vals = self._cs_blocks(at_time)
        finite = np.concatenate([v[np.isfinite(v)].ravel() for v in vals]) if vals else np.array([])
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = float(finite.min()), float(finite.max())
        return (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)

    def cs_error_clim(self, at_time: bool = False) -> tuple[float, float]:
        """Symmetric range of predicted - true, at the chosen time or over the cycle."""
        t, p = self.cs_cycle(TRUE), self.cs_cycle(PRED)
        if t is None or p is None or not t.size or not np.isfinite(p - t).any():
            return -1.0, 1.0
        err = (p - t)[self.time_index] if at_time else p - t
        if not np.isfinite(err).any():
            return -1.0, 1.0
        m = float(np.nanmax(np.abs(err)))
        return (-m, m) if m > 0 else (-1.0, 1.0)

    def c_max(self) -> float | None:
        val = self.truth[self.electrode_spec().var].attrs.get("c_max")
        return float(val) if val is not None else None

    # ------------------------------------------------------------------ pack-level views
    def overview(self) -> pd.DataFrame:
        """Every cell's position and the chosen quantity's value (NaN where unavailable)."""
        var, how = OVERVIEW[self.quantity]
        cells = self.truth[schema.CELL].values.astype(int)
        if how == "cycle rmse":
            values = self._cs_rmse_per_cell()
        else:
            sig = self.pack_signal(var)
            if sig.shape[1] == 0:
                values = np.full(len(cells), np.nan)
            elif how == "at time":
                values = sig[:, self.time_index]
            else:
                with np.errstate(all="ignore"):
                    values = np.nanmin(sig, axis=1) if np.isfinite(sig).any() else sig[:, 0]
        return pd.DataFrame({
            "cell": cells,
            "series_index": self.truth["series_index"].values.astype(int),
            "parallel_index": self.truth["parallel_index"].values.astype(int),
            "value": np.asarray(values, dtype=float),
        })

    def overview_label(self) -> tuple[str, str]:
        """(long name, units) of the overview quantity."""
        var, how = OVERVIEW[self.quantity]
        if how == "cycle rmse":
            var = self.electrode_spec().var
            name = f"{schema.var_attrs(var)['long_name']} RMSE over the cycle"
            return (name, "% of c_max") if self.c_max() else (name, schema.units(var))
        a = schema.var_attrs(var)
        name = a["long_name"] if how == "at time" else f"Minimum over the cycle: {a['long_name']}"
        return name, a["units"]

    def _cs_rmse_per_cell(self) -> np.ndarray:
        e = self.electrode_spec()
        t = self.pack_signal(e.var, TRUE)
        p = self.pack_signal(e.var, PRED)
        if p is None or t.shape[1] == 0:
            return np.full(t.shape[0], np.nan)
        axes = tuple(range(1, t.ndim))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cells without a prediction: NaN
            rmse = np.sqrt(np.nanmean((p - t) ** 2, axis=axes))
        cmax = self.c_max()
        return 100.0 * rmse / cmax if cmax else rmse

    def sei_curves(self) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, SEI thickness at cycle end per cell and cycle) of the selected scenario."""
        def load():
            da = self.truth["sei_thickness_end"].sel({schema.SCENARIO: self.scenario})
            return (self.truth[schema.CYCLE].values.astype(int),
                    np.asarray(da.transpose(schema.CELL, schema.CYCLE).values, float))

        return self._cached(("sei_end", self.scenario), load)

    def sei_band(self) -> dict[str, np.ndarray]:
        cycles, sei = self.sei_curves()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cycles not yet run
            return {"cycle": cycles, "min": np.nanmin(sei, 0), "max": np.nanmax(sei, 0),
                    "lo": np.nanpercentile(sei, PERCENTILES[0], 0),
                    "hi": np.nanpercentile(sei, PERCENTILES[1], 0),
                    "median": np.nanmedian(sei, 0)}

    def sei_at_snapshots(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """The selected cell's x-averaged SEI thickness at the end of each snapshot cycle."""
        ds = self.truth if source == TRUE else self.prediction()[0]
        if ds is None or "sei_thickness_avg" not in ds.data_vars or (
                self.cell not in ds[schema.CELL].values):
            return np.array([], int), np.array([], float)

        def load():
            # One read of (cell, snapshot, time) for the scenario serves every cell.
            da = ds["sei_thickness_avg"].sel({schema.SCENARIO: self.scenario}).reindex(
                {schema.CELL: self.truth[schema.CELL].values,
                 schema.SNAPSHOT: self.truth[schema.SNAPSHOT].values})
            return np.asarray(da.transpose(schema.CELL, schema.SNAPSHOT, schema.TIME).values, float)

        vals = self._cached(("sei_snap", source, self.variant if source == PRED else None,
                             self.scenario), load)[self._cell_pos[self.cell]]
        cyc, out = [], []
        for i, (k, c) in enumerate(zip(self.truth[schema.SNAPSHOT].values,
                                       self.truth["snapshot_cycle"].values)):
            idx = np.flatnonzero(self.valid_mask(self.scenario, int(k)))
            if idx.size and np.isfinite(vals[i, idx[-1]]):
                cyc.append(int(c))
                out.append(vals[i, idx[-1]])
        return np.asarray(cyc, int), np.asarray(out, float)

    def snapshot_cycle(self) -> int:
        return int(self.truth["snapshot_cycle"].sel({schema.SNAPSHOT: self.snapshot}).values)

    def _param_values(self, name: str, ds: xr.Dataset, tag: str) -> dict[int, float]:
        """A per-cell parameter of one dataset as {cell: value}, read once (tiny)."""
        def load():
            if name not in ds.data_vars:
                return {}
            return dict(zip(ds[schema.CELL].values.astype(int).tolist(),
                            np.asarray(ds[name].values, float).tolist()))

        return self._cached(("param", tag, name), load)

    def params_table(self) -> pd.DataFrame:
        """Truth vs every twin's identified value of each per-cell parameter, selected cell."""
        twins = dict(self.sources.predictions)
        if self.variant == LIVE:
            live, _ = self.prediction()
            if live is not None:
                twins[LIVE] = live
        rows = []
        for key in schema.param_keys_in(self.truth):
            name = schema.param_var(key)
            p = schema.PARAMETERS[key]
            truth = self._param_values(name, self.truth, "truth")[self.cell]
            row = {"parameter": p.long_name, "units": p.units, "truth": truth}
            for variant, ds in twins.items():
                tag = (variant, self.scenario) if variant == LIVE else variant
                val = self._param_values(name, ds, tag).get(self.cell, np.nan)
                row[variant] = val
                row[f"{variant} error [%]"] = (100.0 * (val - truth) / truth
                                               if np.isfinite(val) and truth else np.nan)
            rows.append(row)
        return pd.DataFrame(rows)
