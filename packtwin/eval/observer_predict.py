"""Classical state estimators on the reduced core as prediction datasets (``packtwin evaluate``'s
``observers`` rows), in the oracle-parameter setting.

For every selected (scenario, cell, snapshot) cycle of a truth store, :class:`CoreEKF` runs on
:class:`ReducedCore` over the cycle's measured V/I/T (the store's period), with each cell's
**true** parameters from the store's parameter table (:func:`core_params.truth_table`): the
*oracle-parameter* setting, an upper bound on what the EKF reaches with identified parameters.
The SEI thickness starts at the parameter set's initial value at every snapshot (the table holds
no ageing state), so a late snapshot's film resistance and lithium loss are the EKF's to absorb.

Start: the cycle's first valid sample read into a SOC on the cell's lithium-inventory line by
the start prior (``prior``, evaluate's ``observer_prior``,
:mod:`packtwin.physics.loaded_inversion`): "loaded", the voltage inverted through the
core carrying the sample's current after 10 min at it (a cell with |I| <= REST_CURRENT_A is
read as at rest), and the filter started from that same loaded state; "loaded_window"
(default), the same except where that reading is ill-conditioned (the cold under load,
:mod:`packtwin.physics.start_window`): there the SOC whose loaded state fits the next 300 s of
samples best, a fixed-lag choice; "ocv", the voltage read as an open-circuit voltage. The stores start each cycle at rest; the
number of cycles whose first sample is nonetheless under load is recorded in
``attrs["started_under_load"]``. The prior's covariance spans 30 % SOC along that line
(:class:`EKFConfig`). With ``start_s`` (evaluate's ``observer_start_s``) the filter starts
that far into every cycle instead, from the same prior read at that sample, which is usually
under load (a BMS stream that begins mid-drive); the estimates before it are NaN and
``attrs["started_under_load"]`` counts the loaded starts.

Carry (``carry``, evaluate's ``observer_carry``; issue #9 item 7, a BMS stream does not restart):
a cycle whose ``snapshot_cycle`` is one more than a selected cycle's of the same scenario and
whose sample 0 repeats that cycle's last valid sample (the generator records both from the same
state, :func:`carry_links`) goes on from that cycle's final estimate (state, covariance, biases,
taken at its last VALID sample, not after padding) instead of a prior, from its sample 0 whatever
``start_s``; its sample 0 estimate is the previous cycle's last. Other cycles start from the
prior. ``attrs["carried_cycles"]`` / ``attrs["prior_starts"]`` count them.

Outputs, on the store's grid and dims like :func:`packtwin.eval.predict.predict_dataset`:
``c_s_n``/``c_s_p`` (posterior particles, linear in r through the shell centres and the core's
surface, then in x), ``soc`` (negative electrode-mean stoichiometry within the cell's own window),
``plating_margin`` and ``voltage``. The voltage is the one-step-ahead model voltage *before* each
sample's correction (a posterior voltage would repeat the measurement it was fitted to). The core
does not estimate SEI growth here: no ``sei_thickness_avg``. With oracle parameters there are no
``param_*`` variables either (an oracle's 0 % parameter error would mean nothing).

``ekf_identified`` and ``subspace_identified`` (:func:`observer_dataset`): the same filters
with each cell's parameters identified from its own measured V/I/T
(:mod:`packtwin.eval.observer_identify`, no truth table needed); the identified values are
written as ``param_*`` variables, so that evaluate reports their errors against the store's
table.

Divergence: where a cycle's state turns non-finite, or its one-step-ahead voltage stays more
than :data:`DIVERGED_V` off the measured one for :data:`DIVERGED_S` (every sample of it), that
cycle's filter is restarted from the start's prior read at that sample (a BMS's divergence
reset); restarts are counted in ``attrs["resets"]`` and the cycles listed in
``attrs["reset_cycles"]``. A non-finite estimate left inside valid samples is an error.
One-step-ahead voltages off by more than :data:`LARGE_INNOVATION_V` are only recorded
(``attrs["large_innovations"]``, ``attrs["large_innovation_cycles"]``): they used to restart
the filter too, a stop-gap for the core's voltage solve running to -3 kV where a particle
surface reached its bound (-10 C, end of a 1C discharge); the core now stays bounded there
(``tests/unit/test_physics_core.py``), and on the synthetic store the 2 restarts it needed are
gone.

Cycles of one selection are filtered together as one batch (padding after a short cycle is
stepped at zero current and discarded); with carry, in rounds: first every cycle that starts
from a prior, then those that go on from them, and so on.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np
import torch
import xarray as xr

from packtwin import quantities, schema
from packtwin.errors import PacktwinError
from packtwin.eval.predict import selection_of
from packtwin.physics.core import CoreConfig, ReducedCore, map_state
from packtwin.physics.core_params import (CoreParams, okane2022_design, truth_table,
                                          truth_values)
from packtwin.physics.divergence import (DIVERGED_S, DIVERGED_V,  # noqa: F401 (named here)
                                         diverged_samples, nonfinite, off_run)
from packtwin.physics.ekf import CoreEKF, EKFConfig, EKFState
from packtwin.physics.loaded_inversion import (PRIORS, REST_CURRENT_A, at_rest,
                                               offset_stoichiometry, start_stoichiometry)
from packtwin.physics.observer_stream import cell_lines, cell_soc_window
from packtwin.physics.subspace_observer import (SubspaceConfig, SubspaceEstimate,
                                                SubspaceObserver, loaded_prior, replace_cells)

# The observers' core: the DFN's plated lithium is part of the state they estimate. Without it
# the rest after a cold charge reads as SOC (README: plated lithium in the core); on held-out
# draws 15-17 the subspace filter's -10 degC error fell from 1.16 +- 0.43 to 0.65 +- 0.00 %
# of c_max (rested start). {"plating": false} gives the core before stop 29.
# 12 particles per electrode (stop 31; 8 before): the core's own error at 3C falls from 0.37 to
# 0.22 % of c_max (reports/bench_core.json), and with the line search below the subspace filter
# meets the c_s targets on every split of six draws (README, observer section). It needed the
# plating Newton's overpotential limit (electrode_pair.PLATING_ETA_STEP): before it, 12
# particles broke at -10 degC on two draws of three.
OBSERVER_CORE = CoreConfig(plating=True, n_x_n=12, n_x_p=12)


OBSERVERS = ("ekf", "ekf_identified", "subspace", "subspace_identified")
# REST_CURRENT_A (packtwin.physics.loaded_inversion): |I| at the first sample above which a cycle
# counts as started under load, and below which the loaded prior reads the sample as at rest
# A one-step-ahead voltage this far off is recorded: legitimate innovations on the demo pack at
# -10 C stayed below 0.75 V.
LARGE_INNOVATION_V = 1.0
DESCRIPTIONS = {
    "ekf": ("iterated EKF on the reduced core (packtwin/physics/ekf.py), oracle parameters (each "
            "cell's true parameters from the store's table), start: the start prior "
            "(observer_prior) with a 30 % SOC prior std, restarted where its state turns "
            "non-finite or its voltage stays > 0.5 V off for 30 s (attrs resets); voltage = "
            "one-step-ahead model voltage; no SEI estimate"),
    "ekf_identified": (
        "the same EKF with IDENTIFIED parameters: each cell's core parameters fitted to its own "
        "measured V/I/T (packtwin/physics/identify.py; training cells: their first training "
        "cycle, unseen cells: their first cycle of the split; its first "
        "observer_identify_window_s (default the whole cycle) or 20 samples, attrs "
        "identification), no truth table used"),
    "subspace": (
        "Kalman filter on the reduced core correcting only the SOC along each cell's "
        "lithium-inventory line (packtwin/physics/subspace_observer.py), oracle parameters, "
        "start: the start prior (observer_prior) with a 30 % SOC prior std and the core's state "
        "after 10 min at the first current; voltage = one-step-ahead model voltage; no SEI "
        "estimate"),
    "subspace_identified": (
        "the same subspace Kalman filter with IDENTIFIED parameters (as ekf_identified: each "
        "cell's core parameters fitted to its own measured V/I/T, no truth table used)"),
}


class ObserverError(PacktwinError, ValueError):
    """An observer cannot run on this store; the message names the store and the problem."""


def check_observers(names: Sequence[str]) -> None:
    """Refuse an unknown observer name (before anything is computed)."""
    unknown = [n for n in names if n not in OBSERVERS]
    if unknown:
        raise ObserverError(f"unknown observers {unknown}; known: {list(OBSERVERS)}")


def oracle_params(truth: xr.Dataset, cells: Sequence[int], source: str = "truth store"
                  ) -> CoreParams:
    """The core's parameters of the given cells (positional) from the store's parameter table.

    Raises:
        ObserverError: the store holds no parameter table (e.g. a measured log) or a bad value.
    """
    try:
        table = truth_table(truth)
        return CoreParams.from_truth({k: np.asarray(v, float)[list(cells)]
                                      for k, v in table.items()}, n_cells=len(cells))
    except ValueError as exc:
        raise ObserverError(f"observer in the oracle-parameter setting needs each cell's true "
                            f"parameters, but {source} cannot give them: {exc}") from None


def _period(truth: xr.Dataset, source: str) -> float:
    period = float(truth.attrs.get("period_s", np.nan))
    if not (np.isfinite(period) and period > 0):
        raise ObserverError(f"{source}: attribute 'period_s' (sample period [s]) is missing or not "
                            f"> 0: {truth.attrs.get('period_s')!r}")
    return period


def _check_finite(name: str, arr: np.ndarray, valid: np.ndarray, t: xr.Dataset, source: str
                  ) -> None:
    bad = valid & ~np.isfinite(arr)
    if bad.any():
        s, c, n, k = (int(i[0]) for i in np.nonzero(bad))
        raise ObserverError(
            f"{source}: {int(bad.sum())} NaN/inf {name!r} values inside valid samples (first: "
            f"scenario {int(t[schema.SCENARIO][s])}, cell {int(t[schema.CELL][c])}, snapshot "
            f"{int(t[schema.SNAPSHOT][n])}, time index {k}); the EKF needs every valid sample's "
            f"V, I and T")


def ekf_oracle_dataset(truth: xr.Dataset, scenarios: Sequence[int] | None = None,
                       cells: Sequence[int] | None = None,
                       snapshots: Sequence[int] | None = None,
                       ekf_config: EKFConfig = EKFConfig(),
                       core_config: CoreConfig = OBSERVER_CORE,
                       source: str = "truth store", batch: int = 64,
                       params: CoreParams | None = None, variant: str = "ekf",
                       extra_attrs: dict | None = None, start_s: float = 0.0,
                       prior: str = "loaded_window", carry: bool = False,
                       prior_offset: float = 0.0,
                       subspace_config: SubspaceConfig = SubspaceConfig()) -> xr.Dataset:
    """EKF estimates (oracle parameters) for the selected cycles, as a prediction dataset.

    Args:
        truth: truth store (``packtwin.data.store.open_store``) with a parameter table.
        scenarios, cells, snapshots: positional indices (None: every usable scenario, all cells,
            all snapshots).
        source: the store's name for messages.
        batch: cycles filtered together (bounds memory: the EKF's Jacobian core holds
            ``batch x (states + 1)`` cells).
        params: the selected cells' parameters (in ``cells``' order) instead of the oracle's
            (``variant``'s description and ``extra_attrs`` then go into the dataset's attributes).
        start_s: time into every cycle at which the filter starts [s] (a log that begins
            mid-drive): from that sample read by ``prior``, the prior of an unknown start;
            the estimates before it are NaN (:func:`start_sample` checks it).
        prior: how the start sample (and a restart's) is read, one of
            :data:`packtwin.physics.loaded_inversion.PRIORS` (:func:`check_prior`).
        carry: a cycle that continues the previous selected one of its scenario and cell
            (:func:`carry_links`) starts from that cycle's final estimate instead of a prior, at
            its sample 0 whatever ``start_s`` (evaluate's ``observer_carry``).
        prior_offset: the start prior's SOC moved by this fraction of each cell's window
            (:func:`packtwin.physics.loaded_inversion.offset_stoichiometry`; evaluate's
            ``observer_prior_offset``): a known initial error, e.g. 0.3; restarts and carried
            cycles are not moved.
        subspace_config: the "subspace*" variants' filter settings.

    Raises:
        ObserverError: no parameter table, no period, NaN V/I/T inside valid samples, valid
            samples that do not form one run from the cycle's start, or an unknown prior.
    """
    check_prior(prior)
    if not abs(prior_offset) <= 0.5:
        raise ObserverError(f"{PRIOR_OFFSET_KEY} must be within [-0.5, 0.5] of the SOC window, "
                            f"found {prior_offset!r}")
    sel = selection_of(truth, scenarios, cells, snapshots)
    sc, ce, sn = sel.scenarios, sel.cells, sel.snapshots
    if params is None:
        params = oracle_params(truth, ce, source)
    elif params.n_cells != len(ce):
        raise ObserverError(f"{source}: {params.n_cells} cells' parameters given for "
                            f"{len(ce)} selected cells")
    period = _period(truth, source)
    t = truth.isel({schema.SCENARIO: sc, schema.CELL: ce, schema.SNAPSHOT: sn})
    valid3 = np.asarray(t["valid"].transpose(schema.SCENARIO, schema.SNAPSHOT, schema.TIME)
                        .values > 0)
    shape = (len(sc), len(ce), len(sn), t.sizes[schema.TIME])
    valid = np.broadcast_to(valid3[:, None], shape)
    meas = _measurements(t, valid, source)
    lengths = valid.sum(-1)
    runs = valid.cumsum(-1) == np.arange(1, shape[-1] + 1)  # a prefix of valid samples
    if not (runs | ~valid).all():
        raise ObserverError(f"{source}: valid samples of a cycle do not form one run from its "
                            f"first sample; the EKF filters one contiguous log per cycle")
    # --- carry (evaluate's observer_carry): cycles filtered in rounds of their depth in a run ---
    prev = carry_links(t, meas, valid3) if carry else np.full(valid3.shape[:2], -1)
    # the start must lie inside every cycle that starts from a prior (a carried one goes on)
    start = start_sample(period, start_s, lengths[(lengths > 0) & (prev[:, None] < 0)], source)
    idx, depth = _cycle_order(prev, lengths)
    finals: dict[tuple, tuple] = {}  # (s, c, k) -> its final (estimate row, voltage)
    names = ("c_s_n", "c_s_p", "soc", "plating_margin", "voltage")
    grid = {d: torch.tensor(np.asarray(t[d].values, float)) for d in
            (schema.X_N, schema.R_N, schema.X_P, schema.R_P)}
    out = {n: np.full(shape + ((t.sizes[schema.X_N], t.sizes[schema.R_N]) if n == "c_s_n" else
                               (t.sizes[schema.X_P], t.sizes[schema.R_P]) if n == "c_s_p" else ()),
                      np.nan, dtype=np.float32) for n in names}
    under_load, resets, reset_cycles, large_cycles = 0, 0, [], []
    reprior_cycles = []  # the subspace filter's re-priors (SubspaceConfig.reprior_soc)
    chunks = [r[a:a + batch] for d in range(int(depth.max(initial=-1)) + 1)
              for r in [idx[depth == d]] for a in range(0, len(r), batch)]
    for part in chunks:
        pred = prev[part[:, 0], part[:, 2]]
        carried = [finals.pop((s, c, p)) if p >= 0 else None
                   for (s, c, _), p in zip(part, pred)]
        # The filter sees the log from its start on, as if it began there; a carried cycle
        # goes on from its sample 0 (the previous cycle's last sample, the same instant).
        first = np.where(pred >= 0, 0, start)
        seq = {n: torch.as_tensor(np.stack([np.roll(meas[n][s, c, k], -f)
                                            for (s, c, k), f in zip(part, first)]))
               for n in meas}
        L = lengths[part[:, 0], part[:, 1], part[:, 2]] - first
        part_params = CoreParams(**{k: getattr(params, k)[torch.as_tensor(part[:, 1])]
                                    for k in params.names()})
        if variant.startswith("subspace"):
            est, n_reset, n_large, final = _run_subspace(part_params, seq, L, period, grid,
                                                         core_config, prior, carried,
                                                         prior_offset, subspace_config)
        else:
            est, n_reset, n_large, final = _run_ekf(part_params, seq, L, period, grid,
                                                    ekf_config, core_config, prior, carried,
                                                    prior_offset)
        under_load += int((seq["current"][:, 0].abs() > REST_CURRENT_A)[pred < 0].sum())
        for i, (s, c, k) in enumerate(part):
            if (prev[s] == k).any():  # a later cycle goes on from this one
                finals[(s, c, k)] = final[i]
            f = first[i]
            # the cycle's labels: [scenario, cell, snapshot]
            cycle = [int(t[schema.SCENARIO][s]), int(t[schema.CELL][c]),
                     int(t[schema.SNAPSHOT][k])]
            for n in names:
                out[n][s, c, k, f:f + L[i]] = est[n][i, :L[i]]
                if not np.isfinite(out[n][s, c, k, f:f + L[i]]).all():
                    raise ObserverError(
                        f"{source}: the {variant} observer's {n!r} is not finite inside valid "
                        f"samples of scenario {cycle[0]}, cell {cycle[1]}, snapshot {cycle[2]} "
                        f"despite restarts")
            if n_large[i]:
                large_cycles.append(cycle + [int(n_large[i])])
            if "repriors" in est and est["repriors"][i]:
                reprior_cycles.append(cycle + [int(est["repriors"][i])])
            if n_reset[i]:
                resets += int(n_reset[i])
                reset_cycles.append(cycle + [int(n_reset[i])])
    n_carried = int((depth > 0).sum())
    data = {}
    for n in names:
        dims = schema.VARIABLES[n].dims
        attrs = schema.var_attrs(n)
        if n in quantities.FIELD_TARGETS:
            e = quantities.electrode_of(n)
            attrs = dict(attrs, c_max=float(e.c_max_of(truth)
                                            or e.constants(okane2022_design().constants).c_max))
        data[n] = xr.Variable(dims, out[n], attrs)
    ds = xr.Dataset(data, coords={k: v for k, v in t.coords.items()})
    ds.attrs.update({
        "schema_version": schema.SCHEMA_VERSION, "variant": variant,
        "parameters": "identified" if variant.endswith("_identified") else "oracle",
        "description": DESCRIPTIONS[variant], "period_s": period, "truth_store": source,
        "cycles": int(len(idx)), "started_under_load": under_load, "resets": resets,
        "start_s": start * period, "prior": prior,
        # observer_carry: cycles that went on from the previous cycle's final estimate (from
        # their sample 0) and cycles that started from a prior (at start_s)
        "carry": int(carry), "carried_cycles": n_carried,
        "prior_starts": int(len(idx)) - n_carried,
        "reset_cycles": json.dumps(reset_cycles),  # [scenario, cell, snapshot, restarts]
        "large_innovations": int(sum(r[-1] for r in large_cycles)),
        "large_innovation_cycles": json.dumps(large_cycles),  # [..., samples over 1 V]
    })
    # the filter's settings, defaults included: a prediction says what made it
    ds.attrs["filter_config"] = json.dumps(dataclasses.asdict(
        subspace_config if variant.startswith("subspace") else ekf_config))
    if variant.startswith("subspace"):
        ds.attrs.update({"repriors": int(sum(r[-1] for r in reprior_cycles)),
                         "reprior_cycles": json.dumps(reprior_cycles)})  # [..., re-priors]
    ds.attrs.update(extra_attrs or {})
    problems = schema.validate(ds, kind="prediction")
    if problems:
        raise schema.SchemaError(problems, source="EKF prediction dataset")
    return ds


START_KEY = "observer_start_s"  # the evaluate key: messages name it
PRIOR_KEY = "observer_prior"  # the evaluate key of the start prior
IDENTIFY_WINDOW_KEY = "observer_identify_window_s"  # the evaluate key of the fit's window
PRIOR_OFFSET_KEY = "observer_prior_offset"  # the evaluate key of a deliberate start SOC error


def check_prior(prior: str) -> None:
    """Refuse an unknown start prior (:data:`PRIORS`), naming :data:`PRIOR_KEY`."""
    if prior not in PRIORS:
        raise ObserverError(f"{PRIOR_KEY} must be one of {list(PRIORS)} (\"loaded\": the start "
                            f"voltage read through the core under the measured current; "
                            f"\"loaded_window\": the same, with the SOC chosen by the next "
                            f"samples where that reading is ill-conditioned; \"ocv\": "
                            f"read as an open-circuit voltage), found {prior!r}")


def start_sample(period: float, start_s: float, lengths: np.ndarray, source: str = "truth store"
                 ) -> int:
    """The sample index at ``start_s`` seconds into a cycle: a multiple of the store's period
    that lies inside every cycle, whose valid lengths [samples] are ``lengths``.

    Raises:
        ObserverError: naming :data:`START_KEY`, what it must be and what was found.
    """
    start_s = float(start_s)
    lengths = np.asarray(lengths)
    k = round(start_s / period) if np.isfinite(start_s) else -1
    if not (np.isfinite(start_s) and start_s >= 0):
        raise ObserverError(f"{source}: {START_KEY} must be a time >= 0 s into each cycle, "
                            f"found {start_s!r}")
    if abs(k * period - start_s) > 1e-6 * period:
        # The filter steps on the store's samples: a start between two would silently move.
        raise ObserverError(f"{source}: {START_KEY} must be a multiple of the store's sample "
                            f"period {period:g} s (e.g. {k * period:g} s), found {start_s:g} s")
    shortest = int(lengths.min()) if lengths.size else 0
    if k >= shortest:
        raise ObserverError(f"{source}: {START_KEY} = {start_s:g} s is outside the log: it must be "
                            f"below {shortest * period:g} s, the shortest selected cycle "
                            f"({shortest} samples of {period:g} s)")
    return int(k)



# --- observer_carry: consecutive snapshot cycles filtered as one stream (issue #9 item 7) ---
CARRY_KEY = "observer_carry"  # the evaluate key: messages name it


def _measurements(t: xr.Dataset, valid: np.ndarray, source: str) -> dict[str, np.ndarray]:
    """V, I, T [scenario, cell, snapshot, time] of the selection ``t``, finite where valid."""
    order = (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME)
    meas = {}
    for name in ("voltage", "current", "temperature"):
        meas[name] = np.asarray(t[name].transpose(*order).values, float)
        _check_finite(name, meas[name], valid, t, source)
    # the current at each sample's instant, where the store has it (schema.ADDED_INSTANT): the
    # measurement model's; the period's mean current stays the prediction's
    if "current_end" in t.variables:
        meas["current_end"] = np.asarray(t["current_end"].transpose(*order).values, float)
        _check_finite("current_end", meas["current_end"], valid, t, source)
    else:
        meas["current_end"] = meas["current"]
    return meas


def carry_links(t: xr.Dataset, meas: dict[str, np.ndarray], valid3: np.ndarray) -> np.ndarray:
    """[scenario, snapshot] (positions in the selection ``t``): the snapshot each cycle goes on
    from, or -1 (it starts from a prior).

    A cycle goes on from the selected one whose ``snapshot_cycle`` is one less when its sample 0
    repeats that cycle's last valid sample in V, I and T for every selected cell: the generator
    (packtwin/sim/scenario.py) records a cycle's sample 0 from the state the previous cycle's
    final rest ended in, the same instant. Snapshots further apart (every 50 cycles) or a store
    without ``snapshot_cycle`` do not link."""
    S, N = valid3.shape[:2]
    prev = np.full((S, N), -1)
    if "snapshot_cycle" not in t.coords:
        return prev
    cycle = np.asarray(t["snapshot_cycle"].values, int)
    lengths = valid3.sum(-1)
    for n in range(N):
        for m in np.flatnonzero(cycle == cycle[n] - 1):
            for s in range(S):
                last = lengths[s, m] - 1
                if last < 0 or lengths[s, n] == 0:
                    continue
                # equal up to a float32 round trip: one instant recorded twice
                if all(np.allclose(meas[x][s, :, n, 0], meas[x][s, :, m, last], rtol=1e-6,
                                   atol=1e-9) for x in ("voltage", "current", "temperature")):
                    prev[s, n] = m
    return prev


def carried_selection(truth: xr.Dataset, scenarios: Sequence[int], cells: Sequence[int],
                      snapshots: Sequence[int], source: str = "truth store") -> np.ndarray:
    """:func:`carry_links` of a selection (positional indices) of ``truth``: which cycles an
    observer with ``carry`` goes on into (evaluate scores those from their sample 0)."""
    t = truth.isel({schema.SCENARIO: list(scenarios), schema.CELL: list(cells),
                    schema.SNAPSHOT: list(snapshots)})
    valid3 = np.asarray(t["valid"].transpose(schema.SCENARIO, schema.SNAPSHOT, schema.TIME)
                        .values > 0)
    valid = np.broadcast_to(valid3[:, None], (len(scenarios), len(cells)) + valid3.shape[1:])
    return carry_links(t, _measurements(t, valid, source), valid3)


def _cycle_order(prev: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cycles with samples, (scenario, cell, snapshot) positions [cycles, 3], and each one's
    depth in its run of linked cycles [cycles] (0: starts from a prior): a cycle is filtered
    after the one it goes on from."""
    def depth_of(s: int, k: int) -> int:
        return 0 if prev[s, k] < 0 else 1 + depth_of(s, int(prev[s, k]))

    idx = np.argwhere(lengths > 0)
    return idx, np.array([depth_of(s, k) for s, _, k in idx], dtype=int)


def _tree(fn, *objs):
    """``fn`` over the tensors of (nested) named tuples of tensors with the batch dim first."""
    if objs[0] is None:  # an absent field (plated lithium without plating)
        return None
    if isinstance(objs[0], torch.Tensor):
        return fn(*objs)
    return type(objs[0])(*(_tree(fn, *xs) for xs in zip(*objs)))


def _take(est, i: int):
    return _tree(lambda a: a[i:i + 1], est)


def _pick(mask: torch.Tensor, a, b):
    """Rows ``mask`` [B] from ``b``, the others from ``a``."""
    return _tree(lambda x, y: torch.where(mask.view(-1, *[1] * (x.dim() - 1)), y, x), a, b)


def _after(V, I, T, lengths: np.ndarray, k: int, period: float, prior_name: str,
           I_end=None) -> dict:
    """``start_stoichiometry``'s ``after`` / ``period`` for a start at sample k: the
    :data:`packtwin.physics.start_window.WINDOW_S` after it ("loaded_window" only), with each
    sample's instant current ``I_end`` where given (its voltage is read there)."""
    if prior_name != "loaded_window":
        return {}
    from packtwin.physics.start_window import WINDOW_S

    w = slice(k + 1, k + 1 + int(round(WINDOW_S / period)))
    idx = torch.arange(V.shape[1])[w]
    valid = idx[None, :] < torch.as_tensor(np.asarray(lengths))[:, None]
    after = (V[:, w], I[:, w], T[:, w], valid) + (() if I_end is None else (I_end[:, w],))
    return {"after": after, "period": period}


def _run_ekf(params: CoreParams, seq: dict, lengths: np.ndarray, period: float, grid: dict,
             ekf_config: EKFConfig, core_config: CoreConfig, prior_name: str = "loaded_window",
             carried: Sequence | None = None, prior_offset: float = 0.0
             ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list]:
    """Filter B cycles [B, K] together; per-sample estimates [B, K, ...] (past a cycle's length
    the input is held at zero current, last V and T, and the output is junk to discard),
    each cycle's restarts and innovations over LARGE_INNOVATION_V within its valid samples
    [B] each, and each cycle's final estimate (``carried``: see :func:`_filter_cycles`)."""
    core = ReducedCore(params, core_config)
    c = core.design.constants
    V, I, T, I_end = _padded_inputs(seq, lengths)
    K = V.shape[1]
    lo, hi = cell_soc_window(core)
    line = cell_lines(core)
    ekf = CoreEKF(core, ekf_config)

    def prior(k: int) -> EKFState:  # sample k's voltage read by the prior, the load's profile
        sto = start_stoichiometry(core, V[:, k], I[:, k], T[:, k], line, prior_name, lo, hi,
                                  **_after(V, I, T, lengths, k, period, prior_name, I_end))
        if k == 0 and prior_offset:  # the start only: a restart reads its sample as it is
            sto = offset_stoichiometry(sto, prior_offset, lo, hi)
        rest = core.initial_state(sto * c.neg.c_max, line.sto_p(sto) * c.pos.c_max)
        if prior_name == "ocv":
            return ekf.init(rest, hi - lo, I[:, k], T[:, k])
        # loaded cells: the state the loaded inversion read the voltage with (its profiles
        # already hold the load, so no steady profile on top); cells at rest: as "ocv"
        loaded = loaded_prior(core, sto, I[:, k], T[:, k], SubspaceConfig().history_s, lo, hi)
        still = at_rest(I[:, k])
        pick = lambda r, a: torch.where(still.view(-1, *[1] * (r.dim() - 1)), r, a)  # noqa: E731
        state = map_state(pick, rest, loaded)
        return ekf.init(state, hi - lo, torch.where(still, I[:, k], torch.zeros_like(I[:, k])),
                        T[:, k])

    def advance(est: EKFState, k: int):
        est, innov = ekf.step(est, I[:, k], T[:, k], V[:, k], period, I_end[:, k])
        return est, V[:, k] - innov

    def restart(est: EKFState, fresh: EKFState, bad):
        return EKFState(torch.where(bad[:, None], fresh.x, est.x),
                        torch.where(bad[:, None, None], fresh.P, est.P), est.L_sei,
                        est.since_charge,  # the measured history goes on
                        None if est.c_pl is None
                        else torch.where(bad[:, None], fresh.c_pl, est.c_pl))

    return _filter_cycles(core, V, I, T, lengths, grid, prior, advance, ekf.state, restart,
                          carried, diverged_samples(period))


def _filter_cycles(core: ReducedCore, V, I, T, lengths: np.ndarray, grid: dict, prior, advance,
                   state_of, restart, carried: Sequence | None = None,
                   n_diverged: int | None = None
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list]:
    """The sample loop shared by the filters: ``prior(k)`` (the start, and a restart at sample
    k), ``advance(est, k)`` -> (estimate, one-step-ahead model voltage), ``state_of(est)`` ->
    :class:`CoreState`, ``restart(est, fresh, bad)`` (cells ``bad`` [B] taken from ``fresh``).
    A cell restarts where its particles turn non-finite, or (``n_diverged``) where its
    one-step-ahead voltage has been more than DIVERGED_V off for ``n_diverged`` samples in a row
    (None: never).

    Carry: ``carried`` [B] holds per cycle None (start from ``prior(0)``) or the final
    (estimate, voltage) of the cycle it goes on from, which is then its estimate at sample 0
    (the same instant). Returned last: every cycle's (estimate, one-step-ahead voltage) at its
    last VALID sample (``lengths`` - 1, not after padding), for the cycle that goes on from it."""
    carried = list(carried) if carried is not None else [None] * len(lengths)
    is_carried = torch.tensor([c is not None for c in carried])
    est = prior(0)  # even when every row is carried: CoreEKF.init also sets its process noise
    if is_carried.any():  # carried rows go on from the previous cycle's final estimate
        est = _tree(lambda *a: torch.cat(a), *[c[0] if c is not None else _take(est, i)
                                              for i, c in enumerate(carried)])
    restarts = torch.zeros(len(lengths), dtype=torch.long)
    large = torch.zeros(len(lengths), dtype=torch.long)
    run = torch.zeros(len(lengths), dtype=torch.long)  # samples in a row over DIVERGED_V
    in_cycle = torch.as_tensor(np.asarray(lengths))
    rows = _Rows(core, grid)
    final, final_v = est, torch.full((len(lengths),), float("nan"), dtype=core.dtype)
    with torch.no_grad():
        for k in range(V.shape[1]):
            if k == 0:  # the prior itself, measured at the first sample's load
                st = state_of(est)
                o = core.measure(st, I[:, 0], T[:, 0])
                v_model = o.voltage
                if is_carried.any():  # the previous cycle's last one-step-ahead voltage
                    v_model = torch.where(is_carried, torch.stack(
                        [c[1] if c is not None else v_model[i] for i, c in enumerate(carried)]),
                        v_model)
            else:
                est, v_model = advance(est, k)
                large += (~((V[:, k] - v_model).abs() <= LARGE_INNOVATION_V)
                          & (k < in_cycle)).long()
                st = state_of(est)
                bad = nonfinite(st)
                if n_diverged is not None:
                    run = off_run(run, V[:, k], v_model, k < in_cycle)
                    bad = bad | (run >= n_diverged)
                if bad.any():
                    est = restart(est, prior(k), bad)
                    restarts += (bad & (k < in_cycle)).long()
                    run = torch.where(bad, torch.zeros_like(run), run)
                    st = state_of(est)
                o = core.measure(st, I[:, k], T[:, k])
                v_model = torch.where(bad, o.voltage, v_model)
            rows.add(st, o, v_model)
            at_end = in_cycle - 1 == k
            if at_end.any():
                final = _pick(at_end, final, est)
                final_v = torch.where(at_end, v_model, final_v)
    ends = [(_take(final, i), final_v[i]) for i in range(len(lengths))]
    return rows.stacked(), restarts.numpy(), large.numpy(), ends


class _Rows:
    """Per-sample outputs of a filter on the store's grid, stacked on the time dim."""

    def __init__(self, core: ReducedCore, grid: dict):
        self.core, self.grid = core, grid
        self.lo, self.hi = cell_soc_window(core)
        self.x_n, self.x_p = core.grid_x.x_n(core.dtype), core.grid_x.x_p(core.dtype)
        self.rows: dict[str, list] = {n: [] for n in ("c_s_n", "c_s_p", "soc", "plating_margin",
                                                      "voltage")}

    def add(self, st, o, v_model) -> None:
        core, g, r = self.core, self.grid, self.rows
        r["c_s_n"].append(core.particle_field(st.c_n, o.c_n_surf, self.x_n, g[schema.X_N],
                                              g[schema.R_N]))
        r["c_s_p"].append(core.particle_field(st.c_p, o.c_p_surf, self.x_p, g[schema.X_P],
                                              g[schema.R_P]))
        r["soc"].append((o.c_n_avg / core.design.constants.neg.c_max - self.lo)
                        / (self.hi - self.lo))
        r["plating_margin"].append(o.plating_margin)
        r["voltage"].append(v_model)

    def stacked(self) -> dict[str, np.ndarray]:
        return {n: torch.stack(v, 1).numpy() for n, v in self.rows.items()}


def _padded_inputs(seq: dict, lengths: np.ndarray) -> tuple[torch.Tensor, ...]:
    """V, I, T, I_end [B, K]; past a cycle's length: rest at its last valid voltage and
    temperature. ``I_end`` is the current at each sample's instant (``seq["current_end"]``; a
    store made before it was recorded: the period's mean ``I``)."""
    K = int(lengths.max())
    names = ("voltage", "current", "temperature",
             "current_end" if "current_end" in seq else "current")
    V, I, T, I_end = (seq[n][:, :K].clone() for n in names)
    for i, n in enumerate(lengths):
        V[i, n:], T[i, n:], I[i, n:], I_end[i, n:] = V[i, n - 1], T[i, n - 1], 0.0, 0.0
    return V, I, T, I_end


def _run_subspace(params: CoreParams, seq: dict, lengths: np.ndarray, period: float,
                  grid: dict, core_config: CoreConfig, prior_name: str = "loaded_window",
                  carried: Sequence | None = None, prior_offset: float = 0.0,
                  config: SubspaceConfig = SubspaceConfig()
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list]:
    """:func:`_run_ekf` with :class:`SubspaceObserver` (the same start, padding, restarts and
    outputs, the same carry; ``config``: the filter's settings)."""
    core = ReducedCore(params, core_config)
    V, I, T, I_end = _padded_inputs(seq, lengths)
    lo, hi = cell_soc_window(core)
    line = cell_lines(core)
    obs = SubspaceObserver(core, hi - lo, config)

    def prior(k: int) -> SubspaceEstimate:  # sample k's voltage read by the prior, loaded
        sto = start_stoichiometry(core, V[:, k], I[:, k], T[:, k], line, prior_name, lo, hi,
                                  obs.config.history_s,
                                  **_after(V, I, T, lengths, k, period, prior_name, I_end))
        if k == 0 and prior_offset:  # the start only: a restart reads its sample as it is
            sto = offset_stoichiometry(sto, prior_offset, lo, hi)
        return obs.init_loaded(sto, I[:, k], T[:, k], lo, hi)

    def advance(est: SubspaceEstimate, k: int):
        est, v_model, _ = obs.step(est, I[:, k], T[:, k], V[:, k], period, I_end[:, k])
        return est, v_model

    rows, n_reset, n_large, ends = _filter_cycles(core, V, I, T, lengths, grid, prior, advance,
                                                  lambda e: e.state, replace_cells, carried,
                                                  diverged_samples(period))
    rows["repriors"] = obs.reprior_count.numpy()  # per cycle of the batch (SubspaceConfig)
    return rows, n_reset, n_large, ends


def _overrides(cls, overrides: dict | None, what: str, convert=lambda k, v: v, base=None):
    """``cls`` (a config dataclass; ``base``, an instance of it, if given) with ``overrides``
    (values through ``convert(key, value)``); unknown keys refused, naming them and the known
    fields."""
    try:
        values = {k: convert(k, v) for k, v in (overrides or {}).items()}
        return cls(**values) if base is None else dataclasses.replace(base, **values)
    except TypeError:
        known = list(cls.__dataclass_fields__)
        raise ObserverError(f"observer {what} overrides {sorted(overrides or {})} name unknown "
                            f"{cls.__name__} fields; known: {known}") from None


def core_config(overrides: dict | None) -> CoreConfig:
    """:data:`OBSERVER_CORE` with ``overrides`` (e.g. ``{"n_r": 6}``); unknown keys refused."""
    return _overrides(CoreConfig, overrides, "core", base=OBSERVER_CORE)


def ekf_config(overrides: dict | None) -> EKFConfig:
    """:class:`EKFConfig` with ``overrides`` (e.g. ``{"gate_sigma": 1e9}``); unknown keys
    refused."""
    return _overrides(EKFConfig, overrides, "EKF")


def subspace_config(overrides: dict | None) -> SubspaceConfig:
    """:class:`SubspaceConfig` (its own defaults, the stream's too) with ``overrides`` (e.g.
    ``{"reprior_soc": 0.1}``); unknown keys refused."""
    return _overrides(SubspaceConfig, overrides, "subspace",
                      lambda k, v: tuple(v) if isinstance(v, list) else v)


def _positions(idx: Sequence[int] | None) -> list[int]:
    return [] if idx is None else [int(i) for i in idx]


def identify_config(overrides: dict | None):
    """:class:`packtwin.physics.identify.IdentifyConfig` with ``overrides``; unknown keys
    refused."""
    from packtwin.physics.identify import IdentifyConfig

    return _overrides(IdentifyConfig, overrides, "identify",
                      lambda k, v: tuple(v) if k == "names" else v)


def check_store(truth: xr.Dataset, source: str = "truth store",
                names: Sequence[str] = ("ekf",)) -> None:
    """What the observers ``names`` need of a store, checked before anything is computed: a
    period, and for the oracle-parameter "ekf" the parameter table of every cell."""
    _period(truth, source)
    if "ekf" in names or "subspace" in names:
        oracle_params(truth, range(schema.n_cells(truth)), source)


def observer_dataset(name: str, truth: xr.Dataset, scenarios: Sequence[int] | None = None,
                     cells: Sequence[int] | None = None, snapshots: Sequence[int] | None = None,
                     source: str = "truth store", core: dict | None = None,
                     train_scenarios: Sequence[int] | None = None,
                     train_cells: Sequence[int] | None = None,
                     identify: dict | None = None, start_s: float = 0.0,
                     prior: str = "loaded_window", carry: bool = False,
                     identify_window_s: float | None = None,
                     prior_offset: float = 0.0, subspace: dict | None = None,
                     ekf: dict | None = None) -> xr.Dataset:
    """The prediction dataset of one of :data:`OBSERVERS` for the selection (``core``:
    :class:`CoreConfig` overrides; ``train_scenarios`` / ``train_cells``: the training
    selection, positional, whose cycles the "*_identified" observers identify their cells on;
    ``identify``: :class:`packtwin.physics.identify.IdentifyConfig` overrides; ``start_s``:
    the filters start that far into every cycle; ``prior``: how the start sample is read,
    :data:`packtwin.physics.loaded_inversion.PRIORS`; ``carry``: a cycle that continues the
    previous one goes on from its final estimate; ``identify_window_s``: the identification
    window, None: :data:`packtwin.eval.observer_identify.WINDOW_S`; ``prior_offset``: a
    deliberate start SOC error, :func:`offset_stoichiometry`; ``subspace``:
    :class:`SubspaceConfig` overrides of the "subspace*" filters; ``ekf``: :class:`EKFConfig`
    overrides of the "ekf*" filters; see :func:`ekf_oracle_dataset`)."""
    check_observers([name])
    check_prior(prior)
    cfg = core_config(core)
    sub = subspace_config(subspace)
    ekf_cfg = ekf_config(ekf)
    if name in ("ekf", "subspace"):
        return ekf_oracle_dataset(truth, scenarios, cells, snapshots, core_config=cfg,
                                  source=source, variant=name, start_s=start_s, prior=prior,
                                  carry=carry, prior_offset=prior_offset,
                                  subspace_config=sub, ekf_config=ekf_cfg)
    from packtwin.eval import observer_identify
    from packtwin.physics.identify import IdentifyError

    sel = selection_of(truth, scenarios, cells, snapshots)
    ident = identify_config(identify)
    try:
        window = (observer_identify.WINDOW_S if identify_window_s is None
                  else float(identify_window_s))
        params, info = observer_identify.identified_params(
            truth, sel.cells, _positions(train_scenarios), _positions(train_cells),
            sel.scenarios, sel.snapshots[0], _period(truth, source), window_s=window,
            config=ident, core_config=cfg, source=source)
    except IdentifyError as exc:
        raise ObserverError(str(exc)) from None
    ds = ekf_oracle_dataset(truth, sel.scenarios, sel.cells, sel.snapshots, core_config=cfg,
                            source=source, params=params, variant=name,
                            extra_attrs={"identification": json.dumps(info)}, start_s=start_s,
                            prior=prior, carry=carry, prior_offset=prior_offset,
                            subspace_config=sub, ekf_config=ekf_cfg)
    # the identified values in the truth table's form: evaluate scores them (param_*_relerr)
    for key, v in truth_values(params, ident.names).items():
        ds[schema.param_var(key)] = xr.Variable((schema.CELL,), v,
                                                schema.var_attrs(schema.param_var(key)))
    return ds
