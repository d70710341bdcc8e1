"""``packtwin generate``: simulate a pack over a list of scenarios into a resumable Zarr store.

The main process draws the cells, creates the store from :func:`packtwin.schema.template`, hands
one task per scenario to an executor (a process pool, or Dask through its concurrent.futures
interface) and writes each finished scenario itself: data first, then ``status``/``cycles_done``,
so a run killed between the two only redoes that scenario. A running scenario checkpoints every
``--checkpoint-every`` cycles (:mod:`packtwin.sim.checkpoint`: its finished rows into the store,
the state to go on into ``<store>/checkpoints``), so a killed run resumes it after its last
checkpoint with the values of an uninterrupted run. A rerun skips every scenario with a status
(``--retry-failed`` retries failed and partial ones, from cycle 1); a store made with another
config is refused, and so is a checkpoint made with another config or PyBaMM version.

Before anything runs the config is checked (unknown keys, hard limits of
:mod:`packtwin.sim.limits`, PyBaMM's own options and parameter names) and the run's size and
memory are estimated (:mod:`packtwin.sim.budget`). One writer holds ``<store>.lock``; a new
store is created with its parameter table in a temporary sibling and renamed into place; pool
workers end with this process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable, Literal, Optional, Sequence

import numpy as np

from packtwin import schema
from packtwin.data import lock, outputs, store
from packtwin.errors import PacktwinError, debug_enabled, one_line
from packtwin.sim import budget, limits
from packtwin.sim import config as cfgmod
from packtwin.sim.config import ConfigError, GenerateConfig

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "generate"
RUN_OPTIONS = ("config", "preset", "store", "workers", "executor", "scheduler", "retry_failed",
               "quiet", "max_store_gb", "max_memory_gb", "checkpoint_every")
TRUTH_KIND = "truth"


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _expand_preset(argv: Sequence[str]) -> list[str]:
    """``--preset NAME`` -> ``--config configs/generate/NAME.yaml`` (before jsonargparse sees it)."""
    out, it = [], iter(argv)
    for a in it:
        if a == "--preset" or a.startswith("--preset="):
            name = a.split("=", 1)[1] if "=" in a else next(it, None)
            path = PRESET_DIR / f"{name}.yaml"
            if not name or not path.is_file():
                raise ConfigError(f"unknown preset {name!r}; available presets in "
                                  f"{PRESET_DIR}: {presets()}")
            out += ["--config", str(path)]
        else:
            out.append(a)
    return out


def build_parser():
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    # attribute docstrings of the config dataclasses become the --help text
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(prog="packtwin generate", description=__doc__.split("\n")[0],
                            exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config (see configs/generate)")
    parser.add_argument("--preset", type=Optional[str], default=None,
                        help=f"shorthand for --config configs/generate/NAME.yaml ({', '.join(presets())})")
    parser.add_argument("--store", type=str, default="data/pack.zarr", help="Zarr store to create or resume")
    parser.add_argument("--workers", type=Optional[int], default=None,
                        help="parallel workers (default: CPU cores); 1 runs in this process")
    parser.add_argument("--executor", type=Literal["process", "dask"], default="process",
                        help="process pool, or Dask distributed")
    parser.add_argument("--scheduler", type=Optional[str], default=None,
                        help="Dask scheduler address; default: a LocalCluster on 127.0.0.1")
    parser.add_argument("--retry-failed", dest="retry_failed", action="store_true",
                        help="also rerun scenarios recorded as failed or partial")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=1,
                        help="checkpoint a running scenario every N cycles (and after its last) "
                             "so a killed run resumes it there; 0: never (a killed scenario "
                             "reruns from cycle 1)")
    parser.add_argument("--max-store-gb", dest="max_store_gb", type=float,
                        default=budget.DEFAULT_MAX_STORE_GB,
                        help="refuse a run whose store is estimated larger than this [GB]")
    parser.add_argument("--max-memory-gb", dest="max_memory_gb", type=Optional[float], default=None,
                        help="refuse a run estimated to need more memory than this [GB] "
                             "(default: half the machine's memory)")
    parser.add_class_arguments(GenerateConfig, nested_key=None, fail_untyped=False)
    return parser


def _config_files(argv: Sequence[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--config="):
            out.append(a.split("=", 1)[1])
    return out


def _check_config_files(argv: Sequence[str]) -> None:
    """Readable YAML mappings with only known keys (each unknown one named with the nearest)."""
    import yaml

    for f in _config_files(argv):
        try:
            d = yaml.safe_load(Path(f).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {f!r} cannot be read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {f!r} is not valid YAML: "
                              f"{' '.join(str(exc).split())}") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"config file {f!r} must hold a mapping of keys, found "
                              f"{type(d).__name__}")
        problems = cfgmod.unknown_keys(d, GenerateConfig, extra=RUN_OPTIONS)
        if problems:
            raise ConfigError(f"config file {f!r} is invalid:\n  - " + "\n  - ".join(problems))


def _argument_hint(message: str, parser) -> str:
    """Add the nearest valid option to jsonargparse's 'unknown option' messages."""
    import re

    m = re.search(r"(?:does not accept option|Unrecognized arguments:)\s*'?(--)?([\w.\-]+)",
                  message, re.IGNORECASE)
    if not m:
        return message
    valid = sorted({o.lstrip("-").replace("-", "_") for a in parser._actions
                    for o in a.option_strings} | set(_all_keys(GenerateConfig)))
    name = m.group(2).lstrip("-").replace("-", "_")
    if "does not accept option" in message:
        group = re.search(r"Group '([\w.]+)'", message)
        name = f"{group.group(1)}.{name}" if group else name
    return message + cfgmod.nearest(name, valid)


