"""One scenario of one pack: the cycling protocol driven through the pack stepper.

The stepper is :class:`packtwin.sim.pack.PackStepper` (``solver.coupling: stepped``, each cell
solved on its own between coupling steps) or :class:`packtwin.sim.pack_dae.DAEStepper`
(``dae``: the pack as one PyBaMM DAE); both give the same interface and storage conventions.

A task is a plain dict (picklable for process pools and Dask) and so is its result: arrays laid
out like the store without the scenario dimension. Failures are caught and returned with their
message; cycles finished before a failure are kept (status PARTIAL).

Time convention on the stored grid: sample k is the state at ``k * period_s`` after the cycle
start, and ``current[k]`` is the mean current over the period that ends at sample k (sample 0
repeats the previous period's): constant in a one-period coupling step, a linear ramp inside a
longer one (``solver.max_step_periods``, see :mod:`packtwin.sim.pack`). A one-period rest
precedes cycle 1 so that its sample 0 is a solved state like every later cycle's. Coupling steps
end at every change of the requested current (phase changes, pulse edges).

Cycle: discharge (CC, or the pulse pattern scaled by the C-rate) until the first cell reaches
v_min, rest, CC charge until the first cell reaches v_max, CV hold of that cell until the pack
current falls below cv_cutoff_c, rest. The discharge and the CC charge end at the crossing itself,
not on the period grid: the period in which it falls runs at the request up to it and rests (after
a discharge) or holds v_max (after a CC charge) for the rest of the period, so ``capacity`` is the
charge up to the cut-off (:meth:`PackStepper.cut_off`). Discharging first because the parameter
set starts fully charged.

Checkpoints (``task["checkpoint_every"]`` cycles, :mod:`packtwin.sim.checkpoint`): after such a
cycle (and after the last) the finished rows go into the store and the state to go on into the
scenario's checkpoint file; a task whose store holds one resumes after its cycle (rows read back,
cells and stepper restored) and takes exactly the steps an uninterrupted run takes. A failure is
returned with the cycle, the phase and, where a cell's solve failed, the cell
(``result["failure"]``).
"""

from __future__ import annotations

import time as _time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from packtwin import schema
from packtwin.sim import checkpoint
from packtwin.sim import config as cfgmod
from packtwin.sim.cell import CURRENT, RAMP_START, SLOPE, get_model
from packtwin.sim.pack import PackStepper, StepResult

FIELD_VARS = [n for n, v in schema.VARIABLES.items() if v.dims[:4] == schema.T4]
PACK_VARS = ["pack_voltage", "pack_current"]
PLATING_NOISE = 1e-2  # mol/m3: 3e-7 of c_max_n; round-off seen after 200-500 mol/m3 plated and stripped
SUMMARY_VARS = [n for n, v in schema.VARIABLES.items() if v.kind == "summary"]
SERIES_VARS = cfgmod.SERIES_VARS
# Called as CYCLE_HOOK(scenario, cycle) after every finished (and checkpointed) cycle: tests use it
# to stop a run at a chosen point.
CYCLE_HOOK: Callable[[int, int], None] | None = None


class ScenarioFailure(RuntimeError):
    """The protocol could not be carried out (e.g. the cut-off is reached at once)."""


class CellSolveError(RuntimeError):
    """PyBaMM could not solve one cell's step (the message names the cell)."""

    def __init__(self, cell: int, message: str):
        super().__init__(message)
        self.cell = cell


def _pulse_run(pattern, k: int, n_max: int, dt: float) -> tuple[float, int]:
    """Multiplier at period k and how many periods from k (at most n_max) keep it."""
    mult, n = _pulse_multiplier(pattern, k * dt), 1
    while n < n_max and _pulse_multiplier(pattern, (k + n) * dt) == mult:
        n += 1
    return mult, n


def _pulse_multiplier(pattern, t: float) -> float:
    period = sum(s for _, s in pattern)
    t = t % period
    for m, s in pattern:
        if t < s:
            return float(m)
        t -= s
    return float(pattern[-1][0])


