"""``packtwin ingest LOG... --out STORE``: a measured pack log -> a measured-only Zarr store.

The store follows ``packtwin/schema.py`` (``schema.validate(ds, kind="measured")``): voltage,
current (discharge > 0) and temperature in V, A, K on dims (scenario=1, cell, snapshot=1, time)
with a uniform period, the ``valid`` mask, the pack current (wide form) and pack voltage (when
logged), no hidden variables and no parameter table. Provenance (files and their sha256, format,
units and how they were decided, every repair, every assumption) is in the store attrs.

Reading: :mod:`packtwin.data.ingest_read` (tables), :mod:`packtwin.data.ingest_cycler` (single-cell
cycler files through battery-data-toolkit, extra 'cycler'); units, timestamps, resampling:
:mod:`packtwin.data.ingest_repair`. The output is written to a temporary sibling and renamed; an
existing output is replaced only if it is a previous ingest output and ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

import packtwin
from packtwin import schema
from packtwin.data import ingest_cycler, outputs, store
from packtwin.data.ingest_read import (TEMPERATURE_PATTERN, VOLTAGE_PATTERN, IngestError,
                                       read_log)
from packtwin.data.ingest_repair import (check_current_sign, clean_timeline, convert_units,
                                         resample_point, resample_step, to_seconds, uniform_grid)
from packtwin.errors import debug_enabled, one_line



def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


OUTPUT_KIND = "measured store"  # packtwin.data.outputs kind marking ingest's stores


def check_output(out: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse to write over an input, inside one, or over anything ingest did not write.

    The shared output policy (:func:`packtwin.data.outputs.guard`) decides what may be replaced;
    ingest adds that an existing store is replaced only when ``--overwrite`` asks for it.
    """
    outputs.guard(out, OUTPUT_KIND, inputs)
    if out.exists() and not overwrite:
        raise IngestError(f"output {str(out)!r} exists; pass --overwrite to replace a previous "
                          f"ingest output")


def _median_step(t: np.ndarray, cells: np.ndarray) -> float:
    steps = np.concatenate([np.diff(t[cells == c]) for c in np.unique(cells)])
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 1.0