def _all_keys(cls, prefix: str = "") -> list[str]:
    import dataclasses
    import typing

    out = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        out.append(prefix + f.name)
        if dataclasses.is_dataclass(hint):
            out += _all_keys(hint, f"{prefix}{f.name}.")
    return out


def parse(argv: Sequence[str]) -> tuple[GenerateConfig, dict]:
    argv = _expand_preset(list(argv))
    _check_config_files(argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except Exception as exc:  # jsonargparse raises ArgumentError with a clear message
        raise ConfigError(f"invalid arguments or config: "
                          f"{_argument_hint(str(exc), parser)}") from exc
    d = ns.as_dict()
    run = {k: d.get(k) for k in RUN_OPTIONS}
    gen = {k: v for k, v in d.items() if k not in RUN_OPTIONS and k != "__path__"}
    try:
        cfg = cfgmod.from_dict(gen)
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"config does not match GenerateConfig: {exc}") from exc
    src = str(d.get("config")[0]) if d.get("config") else "command-line config"
    cfgmod.validate(cfg, source=src)
    from packtwin.sim.cell import model_config_problems

    problems = model_config_problems(cfg.model)
    if problems:
        raise ConfigError(f"{src} is invalid:\n  - " + "\n  - ".join(problems))
    return cfg, run


# ---------------------------------------------------------------------------------------------
# cells and store
# ---------------------------------------------------------------------------------------------
def draw_cells(cfg: GenerateConfig) -> tuple[list[dict], dict]:
    """True parameter values of every cell (seeded) and the nominal values they vary around."""
    from packtwin.sim.cell import nominal_values
    from packtwin.sim.variation import relative_draws

    keys = [p.key for p in cfg.variation.parameters]
    nominal = nominal_values(cfg.model, sorted(set(keys) | {"neg_radius", "pos_radius"}))
    n_cells = cfg.pack.n_series * cfg.pack.n_parallel
    rel = relative_draws([p.spread for p in cfg.variation.parameters],
                         [p.distribution for p in cfg.variation.parameters], n_cells, cfg.seed,
                         cfg.variation.correlation)
    cells = [{k: nominal[k] * float(rel[c, i]) for i, k in enumerate(keys)} for c in range(n_cells)]
    return cells, nominal


