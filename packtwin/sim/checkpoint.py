"""Per-cycle checkpoints of a running scenario: a life run killed at any point resumes after its
last checkpointed cycle and gives the values of an uninterrupted run.

A checkpoint has two parts, written in this order:

1. the rows of the cycles finished since the last checkpoint, written into the store's own
   arrays (region writes of the scenario's cycles and of the snapshots among them, as the final
   write of the scenario does; they are kept and read back on resume, never recomputed);
2. the state needed to go on exactly, in one file per scenario,
   ``<store>/checkpoints/scenario-<s>.npz``: every cell's PyBaMM time and state vector (float64,
   bit for bit), the pack stepper's adaptive state (:meth:`PackStepper.state`), the currents,
   outputs and pack voltage of the cycle's last sample (the next cycle's sample 0), the stored-grid
   error so far and the cycle number.

The file is written under a temporary name and renamed: one atomic commit per checkpoint, which
several Zarr arrays written one after the other cannot give. A kill between parts 1 and 2 leaves
the previous checkpoint; its later cycles are computed again (to the same values) and rewritten.
The file lives inside the store, so it moves and is deleted with it; ``checkpoints`` is a Zarr
group whose attrs describe the files (Zarr sees a valid hierarchy; xarray reads only the root
group's arrays). The main process deletes a scenario's file once the scenario's status is written.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from packtwin import schema
from packtwin.data import store
from packtwin.sim.config import differing_keys

GROUP = "checkpoints"
FORMAT = 1
GROUP_ATTRS = {
    "description": "per-scenario checkpoints of running scenarios (packtwin.sim.checkpoint): "
                   "scenario-<s>.npz holds the state to go on after the last finished cycle; "
                   "deleted once the scenario's status is written",
    "units": {"t": "s (PyBaMM time since the scenario's start)", "y_<cell>": "PyBaMM state vector "
              "(model units)", "i_last": "A (discharge > 0)", "pack_voltage": "V",
              "stepper.R": "Ohm", "stepper.a": "V", "stepper.a_prev": "V", "stepper.drift": "V",
              "stepper.cur_hist": "A", "out.<cell>.<name>": "stored units of the schema"},
}


class CheckpointError(store.StoreError):
    """A checkpoint cannot be used to resume; the message names the file and the problem."""


def file_for(path: str | os.PathLike, scenario: int) -> Path:
    return Path(path) / GROUP / f"scenario-{int(scenario)}.npz"


def _ensure_group(path: Path) -> None:
    import zarr

    if not (path / GROUP / "zarr.json").exists():
        zarr.open_group(str(path / GROUP), mode="a", zarr_format=3).attrs.update(GROUP_ATTRS)


def save(path: str | os.PathLike, scenario: int, cycle: int, arrays: dict, meta: dict) -> int:
    """Commit scenario ``scenario``'s state after ``cycle``; returns the file's size in bytes."""
    path = Path(path)
    _ensure_group(path)
    target = file_for(path, scenario)
    meta = {**meta, "format": FORMAT, "scenario": int(scenario), "cycle": int(cycle)}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(_plain(meta), allow_nan=True)),
             **{k: np.asarray(v) for k, v in arrays.items()})
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)  # atomic: the previous checkpoint or this one, never half of one
    return len(buf.getvalue())


def load(path: str | os.PathLike, scenario: int, expect: dict | None = None) -> dict | None:
    """The saved checkpoint of a scenario ({"cycle", "meta", "arrays"}), or None if it has none.

    ``expect``: meta entries that must match (the generator config, PyBaMM version, pack size);
    a checkpoint that cannot be read or was made otherwise raises :class:`CheckpointError`.
    """
    f = file_for(path, scenario)
    if not f.exists():
        return None
    hint = f"delete {str(f)!r} to rerun scenario {scenario} from cycle 1"
    try:
        with np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:  # zipfile/np/json raise several types for a damaged file
        raise CheckpointError(f"checkpoint {str(f)!r} cannot be read ({type(exc).__name__}: "
                              f"{exc}); {hint}") from exc
    if meta.get("format") != FORMAT or meta.get("scenario") != scenario:
        raise CheckpointError(f"checkpoint {str(f)!r} has format {meta.get('format')!r} for "
                              f"scenario {meta.get('scenario')!r}, expected format {FORMAT} for "
                              f"scenario {scenario}; {hint}")
    for key, want in (expect or {}).items():
        found = meta.get(key)
        if found != want:
            what = _config_diff(found, want) if key == "generator_config" else \
                f"expected {want!r}, found {found!r}"
            raise CheckpointError(f"checkpoint {str(f)!r} was made with a different {key} "
                                  f"({what}); {hint}")
    return {"cycle": int(meta["cycle"]), "meta": meta, "arrays": arrays}


def remove(path: str | os.PathLike, scenario: int) -> None:
    file_for(path, scenario).unlink(missing_ok=True)


def _config_diff(found, want) -> str:
    try:
        old, new = json.loads(found), json.loads(want)
    except (TypeError, json.JSONDecodeError):
        return "unreadable config"
    return f"differs in {differing_keys(old, new)}"


def _plain(obj):
    """JSON-ready copy (numpy scalars -> Python; floats keep every bit through json's repr)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------------
# the scenario's rows in the store
# ---------------------------------------------------------------------------------------------
def scenario_dataset(res: dict, sizes: dict, store_names, cycles: slice = slice(None),
                     snapshots: slice = slice(None)):
    """A scenario result as the variables the store has (``store_names``), with a scenario
    dimension of 1: the per-cycle ones (summaries, life variables) at ``cycles``, the snapshot
    ones at ``snapshots`` (NaN where the result holds no snapshot)."""
    import xarray as xr

    n_snap = len(range(sizes[schema.SNAPSHOT])[snapshots])
    data = {}
    for name, v in schema.VARIABLES.items():
        if name in ("status", "cycles_done") or name not in store_names:
            continue  # absent: a store written before schema.ADDED_SUMMARIES
        if schema.CYCLE in v.dims:
            arr = np.asarray(res["summary"][name])[:, cycles]
        elif n_snap == 0:
            continue  # no snapshot asked for: the fields (tens of MB) are not assembled
        else:
            arr = _snapshot_array(res, name, v, sizes)
            arr = np.take(arr, range(sizes[schema.SNAPSHOT])[snapshots], axis=v.dims.index(
                schema.SNAPSHOT) - 1)
        data[name] = (v.dims, arr[None].astype(v.dtype))
    for name, arr in res.get("life", {}).items():
        if name in store_names:
            v = schema.LIFE_VARIABLES[name]
            data[name] = (v.dims, np.asarray(arr)[:, cycles][None].astype(v.dtype))
    return xr.Dataset(data)


def _snapshot_array(res: dict, name: str, v, sizes: dict) -> np.ndarray:
    shape = tuple(sizes[d] for d in v.dims)[1:]
    arr = np.full(shape, np.nan if np.dtype(v.dtype).kind == "f" else 0, dtype=v.dtype)
    for si, snap in res["snapshots"].items():
        if name == "valid":
            arr[si] = snap["valid"]
        elif name in snap["pack"]:
            arr[si] = snap["pack"][name]
        else:
            arr[:, si] = snap["fields"][name]
    return arr


def write_rows(path: str | os.PathLike, res: dict, first: int, last: int,
               snapshot_cycles: list[int], arrays: dict | None = None) -> dict:
    """Write cycles ``first+1 .. last`` of a running scenario (and their snapshots) into the
    store; the scenario's status is left alone (it is still running). Returns the store's
    arrays: pass them back as ``arrays`` at the next checkpoint of the same run (opening the
    group and its ~60 arrays' metadata cost ~50 CPU-ms, a sixth of a checkpoint).

    Written with Zarr directly (the dataset's values as the final write encodes them: float32
    with NaN fill, uint8): xarray's open and region write cost ~0.1 CPU-s per checkpoint."""
    s = res["scenario"]
    if arrays is None:
        import zarr

        arrays = dict(zarr.open_group(str(path), mode="r+").arrays())
    sizes = {d: n for a in arrays.values() for d, n in zip(a.metadata.dimension_names, a.shape)}
    cycles = slice(first, last)
    snaps = [i for i, c in enumerate(snapshot_cycles) if first < c <= last]
    # snapshot cycles are increasing: the ones in this range are contiguous
    sl = slice(snaps[0], snaps[-1] + 1) if snaps else slice(0, 0)
    ds = scenario_dataset(res, sizes, set(arrays), cycles=cycles, snapshots=sl)
    region = {schema.SCENARIO: slice(s, s + 1), schema.CYCLE: cycles, schema.SNAPSHOT: sl}
    for name, var in ds.data_vars.items():
        if schema.CYCLE in var.dims or (snaps and schema.SNAPSHOT in var.dims):
            arrays[name][tuple(region.get(d, slice(None)) for d in var.dims)] = var.values
    return arrays


def read_rows(path: str | os.PathLike, res: dict, done: int, snapshot_cycles: list[int]) -> None:
    """Fill a scenario result with its first ``done`` cycles (and their snapshots) as stored."""
    import xarray as xr

    s = res["scenario"]
    one = xr.open_zarr(path, consolidated=False).isel({schema.SCENARIO: s})
    for name, arr in res["summary"].items():
        arr[:, :done] = one[name].values[:, :done]
    for name, arr in res["life"].items():
        if name in one.variables:
            arr[:, :done] = one[name][:, :done].values
    snap_vars = [n for n, v in schema.VARIABLES.items() if schema.SNAPSHOT in v.dims]
    for si, c in enumerate(snapshot_cycles):
        if c > done:
            break
        snap = one.isel({schema.SNAPSHOT: si})
        res["snapshots"][si] = {
            "valid": snap["valid"].values,
            "pack": {n: snap[n].values for n in snap_vars
                     if n != "valid" and schema.CELL not in schema.VARIABLES[n].dims},
            "fields": {n: snap[n].values for n in snap_vars
                       if schema.CELL in schema.VARIABLES[n].dims}}