def build_dataset(paths: Sequence[Path], period_s: float | None = None, fmt: str = "auto",
                  form: str = "auto", columns: Mapping[str, str] | None = None,
                  topology: str | None = None, units: Mapping[str, str] | None = None,
                  capacity_ah: float | None = None, current_sign: str | None = None,
                  max_gap_s: float | None = None, ambient_temperature: float | None = None,
                  cycle: int | None = None, voltage_pattern: str = VOLTAGE_PATTERN,
                  temperature_pattern: str = TEMPERATURE_PATTERN) -> xr.Dataset:
    """The measured-only dataset of a log (in memory); raises IngestError on a bad log.

    ``current_sign`` is the file's: discharge-positive for tables unless declared; for the cycler
    formats the toolkit's convention (charge-positive) unless declared.
    """
    paths = [Path(p) for p in paths]
    units = dict(units or {})
    if fmt in ingest_cycler.FORMATS:
        _refuse_table_options(fmt, form=form != "auto", columns=bool(columns), units=bool(units),
                              topology=topology is not None)
        log = ingest_cycler.read_cycler(paths, fmt, ambient_temperature)
        units = ingest_cycler.toolkit_units()
        current_sign = current_sign or ingest_cycler.CURRENT_SIGN
        log.notes.append(f"units and sign from battery-data-toolkit's RawData schema: {units}, "
                         f"current {ingest_cycler.CURRENT_SIGN} (--current-sign overrides the sign)")
    else:
        log = read_log(paths, fmt, form, dict(columns or {}), topology, voltage_pattern,
                       temperature_pattern)
    current_sign = current_sign or "discharge-positive"
    repairs: list[str] = []
    assumptions = list(log.notes)
    unit_record = convert_units(log, units, capacity_ah, current_sign)
    where = f"log {[str(p) for p in paths]}, column 'time'"
    t_unit = units.get("time")
    log.table["time"], start = to_seconds(log.table["time"], t_unit, where)
    unit_record["time"] = "date-times" if start else f"{t_unit or 's'} ({'declared' if t_unit else 'default'})"
    q = ["voltage", "current", "temperature"]
    table = clean_timeline(log.table, ["cell"], q, where, repairs, "cell samples")
    unit_record["current_sign_check"] = check_current_sign(
        table, f"log {[str(p) for p in paths]}, column 'current'")
    pack = None
    if log.pack is not None:
        log.pack["time"], _ = to_seconds(log.pack["time"], t_unit, where)
        pack = clean_timeline(log.pack, [], [c for c in log.pack if c.startswith("pack_")], where,
                              [], "pack samples")
    for name in q:
        n_nan = int(table[name].isna().sum())
        if n_nan:
            repairs.append(f"{n_nan} missing {name} value(s) (NaN/empty) treated as gaps")
    t, cells = table["time"].to_numpy(float), table["cell"].to_numpy()
    step = _median_step(t, cells)
    if period_s is None:
        period_s = step
        assumptions.append(f"period_s not declared: the log's median sampling step {step:.6g} s")
    if not period_s > 0:
        raise IngestError(f"--period-s must be > 0, got {period_s}")
    if max_gap_s is None:
        max_gap_s = 3.0 * max(period_s, step)
    t0 = float(t.min())
    grid = uniform_grid(t0, float(t.max()), period_s)
    n_cells = log.n_series * log.n_parallel
    arrays = {name: np.full((n_cells, grid.size), np.nan) for name in q}
    for c, sub in table.groupby("cell", sort=True):
        tc = sub["time"].to_numpy(float)
        arrays["voltage"][c] = resample_point(tc, sub["voltage"].to_numpy(float), grid, max_gap_s)
        arrays["temperature"][c] = resample_point(tc, sub["temperature"].to_numpy(float), grid,
                                                  max_gap_s)
        arrays["current"][c] = resample_step(tc, sub["current"].to_numpy(float), grid, period_s,
                                             max_gap_s)
    pack_arrays = {}
    if pack is not None:
        tp = pack["time"].to_numpy(float)
        pack_arrays["pack_current"] = resample_step(tp, pack["pack_current"].to_numpy(float), grid,
                                                    period_s, max_gap_s)
        if "pack_voltage" in pack:
            pack_arrays["pack_voltage"] = resample_point(tp, pack["pack_voltage"].to_numpy(float),
                                                         grid, max_gap_s)
    valid = np.all([np.isfinite(a).all(axis=0) for a in arrays.values()], axis=0)
    n_raw = len(table) // max(n_cells, 1)
    repairs.append(f"resampled about {n_raw} samples per cell to {grid.size} at period "
                   f"{period_s:.6g} s; gaps up to {max_gap_s:.6g} s interpolated")
    if not valid.all():
        repairs.append(f"{int((~valid).sum())} of {grid.size} time steps marked invalid (valid=0): "
                       f"a gap longer than {max_gap_s:.6g} s or no sample for some cell")
    if not valid.any():
        raise IngestError(f"log {[str(p) for p in paths]}: no time step has finite V, I and T for "
                          f"every cell (gaps longer than {max_gap_s:.6g} s everywhere?)")
    if ambient_temperature is None:
        k = int(np.argmax(valid))
        ambient_temperature = float(np.mean(arrays["temperature"][:, k]) - 273.15)
        assumptions.append(f"ambient temperature not declared: the mean cell temperature at the "
                           f"first valid sample, {ambient_temperature:.4g} degC (pack at rest)")
    if cycle is None:
        cycle = 1
        assumptions.append("cycle number not declared: snapshot_cycle = 1")
    return _dataset(log, grid - t0, arrays, pack_arrays, valid, period_s, ambient_temperature,
                    cycle, {"source_files": [{"path": str(p.resolve()), "bytes": p.stat().st_size,
                                              "sha256": _sha256(p)} for p in paths],
                            "source_format": f"{fmt if fmt != 'auto' else paths[0].suffix[1:].lower()}"
                                             f"-{log.form}",
                            "units": unit_record, "repairs": repairs, "assumptions": assumptions,
                            "max_gap_s": float(max_gap_s),
                            "start_time": start if start else float(t0),
                            "cell_labels": [str(c) for c in log.cell_labels]})