def check_cells(cfg: GenerateConfig, cells: list[dict], nominal: dict) -> None:
    """Refuse nominal values or drawn cells that are not physical (naming cell and parameter)."""
    from packtwin.sim.cell import negative_c_max

    c_max = negative_c_max(cfg.model)
    problems = limits.cell_problems([nominal], c_max, source="nominal value (parameter set and "
                                    "model.parameter_overrides), cell")
    problems += limits.cell_problems(cells, c_max)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ConfigError("drawn cell parameters are not physical; narrow variation.parameters "
                          "spreads or fix the overrides:\n  - " + "\n  - ".join(problems[:10])
                          + more)


def config_json(cfg: GenerateConfig) -> str:
    return json.dumps(cfgmod.to_dict(cfg), sort_keys=True)


def _grid_and_attrs(cfg: GenerateConfig, nominal: dict) -> tuple[schema.Grid, dict, dict]:
    import pybamm

    from packtwin.sim.cell import REFERENCE_NOTE, get_model

    keys = tuple(p.key for p in cfg.variation.parameters)
    m = get_model(cfg.model, keys, (nominal["neg_radius"], nominal["pos_radius"]))
    grid = schema.Grid(
        scenarios=[{"ambient_temperature": s.ambient_temperature, "charge_c_rate": s.charge_c_rate,
                    "discharge_c_rate": s.discharge_c_rate, "protocol": s.protocol}
                   for s in cfg.scenarios],
        n_series=cfg.pack.n_series, n_parallel=cfg.pack.n_parallel,
        snapshot_cycles=cfgmod.snapshot_cycles(cfg), n_cycles=cfg.n_cycles,
        n_time=cfgmod.n_time(cfg), period_s=cfg.solver.period_s,
        x_n=m.x_n, x_p=m.x_p, x=m.x, r_n=m.r_n, r_p=m.r_p, param_keys=list(keys),
        life_vars=cfgmod.life_vars(cfg))
    attrs = {
        "pybamm_version": pybamm.__version__, "parameter_set": cfg.model.parameter_set,
        "model": cfg.model.model, "model_options": dict(cfg.model.options), "seed": cfg.seed,
        "generator_config": config_json(cfg), "nominal_capacity_ah": m.capacity_ah,
        "parameter_overrides": dict(cfg.model.parameter_overrides),
        "param_reference": REFERENCE_NOTE,
        # Inside a period the generator's current is constant (one-period coupling step) or a
        # linear ramp (longer steps); either way the stored sample is the period's mean.
        "current_convention": schema.CURRENT_CONVENTION,
        "sei_note": "SEI solvent diffusivity as in the parameter set (x cell multiplier); "
                    "no ageing acceleration",
        "messages": {},
        "stored_grid": stored_grid_note(cfg, m),
        "stored_grid_error": {},
    }
    return grid, attrs, {"c_s_n": m.c_max_n, "c_s_p": m.c_max_p}


def stored_grid_note(cfg: GenerateConfig, m) -> dict:
    """How the store's grid relates to the solver's mesh (store attr ``stored_grid``)."""
    x = {k: len(mp.solver_nodes) for k, mp in m.grid.maps.items()}
    return {
        "solver_var_pts": dict(cfg.model.var_pts), "solver_submesh": dict(cfg.model.submesh),
        "stored_x_points": {k: len(mp.nodes) for k, mp in m.grid.maps.items()},
        "stored_r_points": {"r_n": len(m.r_n), "r_p": len(m.r_p)},
        "x": ("solver's nodes" if not m.grid.coarsened else
              f"uniform cells, each the width-weighted mean of the solver's {x} cells it overlaps "
              "(conservative: the x-integral of every field, so each electrode's lithium and the "
              "x-averaged SEI, is the solver's)"),
        "r": ("solver's nodes" if cfg.model.stored_r_points is None else
              "uniform cell centres r/R = (i + 1/2) / n, linear interpolation of the solver's "
              "nodes (point values; not conservative)"),
        "error": "attr stored_grid_error: per scenario, the largest difference over the stored "
                 "samples at the stored nodes (stored value - solver field linearly interpolated "
                 "there) and at the solver's nodes (stored field linearly interpolated there, "
                 "extrapolated beyond the outer stored nodes - solver value); c_s in % of c_max",
    }


