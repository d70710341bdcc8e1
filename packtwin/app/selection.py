"""``Selection``: what the user has chosen (scenario, snapshot, cell, electrode, time, colouring, twin).

Only parameters and the rules that keep them consistent (the three scenario selectors always name
a scenario the pack was run at; the time player's end follows the cycle's length; x positions
follow the electrode). It reads nothing itself: a ``StoreReader`` and the store's coordinates are
given to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import param

from packtwin import schema
from packtwin.app.reader import ELECTRODES, StoreReader
from packtwin.app.reductions import X_AVG
from packtwin.app.sources import VARIANTS

# Pack-overview colourings: quantity -> (variable it comes from, how it reduces over time).
OVERVIEW = {
    "SEI thickness": ("sei_thickness_avg", "at time"),
    "SOC": ("soc", "at time"),
    "Max plating risk": ("plating_margin", "cycle min"),
    "Temperature": ("temperature", "at time"),
    "c_s error": (None, "cycle rmse"),
}


NOT_DECLARED = "not declared"  # a measured log's C-rate or protocol (no cycler protocol ran)
NO_PROTOCOL = -1


def c_rate_label(charge: float, discharge: float) -> str:
    if not (np.isfinite(charge) and np.isfinite(discharge)):
        return NOT_DECLARED
    return f"{charge:g}C charge / {discharge:g}C discharge"


def protocol_label(code: int) -> str:
    return schema.PROTOCOLS[code] if 0 <= code < len(schema.PROTOCOLS) else NOT_DECLARED


def scenario_table(truth) -> pd.DataFrame:
    """One row per scenario: its coordinate, ambient [degC], C-rate label and protocol
    (a measured store may lack the C-rates and protocol: "not declared")."""
    n = truth.sizes[schema.SCENARIO]

    def coord(name, fill):
        return truth[name].values if name in truth.coords else np.full(n, fill)

    c, d = coord("charge_c_rate", np.nan), coord("discharge_c_rate", np.nan)
    return pd.DataFrame({
        "scenario": truth[schema.SCENARIO].values.astype(int),
        "ambient": truth["ambient_temperature"].values.astype(float),
        # A label, not a (charge, discharge) tuple: pandas compares tuples element-wise.
        "c_rate": [c_rate_label(float(a), float(b)) for a, b in zip(c, d)],
        "c_rate_key": [(float(a), float(b)) for a, b in zip(c, d)],
        "protocol": coord("protocol", NO_PROTOCOL).astype(int),
    })


class Selection(param.Parameterized):
    """The user's selection; widgets are made from these parameters."""

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

    def __init__(self, reader: StoreReader, **params):
        super().__init__(**params)
        self._reader = reader
        self._syncing = False
        ds = reader.truth
        self.scenarios = scenario_table(ds)
        # Bounds and options first, then values (a value outside old bounds would be refused).
        self.param.ambient.objects = {f"{t:g} °C": t for t in sorted(set(self.scenarios.ambient))}
        self.param.c_rate.objects = list(dict.fromkeys(  # NaN keys (not declared) are never equal
            c_rate_label(*c) for c in sorted(set(self.scenarios.c_rate_key))))
        self.param.protocol.objects = {protocol_label(p): p
                                       for p in sorted(set(self.scenarios.protocol))}
        self.param.snapshot.objects = {f"cycle {int(c)}": int(i) for i, c in zip(
            ds[schema.SNAPSHOT].values, ds["snapshot_cycle"].values)}
        self.param.cell.objects = {reader.cell_label(int(c)): int(c) for c in reader.cells}
        # Colourings a source can fill: a c_s error needs the truth of c_s.
        self.param.quantity.objects = [q for q, (var, how) in OVERVIEW.items()
                                       if how != "cycle rmse" or reader.has_truth("c_s_n")]
        variants = reader.sources.variants
        ordered = [v for v in VARIANTS if v in variants] + [v for v in variants if v not in VARIANTS]
        self.param.variant.objects = ordered or [None]
        ok = reader.status == schema.STATUS_OK
        first = self.scenarios.iloc[int(np.argmax(ok)) if ok.any() else 0]
        with param.parameterized.discard_events(self):
            self.ambient, self.c_rate, self.protocol = first.ambient, first.c_rate, first.protocol
            self.scenario = int(first.scenario)
            self.snapshot = int(ds[schema.SNAPSHOT].values[0])
            self.cell = int(reader.cells[0])
            self.variant = self.param.variant.objects[0]
        self.param.watch(self._pick_scenario, ["ambient", "c_rate", "protocol"])
        self._x_options()
        self._time_bounds(reset=True)

    @property
    def electrode_spec(self):
        return ELECTRODES[self.electrode]

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
        n = int(self._reader.valid_mask(self.scenario, self.snapshot).sum())
        hi = max(n - 1, 0)
        self.param.time_index.bounds = (0, hi)
        if reset or self.time_index > hi:
            self.time_index = min(self.time_index, hi) if not reset else hi // 2

    @param.depends("electrode", watch=True)
    def _x_options(self) -> None:
        xs = self._reader.coord(self.electrode_spec.x)
        opts = {"x-averaged": X_AVG}
        opts.update({f"x = {x * 1e6:.1f} µm": i for i, x in enumerate(xs)})
        self.param.x_index.objects = opts
        if self.x_index not in opts.values():
            self.x_index = X_AVG
