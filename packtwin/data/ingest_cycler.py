"""Single-cell cycler files read by battery-data-toolkit (``battdat``), the optional extra ``cycler``.

Parsing is the toolkit's: its readers turn an Arbin CSV, a MACCOR ASCII export (``.001``...), a
batterydata.energy.gov ``<cell>-raw.csv`` or the toolkit's own HDF5/Parquet datasets into its
``raw_data`` table (test_time, voltage, current, temperature, cycle_number, ...). This module only
maps that table onto ingest's long form (one cell) and states its units and sign, which are taken
from the toolkit's ``RawData`` schema (today s, V, A, C; current > 0 while *charging*, the opposite
of packtwin's discharge > 0, so ingest reads it as ``--current-sign charge-positive``).

Several files of one format are one test, in the order given; the toolkit offsets their cycle
numbers and times. The store holds one snapshot: the cycler's cycle numbers are kept in the notes.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from packtwin.data.ingest_read import IngestError, Log

EXTRA_HINT = "pip install 'packtwin[cycler]' (or: pip install battery-data-toolkit)"
# --format name -> (toolkit module, reader class, what the reader expects)
FORMATS = {
    "arbin": ("battdat.io.arbin", "ArbinReader", "an Arbin CSV export"),
    "maccor": ("battdat.io.maccor", "MACCORReader",
               "a MACCOR tab-separated ASCII export (one header line, then the column names)"),
    "batterydata": ("battdat.io.batterydata", "BDReader",
                    "a batterydata.energy.gov '<cell>-raw.csv' (and optional '<cell>-summary.csv')"),
    "battdat-hdf5": ("battdat.io.hdf", "HDF5Reader", "an HDF5 file written by battery-data-toolkit"),
    "battdat-parquet": ("battdat.io.parquet", "ParquetReader",
                        "a raw_data.parquet written by battery-data-toolkit"),
}
# toolkit unit name -> packtwin unit name (ingest_repair.TO_STORED)
_UNITS = {"s": "s", "V": "V", "A": "A", "C": "degC", "K": "K", "mV": "mV", "mA": "mA"}
_QUANTITIES = {"time": "test_time", "voltage": "voltage", "current": "current",
               "temperature": "temperature"}
CURRENT_SIGN = "charge-positive"  # battdat RawData.current: "Positive current represents the battery charging"


def _battdat():
    """The toolkit, or a clear error naming the extra to install."""
    try:
        return importlib.import_module("battdat")
    except ImportError as exc:
        raise IngestError(f"the cycler formats ({', '.join(FORMATS)}) are read by "
                          f"battery-data-toolkit, the optional extra 'cycler', which is not "
                          f"installed: {EXTRA_HINT}") from exc


def toolkit_units() -> dict[str, str]:
    """Units of the toolkit's raw_data columns, from its own schema, as packtwin unit names."""
    from battdat.schemas.column import RawData

    schema, units = RawData(), {}
    for q, col in _QUANTITIES.items():
        unit = schema[col].units
        if unit not in _UNITS:  # a toolkit release that changed its units: stop, do not guess
            raise IngestError(f"battery-data-toolkit declares {col!r} in {unit!r}, which packtwin "
                              f"does not know; expected one of {sorted(_UNITS)}")
        units[q] = _UNITS[unit]
    return units


@contextlib.contextmanager
def _without_method_tagging(module) -> Iterator[None]:
    """Run a reader with its control-method tagging replaced by 'other'.

    battery-data-toolkit 0.4.6's ``AddMethod`` normalises ``groupby(...)[col].values`` in place,
    which pandas 3 (copy-on-write) hands out read-only: the Arbin and MACCOR readers then fail
    after parsing. The tags it would add (``method``, ``substep_index``) are not used by packtwin,
    so only this step is skipped; the column mapping, sign and unit handling stay the toolkit's.
    """
    from battdat.postprocess.tagging import AddMethod
    from battdat.schemas.column import ControlMethod

    class _Untagged(AddMethod):
        def enhance(self, df: pd.DataFrame):
            df["method"] = ControlMethod.other
            return df[["method"]]

    original = getattr(module, "AddMethod", None)
    module.AddMethod = _Untagged
    try:
        yield
    finally:
        module.AddMethod = original


def _read(fmt: str, paths: Sequence[Path]):
    """The toolkit's dataset for ``paths`` and the notes on how it was read."""
    mod_name, cls_name, _ = FORMATS[fmt]
    module = importlib.import_module(mod_name)
    reader = getattr(module, cls_name)()
    args = str(paths[0]) if fmt == "battdat-hdf5" else [str(p) for p in paths]
    notes = [f"read by battery-data-toolkit {_battdat().__version__} {mod_name}.{cls_name}"]
    try:
        return reader.read_dataset(args), notes
    except ValueError as exc:
        if "read-only" not in str(exc) or not hasattr(module, "AddMethod"):
            raise
    with _without_method_tagging(module):
        dataset = reader.read_dataset(args)
    notes.append("the toolkit's control-method tagging (AddMethod) was skipped: it fails on "
                 "pandas 3 read-only arrays; its 'method'/'substep_index' columns are not used")
    return dataset, notes