def _incomplete(path: Path) -> bool:
    """A store the generator began to create but never finished (made by a killed older run):
    generator attrs but no status array. Nothing was simulated into it, so it is recreated."""
    try:
        attrs = store.read_attrs(path)
    except Exception:
        return False
    return "generator_config" in attrs and not (path / "status" / "zarr.json").exists()


def open_or_create(path: Path, cfg: GenerateConfig, cells: list[dict], nominal: dict,
                   log=print) -> None:
    """Create the store, or check that an existing one was made with this very config.

    A new store (template, attrs and parameter table) is written into a temporary sibling and
    renamed into place: a kill during creation leaves no store, and the next run starts over.
    """
    outputs.recover(path)
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()  # an empty folder holds nothing: create the store there
    if path.exists() and _incomplete(path):
        log(f"packtwin generate: store {path} was left incomplete by a killed run (no scenario "
            f"written); creating it again")
        shutil.rmtree(path)
    if path.exists():
        try:
            attrs = store.read_attrs(path)
        except Exception as exc:
            raise store.StoreError(f"store {str(path)!r} exists but is not a Zarr store: {exc}") from exc
        stored = attrs.get("generator_config")
        if stored is None:
            raise store.StoreError(f"store {str(path)!r} has no generator_config; it was not made "
                                   "by packtwin generate")
        old = upgrade_stored_config(json.loads(stored), cfg)
        new = cfgmod.to_dict(cfg)
        if old != new:
            diff = cfgmod.differing_keys(old, new)
            raise store.StoreError(
                f"store {str(path)!r} was made with a different generator config (differs in "
                f"{diff}); use another --store or delete it")
        _repair_parameter_table(path, cfg, cells, log)
        return
    grid, attrs, c_max = _grid_and_attrs(cfg, nominal)
    attrs[outputs.ZARR_ATTR] = TRUTH_KIND
    tmpl = schema.template(grid, attrs)
    for name, val in c_max.items():
        tmpl[name].attrs["c_max"] = float(val)
    tmp = outputs.temp_sibling(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        store.create_store(tmp, tmpl)
        store.write_region(tmp, _parameter_table(cfg, cells), {schema.CELL: slice(0, len(cells))})
        os.rename(tmp, path)  # atomic; fails rather than replace anything that appeared
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# Options added after stores were made, with the value that reproduces those stores: an older
# store resumes under a config that leaves them at these values.
NEW_DEFAULTS = {"cycle_series": False,
                "protocol": {"checkup_every": 0, "checkup_c_rate": 0.2,
                             "checkup_pulse_c_rate": 0.0, "checkup_pulse_s": 0.1,
                             "checkup_pulse_at": 0.5},
                # stores made before the exact cut-off (issue #10's capacity sawtooth)
                "solver": {"cutoff": "grid", "fewer_trials": False, "coupling": "stepped"}}


def upgrade_stored_config(stored: dict, cfg: GenerateConfig) -> dict:
    """An older store's generator config with every key added since, each at the value that
    reproduces what the store holds, so it compares equal to a config that would make it again.

    Fixed values come from NEW_DEFAULTS; model.stored_x_points depends on the mesh: a store made
    before it kept x on the solver's nodes, which a config reproduces only where its stored x grid
    is the solver's (e.g. the demo's 16/8/16 with the default grid)."""
    from packtwin.sim.stored_grid import stored_sizes

    out = dict(stored)
    for key, val in NEW_DEFAULTS.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = {**val, **out[key]}
        else:
            out.setdefault(key, val)
    model = out.get("model")
    if isinstance(model, dict) and "stored_x_points" not in model:
        same = all(stored_sizes(cfg.model)[k] == cfg.model.var_pts.get(k)
                   for k in ("x_n", "x_s", "x_p"))
        out["model"] = {**model, "stored_x_points": cfg.model.stored_x_points if same else None}
    return out


def _parameter_table(cfg: GenerateConfig, cells: list[dict]):
    import xarray as xr

    return xr.Dataset({schema.param_var(p.key): ((schema.CELL,),
                                                 np.array([c[p.key] for c in cells], dtype=float))
                       for p in cfg.variation.parameters})


def _repair_parameter_table(path: Path, cfg: GenerateConfig, cells: list[dict], log) -> None:
    """Fill a parameter table an older, killed run left empty (the cells are drawn the same way
    from the same config and seed)."""
    import zarr

    names = [schema.param_var(p.key) for p in cfg.variation.parameters]
    group = zarr.open_group(str(path), mode="r")
    if all(np.isfinite(group[n][:]).all() for n in names if n in group):
        return
    log(f"packtwin generate: store {path} has an unwritten parameter table (a run killed just "
        f"after creating it); writing it from the config's seed")
    store.write_region(path, _parameter_table(cfg, cells), {schema.CELL: slice(0, len(cells))})


def _check_writable(path: Path) -> None:
    """Fail before any simulation when the store cannot be written."""
    target = path if path.exists() else path.parent
    if not path.exists():
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store.StoreError(f"store path {str(path)!r} is not writable: cannot create "
                                   f"{str(target)!r} ({exc})") from exc
    if not os.access(target, os.W_OK):
        raise store.StoreError(f"store path {str(path)!r} is not writable (no write permission "
                               f"on {str(target)!r})")


def pending(path: Path, n_scenarios: int, retry_failed: bool) -> list[int]:
    import zarr

    status = np.asarray(zarr.open_array(str(path / "status"), mode="r")[:], dtype=float)
    todo = []
    for s in range(n_scenarios):
        st = status[s]
        if np.isnan(st) or (retry_failed and st in (schema.STATUS_FAILED, schema.STATUS_PARTIAL)):
            todo.append(s)
    return todo


def write_result(path: Path, res: dict) -> None:
    """Write one scenario: data first, then its status (the commit mark of the scenario)."""
    import xarray as xr

    from packtwin.sim.checkpoint import scenario_dataset

    s = res["scenario"]
    ds_store = xr.open_zarr(path, consolidated=False)
    ds = scenario_dataset(res, dict(ds_store.sizes), set(ds_store.variables))
    region = {schema.SCENARIO: slice(s, s + 1)}
    store.write_region(path, ds, region)
    done = xr.Dataset({"status": ((schema.SCENARIO,), np.array([res["status"]], "float32")),
                       "cycles_done": ((schema.SCENARIO,), np.array([res["cycles_done"]], "float32"))})
    store.write_region(path, done, region)


def _record_message(path: Path, s: int, message) -> None:
    _record_per_scenario(path, "messages", s, message)


def _record_per_scenario(path: Path, key: str, s: int, value) -> None:
    """Set (or, for an empty value, drop) scenario ``s``'s entry of the JSON attr ``key``."""
    attrs = store.read_attrs(path)
    entries = store.json_attr(attrs, key, {}) or {}
    if value:
        entries[str(s)] = value
    else:
        entries.pop(str(s), None)
    store.update_attrs(path, **{key: entries})


# ---------------------------------------------------------------------------------------------
# execution
# ---------------------------------------------------------------------------------------------
def _die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: end this worker when the generating process ends.

    PR_SET_PDEATHSIG covers the direct parent (Linux); a watcher thread covers a parent that is
    not the direct one (forkserver) and platforms without prctl.
    """
    import ctypes
    import signal
    import threading

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            if not outputs.pid_alive(parent_pid):
                os._exit(1)
            time.sleep(1.0)

    if not outputs.pid_alive(parent_pid):
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="packtwin-parent-watch").start()


def results(executor: Executor | None, fn, tasks: list) -> Iterable:
    """Results of ``fn`` over ``tasks`` as each finishes (in this process when no executor)."""
    if executor is None:  # one worker: each result is handed over (and written) at once
        for t in tasks:
            yield fn(t)
        return
    for fut in as_completed([executor.submit(fn, t) for t in tasks]):
        yield fut.result()


def make_executor(kind: str, workers: int, scheduler: str | None):
    """An Executor and a closer. Dask's ClientExecutor is a concurrent.futures.Executor too."""
    if kind == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError("--executor dask needs the 'distributed' extra: "
                              "pip install 'packtwin[distributed]'") from exc
        if scheduler:
            client = Client(scheduler)
            cluster = None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", processes=True)
            client = Client(cluster)

        def close():
            client.close()
            if cluster is not None:
                cluster.close()

        return client.get_executor(pure=False), close
    if workers == 1:
        return None, lambda: None
    ex = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                             initargs=(os.getpid(),))
    return ex, lambda: ex.shutdown(wait=True, cancel_futures=True)