class _Recorder:
    """Per-step outputs of all cells, in stored units, for one cycle."""

    def __init__(self, shapes: dict[str, tuple], n_time: int, n_cells: int, record_fields: bool,
                 series: dict[str, np.ndarray] | None = None):
        self.k = 0
        # (n_cells, n_time) views of this cycle in the scenario's per-cycle series, or None
        self.series = series
        self.n_time = n_time
        self.record_fields = record_fields
        self.fields = {n: np.full((n_cells, n_time) + shapes[n], np.nan) for n in FIELD_VARS} \
            if record_fields else {}
        self.pack = {n: np.full(n_time, np.nan) for n in PACK_VARS}
        self.t_max = np.full(n_cells, -np.inf)
        self.margin_min = np.full(n_cells, np.inf)

    def add(self, values: list[dict], currents: np.ndarray, pack_v: float, pack_i: float,
            end_currents: np.ndarray | None = None):
        if self.k >= self.n_time:
            raise ScenarioFailure(f"cycle longer than the padded time axis ({self.n_time} samples)")
        for j, vals in enumerate(values):
            self.t_max[j] = max(self.t_max[j], float(vals["temperature"]))
            self.margin_min[j] = min(self.margin_min[j], float(vals["plating_margin"]))
            if self.series is not None:
                self.series["life_voltage"][j, self.k] = vals["voltage"]
                self.series["life_current"][j, self.k] = currents[j]
                self.series["life_temperature"][j, self.k] = vals["temperature"]
            if self.record_fields:
                for n in FIELD_VARS:
                    self.fields[n][j, self.k] = vals[n]
                self.fields["current"][j, self.k] = currents[j]
                self.fields["current_end"][j, self.k] = (currents if end_currents is None
                                                         else end_currents)[j]
        self.pack["pack_voltage"][self.k] = pack_v
        self.pack["pack_current"][self.k] = pack_i
        self.k += 1


def run_scenario(task: dict) -> dict:
    """Simulate one scenario; never raises (errors come back as status FAILED/PARTIAL)."""
    t0 = _time.perf_counter()
    cfg = cfgmod.from_dict(task["config"])
    s = task["scenario"]
    n_cycles = cfg.n_cycles
    n_cells = cfg.pack.n_series * cfg.pack.n_parallel
    result = {"scenario": s, "status": schema.STATUS_FAILED, "cycles_done": 0, "message": None,
              "snapshots": {}, "summary": {n: np.full((n_cells, n_cycles), np.nan)
                                           for n in SUMMARY_VARS},
              "iterations": 0, "steps": 0, "periods": 0, "cell_solves": 0, "split_rescues": 0,
              "stored_grid_error": {}, "life": {}, "resumed_from": 0, "checkpoints": 0,
              "checkpoint_s": 0.0, "checkpoint_cpu_s": 0.0, "checkpoint_bytes": 0}
    track = result["_track"] = {"phase": "set-up", "cell_error": None}
    failed_cell = None
    try:
        _simulate(cfg, task, result)
    except Exception as exc:  # PyBaMM raises many types; every one is a recorded failure
        msg = f"{type(exc).__name__}: {exc}".strip()
        result["message"] = msg[:2000]
        result["traceback"] = traceback.format_exc()[-4000:]
        # the cell whose solve failed: the error itself, or the failed trials of the step that
        # did not converge (a protocol failure, e.g. too little capacity, is the pack's)
        if getattr(exc, "cell", None) is not None:  # CellSolveError, PackDAEError.blame's
            failed_cell = exc.cell
        elif not isinstance(exc, ScenarioFailure) and track["cell_error"] is not None:
            failed_cell = track["cell_error"].cell
    result.pop("_track")
    done = result["cycles_done"]
    for name, arr in result["life"].items():
        arr[:, done:] = np.nan  # an unfinished cycle's samples are no cycle's record
    if result["message"] is None:
        result["status"] = schema.STATUS_OK
    else:
        result["status"] = schema.STATUS_PARTIAL if done > 0 else schema.STATUS_FAILED
        result["failure"] = {"cycle": done + 1, "phase": track["phase"], "cell": failed_cell,
                             "reason": result["message"]}
        where = track["phase"] + ("" if failed_cell is None else f", cell {failed_cell}")
        result["message"] = (f"stopped in cycle {done + 1} of {n_cycles} ({where}): "
                             f"{result['message']}")
    result["elapsed_s"] = _time.perf_counter() - t0
    return result