def _refuse_table_options(fmt: str, **given: bool) -> None:
    """Options that describe a table's layout mean nothing for a cycler file: say so, not ignore."""
    bad = [f"--{k}" for k, v in given.items() if v]
    if bad:
        raise IngestError(f"--format {fmt}: {', '.join(bad)} not applicable: battery-data-toolkit "
                          f"reads the file's columns, units and layout (one cell)")


def _dataset(log, time, arrays, pack_arrays, valid, period_s, ambient, cycle, prov) -> xr.Dataset:
    n_cells = log.n_series * log.n_parallel
    pos = np.array([schema.cell_position(c, log.n_parallel) for c in range(n_cells)], "int32")

    def coord(name, values):
        c = schema.COORDS[name]
        return xr.Variable(c.dims, np.asarray(values).astype(c.dtype), schema.var_attrs(name))

    coords = {
        schema.SCENARIO: xr.Variable((schema.SCENARIO,), np.zeros(1, "int32"),
                                     {"long_name": schema.DIMS[schema.SCENARIO]}),
        schema.CELL: xr.Variable((schema.CELL,), np.arange(n_cells, dtype="int32"),
                                 {"long_name": schema.DIMS[schema.CELL]}),
        schema.SNAPSHOT: xr.Variable((schema.SNAPSHOT,), np.zeros(1, "int32"),
                                     {"long_name": schema.DIMS[schema.SNAPSHOT]}),
        "ambient_temperature": coord("ambient_temperature", [ambient]),
        "series_index": coord("series_index", pos[:, 0]),
        "parallel_index": coord("parallel_index", pos[:, 1]),
        "snapshot_cycle": coord("snapshot_cycle", [cycle]),
        schema.TIME: coord(schema.TIME, time),
    }
    data = {}
    for name, arr in arrays.items():
        v = schema.VARIABLES[name]
        data[name] = xr.Variable(v.dims, arr[None, :, None, :].astype(v.dtype), schema.var_attrs(name))
    for name, arr in pack_arrays.items():
        v = schema.VARIABLES[name]
        data[name] = xr.Variable(v.dims, arr[None, None, :].astype(v.dtype), schema.var_attrs(name))
    data["valid"] = xr.Variable(schema.VARIABLES["valid"].dims,
                                valid[None, None, :].astype("uint8"), schema.var_attrs("valid"))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({
        "schema_version": schema.SCHEMA_VERSION, "store_kind": "measured",
        "n_series": int(log.n_series), "n_parallel": int(log.n_parallel),
        "period_s": float(period_s), "ingested_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "packtwin_version": packtwin.__version__, "current_convention": schema.CURRENT_CONVENTION,
    })
    ds.attrs.update({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in prov.items()})
    problems = schema.validate(ds, kind="measured")
    if problems:  # a bug here, not in the log: say so rather than write an off-schema store
        raise schema.SchemaError(problems, source="ingested dataset (packtwin bug)")
    return ds.chunk({schema.CELL: 1})


def write(ds: xr.Dataset, out: Path) -> None:
    """Write to a temporary sibling, then swap it into place (a kill keeps the previous output)."""
    with outputs.replace(out, OUTPUT_KIND) as tmp:
        ds.to_zarr(tmp, mode="w-", encoding=store.encoding_for(ds), **store.ZARR_KW)


def ingest(paths: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False,
           **options) -> Path:
    """Ingest ``paths`` into the store ``out``; options as :func:`build_dataset`."""
    paths, out = [Path(p) for p in paths], Path(out)
    check_output(out, paths, overwrite)
    write(build_dataset(paths, **options), out)
    return out