def run(cfg: GenerateConfig, store_path: str | os.PathLike, workers: int | None = None,
        executor: str = "process", scheduler: str | None = None, retry_failed: bool = False,
        quiet: bool = False, log=print, max_store_gb: float | None = None,
        max_memory_gb: float | None = None, checkpoint_every: int = 1) -> dict:
    """Generate (or resume) a store; returns counts and timing."""
    path = Path(store_path)
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, found {workers}")
    if checkpoint_every is None or checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 (0: no checkpoints), found "
                          f"{checkpoint_every}")
    budget.check(cfg, workers or os.cpu_count() or 1, max_store_gb, max_memory_gb)
    _check_writable(path)
    with lock.exclusive(path, command="packtwin generate") as held:
        if held.get("stale"):
            log(f"packtwin generate: taking over the lock of pid {held['stale'].get('pid')} "
                f"(no longer running)")
        return _run_locked(cfg, path, workers, executor, scheduler, retry_failed, quiet, log, t0,
                           checkpoint_every)


def _checkpoints(path: Path, cfg: GenerateConfig, log) -> None:
    """Check the checkpoints of unfinished scenarios (a mismatch is an error naming the file)
    and drop those of scenarios that have a status (left by a kill just after the status was
    written; a retried failed or partial scenario starts from cycle 1)."""
    import pybamm
    import zarr

    from packtwin.sim import checkpoint

    status = np.asarray(zarr.open_array(str(path / "status"), mode="r")[:], dtype=float)
    expect = {"generator_config": config_json(cfg), "pybamm_version": pybamm.__version__,
              "n_cells": cfg.pack.n_series * cfg.pack.n_parallel}
    for s in range(len(cfg.scenarios)):
        if np.isfinite(status[s]):
            checkpoint.remove(path, s)
            continue
        saved = checkpoint.load(path, s, expect)
        if saved is not None:
            log(f"packtwin generate: scenario {s} resumes after cycle {saved['cycle']} of "
                f"{cfg.n_cycles} (checkpoint {checkpoint.file_for(path, s)})")