def _fail(fmt: str, paths: Sequence[Path], exc: Exception) -> IngestError:
    """A toolkit failure as a message naming the file, the format and what was missing."""
    what = FORMATS[fmt][2]
    culprit = list(paths)
    if len(paths) > 1:  # name the first file that fails on its own
        for p in paths:
            try:
                _read(fmt, [p])
            except Exception:  # the toolkit raises many types for a file not in its format
                culprit = [p]
                break
    files = [str(p) for p in culprit]
    if isinstance(exc, KeyError):
        return IngestError(f"{fmt} file(s) {files}: column {exc.args[0]!r} missing; expected "
                           f"{what}, as battery-data-toolkit reads it")
    return IngestError(f"{fmt} file(s) {files} cannot be read as {what}; battery-data-toolkit "
                       f"says {type(exc).__name__}: {exc}")


def _space_files(t: np.ndarray, file_number: np.ndarray, notes: list[str]) -> np.ndarray:
    """Later files one sampling step after the previous file's end, not on it.

    The toolkit starts file k+1's test_time at file k's last time, so their boundary samples
    would share a timestamp (a clash ingest refuses, or a sample dropped as a duplicate). The
    real pause between files is not in what its readers keep; one median step is assumed.
    """
    steps = np.concatenate([np.diff(t[file_number == k]) for k in np.unique(file_number)])
    steps = steps[steps > 0]
    step = float(np.median(steps)) if steps.size else 1.0
    rank = np.searchsorted(np.unique(file_number), file_number)
    notes.append(f"{rank.max() + 1} files joined end to start by the toolkit; each later file "
                 f"is placed one median sampling step ({step:.6g} s) after the previous one ends "
                 f"(the pause between files is not in the data the toolkit reads)")
    return t + rank * step


def read_cycler(paths: Sequence[Path], fmt: str, ambient_temperature: float | None = None) -> Log:
    """One cell's cycler test (all ``paths``) as ingest's long form, in the toolkit's units."""
    if fmt not in FORMATS:
        raise IngestError(f"unknown cycler format {fmt!r}; expected one of {list(FORMATS)}")
    _battdat()
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise IngestError(f"{fmt} file {str(p)!r} does not exist")
    if fmt == "battdat-hdf5" and len(paths) > 1:
        raise IngestError(f"battdat-hdf5: give one HDF5 file, got {len(paths)}")
    try:
        dataset, notes = _read(fmt, paths)
    except Exception as exc:  # the toolkit raises KeyError/ValueError/ParserError/... on bad files
        raise _fail(fmt, paths, exc) from exc
    raw = dataset.tables.get("raw_data")
    files = [str(p) for p in paths]
    if raw is None or raw.empty:
        raise IngestError(f"{fmt} file(s) {files}: battery-data-toolkit found no time series "
                          f"(raw_data); expected {FORMATS[fmt][2]}")
    for q in ("time", "voltage", "current"):
        if _QUANTITIES[q] not in raw:
            raise IngestError(f"{fmt} file(s) {files}: the toolkit's raw_data has no "
                              f"{_QUANTITIES[q]!r} column; found {list(raw.columns)}")
    table = pd.DataFrame({q: raw[col].to_numpy() for q, col in _QUANTITIES.items() if col in raw})
    if len(paths) > 1 and "file_number" in raw:
        table["time"] = _space_files(table["time"].to_numpy(float), raw["file_number"].to_numpy(),
                                     notes)
    if "temperature" not in table or table["temperature"].isna().all():
        if ambient_temperature is None:
            raise IngestError(f"{fmt} file(s) {files} hold no cell temperature (the toolkit's "
                              f"raw_data has no 'temperature'); declare --ambient-temperature "
                              f"DEGC and the cell is taken to stay at it")
        offset = 273.15 if toolkit_units()["temperature"] == "K" else 0.0
        table["temperature"] = float(ambient_temperature) + offset
        notes.append(f"no cell temperature in the file: the cell is taken to stay at the declared "
                     f"ambient {ambient_temperature:g} degC")
    table.insert(1, "cell", 0)
    table["file"] = ", ".join(files)
    if "cycle_number" in raw:
        cyc = raw["cycle_number"].to_numpy()
        notes.append(f"cycler cycle_number {int(np.nanmin(cyc))}..{int(np.nanmax(cyc))} (toolkit, "
                     f"from 0) all in one snapshot")
    name = getattr(dataset.metadata, "name", None) or paths[0].stem
    return Log(table, 1, 1, "cycler", cell_labels=[str(name)], notes=notes)