def _pairs(text, what: str) -> dict[str, str]:
    """'a=x,b=y' (CLI) or a mapping (YAML) -> dict."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for item in str(text).split(","):
        if item.strip():
            if "=" not in item:
                raise IngestError(f"--{what}: {item!r} is not of the form name=value")
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="packtwin ingest",
        description="A measured pack log (CSV/Parquet, long or wide form) -> a "
                    "measured-only packtwin store.")
    p.add_argument("logs", nargs="*", help="log file(s); several files are one log, rows merged")
    p.add_argument("--out", help="output store (a new .zarr folder)")
    p.add_argument("--config", help="YAML file with any of these options (underscored names)")
    p.add_argument("--period-s", type=float, help="uniform period of the store [s] "
                                                  "(default: the log's median step)")
    p.add_argument("--format", dest="fmt", default="auto",
                   choices=("auto", "csv", "parquet", *ingest_cycler.FORMATS),
                   help="csv/parquet tables (default by extension) or a single-cell cycler file "
                        "read by battery-data-toolkit (extra 'cycler')")
    p.add_argument("--form", default="auto", choices=("auto", "long", "wide"),
                   help="long: a 'cell' column; wide: one row per time (default: by 'cell' column)")
    p.add_argument("--topology", help="pack topology NsMp, e.g. 12s4p (required for >1 cell)")
    p.add_argument("--columns", help="quantity=column_in_file, comma separated; quantities: time, "
                                     "cell, voltage, current, temperature, pack_current, pack_voltage")
    p.add_argument("--units", help="quantity=unit: voltage=V|mV, current=A|mA, "
                                   "temperature=K|degC, time=s|ms|min|h")
    p.add_argument("--capacity-ah", type=float, help="cell capacity [A.h] (lets A vs mA be inferred)")
    p.add_argument("--current-sign", choices=("discharge-positive", "charge-positive"),
                   help="the file's sign (default: discharge-positive; cycler formats: the "
                        "toolkit's charge-positive)")
    p.add_argument("--max-gap-s", type=float,
                   help="longest gap interpolated [s] (default 3 x max(period, median step))")
    p.add_argument("--ambient-temperature", type=float, help="ambient temperature [degC] (also "
                   "the cell temperature of a cycler file that logs none, e.g. MACCOR)")
    p.add_argument("--cycle", type=int, help="cycle number of the log (default 1)")
    p.add_argument("--voltage-pattern", default=VOLTAGE_PATTERN, help="wide form: regex of "
                   "voltage columns, first group = index")
    p.add_argument("--temperature-pattern", default=TEMPERATURE_PATTERN)
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it is a previous ingest output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.config:
            import yaml

            cfg = yaml.safe_load(Path(args.config).read_text()) or {}
            known = {a.dest for a in p._actions} | {"format"}
            unknown = sorted(set(cfg) - known)
            if unknown:
                raise IngestError(f"config {args.config!r}: unknown key(s) {unknown}; known "
                                  f"{sorted(known - {'help', 'config'})}")
            if "format" in cfg:
                cfg["fmt"] = cfg.pop("format")
            p.set_defaults(**cfg)
            args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
        if not args.logs or not args.out:
            raise IngestError("give at least one log file and --out STORE")
        out = ingest(args.logs, args.out, overwrite=args.overwrite, period_s=args.period_s,
                     fmt=args.fmt, form=args.form, columns=_pairs(args.columns, "columns"),
                     topology=args.topology, units=_pairs(args.units, "units"),
                     capacity_ah=args.capacity_ah, current_sign=args.current_sign,
                     max_gap_s=args.max_gap_s, ambient_temperature=args.ambient_temperature,
                     cycle=args.cycle, voltage_pattern=args.voltage_pattern,
                     temperature_pattern=args.temperature_pattern)
    except (IngestError, OSError) as exc:
        if debug_enabled():
            raise
        print(f"packtwin ingest: error: {one_line(exc)}", file=sys.stderr)
        return 2
    ds = store.open_store(out, kind="measured")
    print(f"wrote {out}: {ds.sizes[schema.CELL]} cells x {ds.sizes[schema.TIME]} samples at "
          f"{ds.attrs['period_s']:g} s, {int(ds['valid'].sum())} valid")
    return 0