def _simulate(cfg, task: dict, result: dict) -> None:
    sc = cfg.scenarios[task["scenario"]]
    cells: list[dict] = task["cell_values"]
    nominal: dict = task["nominal"]
    varied = tuple(p.key for p in cfg.variation.parameters)
    ns, npar = cfg.pack.n_series, cfg.pack.n_parallel
    n_cells = ns * npar
    ambient_k = sc.ambient_temperature + 273.15
    radii = [(c.get("neg_radius", nominal["neg_radius"]), c.get("pos_radius", nominal["pos_radius"]))
             for c in cells]
    models = [get_model(cfg.model, varied, r) for r in radii]
    base_inputs = [m.inputs(c, nominal, 0.0, ambient_k) for m, c in zip(models, cells)]
    limits = [m.stoichiometry_limits({k: v for k, v in c.items()}) for m, c in zip(models, cells)]
    q_pack = models[0].capacity_ah * npar
    dt = cfg.solver.period_s
    last_vals: list[dict | None] = [None] * n_cells

    def step_cell(j, old, current, dt_, n=None):
        # The stepper keeps (PyBaMM solution, outputs at each sample) as the cell's state.
        # ``current`` is a constant, or (start, end) of a linear ramp over the step.
        i0, i1 = current if isinstance(current, tuple) else (current, current)
        sol_old = None if old is None else old[0]
        inputs = dict(base_inputs[j])
        inputs.update({CURRENT: i0, SLOPE: (i1 - i0) / dt_,
                       RAMP_START: 0.0 if sol_old is None else float(sol_old.t[-1])})
        result["cell_solves"] += 1
        try:
            sol = models[j].step(sol_old, inputs, dt_, n or 1)
        except Exception as exc:
            t = 0.0 if sol_old is None else float(sol_old.t[-1])
            err = CellSolveError(j, f"cell {j} (series group {j // npar}, parallel position "
                                    f"{j % npar}) from t = {t:.0f} s at {i0:.4g}..{i1:.4g} A: "
                                    f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            track["cell_error"] = err
            raise err from exc
        vals = models[j].read_samples(sol, inputs, n or 1)
        volts = np.array([float(v["voltage"][0]) for v in vals])
        return (sol, vals), (volts if n else float(volts[-1]))

    if cfg.solver.coupling == "dae":
        from packtwin.sim.pack_dae import DAEStepper, PackDAE

        stepper = DAEStepper(PackDAE(models, ns, npar, cell_inputs=base_inputs), base_inputs)
    else:
        stepper = PackStepper(ns, npar, step_cell, cfg.solver.voltage_tol,
                              cfg.solver.max_iterations, max_periods=cfg.solver.max_step_periods,
                              fewer_trials=cfg.solver.fewer_trials)
    p = cfg.protocol
    shapes = _field_shapes(models[0])
    snaps = cfgmod.snapshot_cycles(cfg)
    n_t = cfgmod.n_time(cfg)
    steps = cfgmod.phase_steps(cfg, sc)
    life = result["life"]
    if cfg.cycle_series:
        for name in SERIES_VARS:  # float32 as stored: 16 cells x 1000 cycles x 500 samples = 32 MB
            life[name] = np.full((n_cells, cfg.n_cycles, n_t), np.nan, dtype="float32")
    if p.checkup_every > 0:
        life["checkup"] = np.full((n_cells, cfg.n_cycles), np.nan)
    if cfgmod.has_pulse(cfg):
        life["checkup_pulse_resistance"] = np.full((n_cells, cfg.n_cycles), np.nan)

    track = result["_track"]
    exact = cfg.solver.cutoff == "crossing"  # else the grid cut-off of older stores

    def pack_voltage(cell_volts: np.ndarray) -> float:
        """The pack's voltage from its cells' at one instant: the sum of the groups' means."""
        return sum(float(np.mean(cell_volts[g * npar:(g + 1) * npar])) for g in range(ns))

    def do_step(rec, i_req, n_max=1, hold=None, i_floor=0.0, then=None, dt_=None):
        """One coupling step of up to n_max periods (of ``dt_``, default the storage period);
        records every period's sample."""
        track["cell_error"] = None  # cell failures of this step's trials only
        res = stepper.advance(dt if dt_ is None else dt_, n_max, i_req, p.v_min, p.v_max, hold,
                              i_floor, then)
        result["iterations"] += res.iterations
        result["split_rescues"] = stepper.rescues  # steps saved by the whole-step secant
        if cfg.solver.coupling == "dae":  # of the scenario's CPU, the joint integrations'
            result["joint_solve_cpu_s"] = stepper.solve_cpu_s
        result["steps"] += 1
        result["periods"] += res.n_periods
        volts, currents, ends = res.samples(), res.currents(), res.end_currents()
        for k in range(res.n_periods):
            out = [_stored(sol[1][k], lim, shapes) for sol, lim in zip(res.solutions, limits)]
            if rec is None or rec.record_fields:
                for m, sol in zip(models, res.solutions):
                    _track_grid_error(result["stored_grid_error"], m, sol[1][k])
            pack_v = pack_voltage(volts[k])
            if rec is not None:
                rec.add(out, currents[k], pack_v, float(currents[k, :npar].sum()), ends[k])
        return res, out, pack_v

    def segment(rec, i_req, n, hold=None, stop=lambda res: False, ah=None, i_floor=0.0,
                then=None):
        """Periods [0, n) at one request; ends early where ``stop(step result)``. Returns the
        last step and the number of periods done; adds the cells' charge [A.h] to ``ah``.
        ``then``: the mode after a cut-off, which ends the period at the crossing (PackStepper.advance)."""
        k, last = 0, None
        while k < n:
            last = do_step(rec, i_req, n - k, hold, i_floor, then)
            k += last[0].n_periods
            if ah is not None:
                ah += last[0].currents().sum(axis=0) * dt / 3600.0
            if stop(last[0]):
                break
        return last, k

    def pulse_step(rec, i_base, prev, ah):
        """One storage period of a check-up's discharge holding the resistance pulse: the pack
        current at ``checkup_pulse_c_rate`` for ``checkup_pulse_s``, then back at ``i_base`` for
        the rest of the period, recorded as one sample (the period's mean current, the voltage
        at its end), so the stored grid and the counted charge stay those of any period. Returns
        (last step, 1, each cell's pulse resistance [Ohm]: drop of its voltage from just before
        the pulse to the pulse's end over its current step).

        Raises:
            ScenarioFailure: the pulse takes a cell to the lower cut-off (the scenario stops
                there, its finished cycles kept; a smaller pulse rate is the remedy)."""
        t_p = p.checkup_pulse_s
        v0, i0 = prev.samples()[-1], prev.end_currents()[-1]
        r1, _, _ = do_step(None, p.checkup_pulse_c_rate * q_pack, 1, dt_=t_p)
        if r1.limit == "v_min":
            raise ScenarioFailure(
                f"the check-up pulse at {p.checkup_pulse_c_rate}C took a cell to the {p.v_min} V "
                f"cut-off (lowest cell at {prev.samples()[-1].min():.3f} V before it); lower "
                f"protocol.checkup_pulse_c_rate or move protocol.checkup_pulse_at")
        v1, i1 = r1.samples()[-1], r1.end_currents()[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            r_pulse = np.where(np.abs(i1 - i0) > 1e-9, (v0 - v1) / (i1 - i0), np.nan)
        r2, out1, _ = do_step(None, i_base, 1, dt_=dt - t_p)
        mean_i = (r1.currents()[-1] * t_p + r2.currents()[-1] * (dt - t_p)) / dt
        ah += mean_i * dt / 3600.0
        pack_v = pack_voltage(r2.samples()[-1])
        rec.add(out1, mean_i, pack_v, float(mean_i[:npar].sum()), r2.end_currents()[-1])
        return (r2, out1, pack_v), 1, r_pulse

    every = int(task.get("checkpoint_every") or 0)
    path = task.get("store")
    if path is not None and not Path(path).is_dir():
        path = None  # a worker that does not see the store (a remote Dask worker): no checkpoints
    saved = checkpoint.load(path, task["scenario"]) if path is not None else None
    if saved is not None:
        state = _resume(saved, models, base_inputs, stepper, result, path, snaps)
    else:
        # Initial rest: the state every cycle's sample 0 is taken from.
        track["phase"] = "initial rest"
        res, out, pack_v = do_step(None, 0.0)
        state = (res, out, pack_v)
    written = result["cycles_done"]  # cycles whose rows are in the store
    store_arrays: dict = {}  # the store's Zarr arrays, opened at the first checkpoint of this run
    for cycle in range(result["cycles_done"] + 1, cfg.n_cycles + 1):
        record = cycle in snaps
        series = {n: life[n][:, cycle - 1] for n in SERIES_VARS} if cfg.cycle_series else None
        rec = _Recorder(shapes, n_t, n_cells, record, series)
        checkup = cfgmod.is_checkup(cfg, cycle)
        # a check-up is a slow CC capacity test whatever the scenario's rate and protocol
        d_rate = p.checkup_c_rate if checkup else sc.discharge_c_rate
        pulse = sc.protocol == "pulse" and not checkup
        res0, out0, pv0 = state
        i0 = res0.currents()[-1]
        rec.add(out0, i0, pv0, float(i0[:npar].sum()))
        charge_ah = np.zeros(n_cells)
        # --- discharge: one segment per run of periods at one current (pulse edges end steps) ---
        track["phase"] = "check-up discharge" if checkup else "discharge"
        k = 0
        k_pulse = cfgmod.pulse_period(cfg) if checkup and cfgmod.has_pulse(cfg) else None
        while k < steps["discharge"]:
            mult, n = 1.0, steps["discharge"] - k
            if pulse:
                mult, n = _pulse_run(p.pulse_pattern, k, n, dt)
            if k_pulse is not None and k == k_pulse > 0:  # the period after the last segment
                track["phase"] = "check-up pulse"
                (res, out, pv), done, r_pulse = pulse_step(rec, d_rate * q_pack, res, charge_ah)
                track["phase"] = "check-up discharge"
                life["checkup_pulse_resistance"][:, cycle - 1] = r_pulse
                k += done
                if res.limit == "v_min":
                    break
                continue
            if k_pulse is not None and k < k_pulse:
                n = min(n, k_pulse - k)
            (res, out, pv), done = segment(rec, d_rate * q_pack * mult, n,
                                           stop=lambda r: r.limit == "v_min", ah=charge_ah,
                                           then=(0.0, None) if exact else None)
            k += done
            if res.limit == "v_min":
                break
        if charge_ah.sum() < p.min_capacity_fraction * q_pack:
            raise ScenarioFailure(
                f"discharge at {d_rate}C, {sc.ambient_temperature} degC reached the "
                f"{p.v_min} V cut-off after {charge_ah.sum():.3f} A.h (< {p.min_capacity_fraction:.0%}"
                f" of the pack's {q_pack:.2f} A.h): the cell cannot sustain this rate here")
        track["phase"] = "rest after discharge"
        (res, out, pv), _ = segment(rec, 0.0, steps["rest"])
        # --- CC charge, then CV hold ---
        track["phase"] = "CC charge"
        (res, out, pv), _ = segment(rec, -sc.charge_c_rate * q_pack, steps["cc"],
                                    stop=lambda r: r.limit == "v_max",
                                    then=(-sc.charge_c_rate * q_pack, "v_max") if exact else None)
        if res.limit == "v_max":
            i_cut = p.cv_cutoff_c * q_pack
            track["phase"] = "CV hold"
            (res, out, pv), _ = segment(rec, -sc.charge_c_rate * q_pack, steps["cv"], hold="v_max",
                                        stop=lambda r: abs(r.i_pack) < i_cut, i_floor=i_cut)
        track["phase"] = "rest after charge"
        (res, out, pv), _ = segment(rec, 0.0, steps["rest"])
        state = (res, out, pv)
        c = cycle - 1
        summ = result["summary"]
        summ["capacity"][:, c] = charge_ah
        summ["lli"][:, c] = [o["lli"] for o in out]
        summ["sei_thickness_end"][:, c] = [o["sei_thickness_avg"] for o in out]
        summ["plated_lithium_end"][:, c] = [o["plated_lithium"] for o in out]
        summ["temperature_max"][:, c] = rec.t_max
        summ["plating_margin_min"][:, c] = rec.margin_min
        summ["plating_event"][:, c] = (rec.margin_min < 0.0).astype(float)
        if "checkup" in life:
            life["checkup"][:, c] = float(checkup)
        if record:
            valid = np.zeros(n_t, dtype="uint8")
            valid[:rec.k] = 1
            result["snapshots"][snaps.index(cycle)] = {"fields": rec.fields, "pack": rec.pack,
                                                       "valid": valid}
        result["cycles_done"] = cycle
        if path is not None and every > 0 and (cycle % every == 0 or cycle == cfg.n_cycles):
            _save(path, task, result, models, stepper, state, written, snaps, store_arrays)
            written = cycle
        if CYCLE_HOOK is not None:
            CYCLE_HOOK(task["scenario"], cycle)


def _save(path, task: dict, result: dict, models, stepper: PackStepper, state, written: int,
          snaps: list[int], store_arrays: dict) -> None:
    """Checkpoint after ``result["cycles_done"]``: rows of the cycles since ``written`` into the
    store, then the state to go on (see :mod:`packtwin.sim.checkpoint`). ``store_arrays``: this
    run's cache of the store's arrays (filled at the first checkpoint)."""
    import json

    import pybamm

    t0, c0 = _time.perf_counter(), _time.process_time()
    res, out, pack_v = state
    arrays, scalars = {"i_last": res.currents()[-1]}, {}
    ends = [m.end_state(sol[0]) for m, sol in zip(models, stepper.solutions)]
    arrays["t"] = np.array([t for t, _ in ends])
    for j, (_, y) in enumerate(ends):
        arrays[f"y_{j}"] = y
        for name, val in out[j].items():
            arrays[f"out.{j}.{name}"] = np.asarray(val, dtype=float)
    for name, val in stepper.state().items():
        if isinstance(val, np.ndarray):
            arrays[f"stepper.{name}"] = val
        else:
            scalars[name] = val
    meta = {"stepper": scalars, "pack_voltage": float(pack_v),
            "stored_grid_error": result["stored_grid_error"],
            "generator_config": json.dumps(task["config"], sort_keys=True),
            "pybamm_version": pybamm.__version__, "n_cells": len(models)}
    store_arrays["rows"] = checkpoint.write_rows(path, result, written, result["cycles_done"],
                                                 snaps, arrays=store_arrays.get("rows"))
    result["checkpoint_bytes"] += checkpoint.save(path, task["scenario"], result["cycles_done"],
                                                  arrays, meta)
    result["checkpoints"] += 1
    result["checkpoint_s"] += _time.perf_counter() - t0
    result["checkpoint_cpu_s"] += _time.process_time() - c0


def _resume(saved: dict, models, base_inputs, stepper: PackStepper, result: dict, path,
            snaps: list[int]):
    """Restore a checkpoint into this run: rows, cells, stepper; returns the cycle-end state."""
    arrays, meta = saved["arrays"], saved["meta"]
    n = len(models)
    if meta.get("n_cells") != n:
        f = checkpoint.file_for(path, result["scenario"])
        raise checkpoint.CheckpointError(f"checkpoint {str(f)!r} is for {meta.get('n_cells')} "
                                         f"cells, the pack has {n}")
    st = dict(meta["stepper"])
    st.update({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("stepper.")})
    stepper.restore(st)
    stepper.solutions = [(m.solution_at(arrays["t"][j], arrays[f"y_{j}"], base_inputs[j]), None)
                         for j, m in enumerate(models)]
    out = [{} for _ in range(n)]
    for key, val in arrays.items():
        if key.startswith("out."):
            _, j, name = key.split(".", 2)
            out[int(j)][name] = float(val) if val.ndim == 0 else val
    i_last = np.asarray(arrays["i_last"], dtype=float)
    res = StepResult(float(i_last[:stepper.np_].sum()), i_last,
                     np.array([o["voltage"] for o in out]), None, 0)
    result["stored_grid_error"] = dict(meta["stored_grid_error"])
    checkpoint.read_rows(path, result, saved["cycle"], snaps)
    result["cycles_done"] = result["resumed_from"] = saved["cycle"]
    return res, out, float(meta["pack_voltage"])


def _track_grid_error(worst: dict, model, vals: dict) -> None:
    """Keep the largest error of the stored x grid against the solver's mesh over the stored
    samples: c_s in % of c_max, the others in stored units."""
    for key, err in model.stored_grid_errors(vals).items():
        name = key.rsplit("_at_", 1)[0]
        scale = {"c_s_n": 100.0 / model.c_max_n, "c_s_p": 100.0 / model.c_max_p}.get(
            name, schema.VARIABLES[name].scale)
        key = key + ("_pct_c_max" if name.startswith("c_s_") else
                     f"_{schema.VARIABLES[name].units.replace('/', '_per_')}")
        worst[key] = max(worst.get(key, 0.0), err * scale)


def _field_shapes(model) -> dict[str, tuple]:
    nxn, nxp, nx, nrn, nrp = (len(model.x_n), len(model.x_p), len(model.x), len(model.r_n),
                              len(model.r_p))
    dims = {schema.X_N: nxn, schema.X_P: nxp, schema.X: nx, schema.R_N: nrn, schema.R_P: nrp}
    return {n: tuple(dims[d] for d in schema.VARIABLES[n].dims[4:]) for n in FIELD_VARS}


def _stored(vals: dict, limits: tuple[float, float], shapes: dict[str, tuple]) -> dict:
    """PyBaMM outputs of one cell at one time -> stored names, units and shapes."""
    out = {}
    for n in FIELD_VARS:
        v = schema.VARIABLES[n]
        if n == "soc":
            x0, x100 = limits
            out[n] = (float(vals["_sto_n"][0]) - x0) / (x100 - x0)
        elif n in ("current", "current_end"):
            out[n] = np.nan  # filled from the pack split
        else:
            raw = np.asarray(vals[n], dtype=float) * v.scale
            # particle values come x-major from PyBaMM, i.e. already (x, r) in C order
            out[n] = raw.reshape(shapes[n]) if shapes[n] else float(raw[0])
    # The solver returns plated lithium down to -4e-3 mol/m3 where none is left (round-off of an
    # ODE state at 0, e.g. after plated lithium is stripped); zero it at that level only, larger
    # negatives stay visible.
    if -PLATING_NOISE < out["plated_lithium"] < 0.0:
        out["plated_lithium"] = 0.0
    out["lli"] = float(vals["_lli"][0])
    return out