def _run_locked(cfg, path, workers, executor, scheduler, retry_failed, quiet, log, t0,
                checkpoint_every=1) -> dict:
    from packtwin.sim import checkpoint
    from packtwin.sim.scenario import run_scenario

    cells, nominal = draw_cells(cfg)
    check_cells(cfg, cells, nominal)
    open_or_create(path, cfg, cells, nominal, log=log)
    todo = pending(path, len(cfg.scenarios), retry_failed)
    skipped = len(cfg.scenarios) - len(todo)
    log(f"packtwin generate: store {path}: {len(cfg.scenarios)} scenarios, {skipped} already done, "
        f"{len(todo)} to run")
    _checkpoints(path, cfg, log)
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo))) if todo else 1
    conf = cfgmod.to_dict(cfg)
    tasks = [{"config": conf, "scenario": s, "cell_values": cells, "nominal": nominal,
              "store": str(path.resolve()), "checkpoint_every": checkpoint_every} for s in todo]
    counts = {"ok": 0, "partial": 0, "failed": 0, "skipped": skipped, "cell_cycles": 0,
              "checkpoints": 0, "checkpoint_s": 0.0, "checkpoint_cpu_s": 0.0,
              "checkpoint_bytes": 0}
    if tasks:
        ex, close = make_executor(executor, workers, scheduler)
        try:
            bar = _progress(len(tasks), quiet)
            for res in results(ex, run_scenario, tasks):
                write_result(path, res)
                checkpoint.remove(path, res["scenario"])  # the status is the scenario's record now
                _record_message(path, res["scenario"], res["message"])
                _record_per_scenario(path, "failures", res["scenario"], res.get("failure"))
                _record_per_scenario(path, "stored_grid_error", res["scenario"],
                                     res.get("stored_grid_error"))
                key = {schema.STATUS_OK: "ok", schema.STATUS_PARTIAL: "partial"}.get(
                    res["status"], "failed")
                counts[key] += 1
                # cell-cycles computed by this run (a resumed scenario's earlier ones were not)
                counts["cell_cycles"] += (res["cycles_done"] - res.get("resumed_from", 0)) \
                    * len(cells)
                for k in ("checkpoints", "checkpoint_s", "checkpoint_cpu_s", "checkpoint_bytes"):
                    counts[k] += res.get(k, 0)
                resumed = (f" (resumed after cycle {res['resumed_from']})"
                           if res.get("resumed_from") else "")
                log(f"scenario {res['scenario']} written: {key}, {res['cycles_done']} cycles"
                    f"{resumed}, "
                    f"{res['elapsed_s']:.1f} s, {res['steps']} coupling steps, {res['iterations']} "
                    f"split iterations"
                    + (f" ({res['split_rescues']} rescued by the whole-step secant)"
                       if res.get("split_rescues") else "")
                    + f", {res.get('cell_solves', 0)} cell solves, "
                    f"{res.get('checkpoints', 0)} checkpoints ({res.get('checkpoint_s', 0):.2f} s)"
                    + (f" ({res['message']})" if res["message"] else ""))
                bar.update(1)
            bar.close()
        finally:
            close()
    counts["wall_s"] = time.perf_counter() - t0
    return counts


def _progress(total: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="scenario", desc="generate", disable=quiet, file=sys.stderr,
                dynamic_ncols=True)


def main(argv: Iterable[str] | None = None) -> int:
    """CLI entry point: ``packtwin generate --config FILE | --preset NAME [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        return 0
    try:
        cfg, opts = parse(argv)
        counts = run(cfg, opts["store"], opts["workers"], opts["executor"], opts["scheduler"],
                     bool(opts["retry_failed"]), bool(opts["quiet"]),
                     max_store_gb=opts["max_store_gb"], max_memory_gb=opts["max_memory_gb"],
                     checkpoint_every=opts["checkpoint_every"])
    except PacktwinError as exc:
        if debug_enabled():
            raise
        print(f"packtwin generate: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"packtwin generate: done in {counts['wall_s']:.1f} s: {counts['ok']} ok, "
          f"{counts['partial']} partial, {counts['failed']} failed, {counts['skipped']} skipped; "
          f"store {opts['store']}")
    return 0
