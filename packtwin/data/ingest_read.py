"""Reading a measured pack log into one long table: time, cell, voltage, current, temperature.

Accepted inputs: CSV and Parquet in long form (one row per cell and time) or the usual BMS wide
form (one row per time: per-cell or per-group voltages, per-cell/per-group/per-module
temperatures, one pack current). Single-cell cycler files (Arbin, MACCOR, ...) are read by
battery-data-toolkit in :mod:`packtwin.data.ingest_cycler`.
Values stay in the file's units here; :mod:`packtwin.data.ingest_repair` converts them.

Wide form and parallel cells: a pack current alone cannot say how a parallel group shares it, so
every cell of a group is given ``I_pack / n_parallel`` (series cells carry the string current
exactly). That assumption is written into the store's ``assumptions`` attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from packtwin.errors import PacktwinError

QUANTITIES = ("voltage", "current", "temperature")
LONG_COLUMNS = ("time", "cell") + QUANTITIES
# Default wide-form column patterns (case-insensitive); the first non-empty group is the index.
VOLTAGE_PATTERN = r"^(?:v_?(\d+)|cell_?(\d+)_v(?:oltage)?|u_?(\d+))$"
TEMPERATURE_PATTERN = r"^(?:t_?(\d+)|temp(?:erature)?_?(\d+)|cell_?(\d+)_t(?:emp(?:erature)?)?)$"
PACK_CURRENT_NAMES = ("pack_current", "current", "i_pack", "i")
PACK_VOLTAGE_NAMES = ("pack_voltage", "v_pack")


class IngestError(PacktwinError, ValueError):
    """A log cannot be ingested as given; the message names the file, column and what was expected."""


@dataclass
class Log:
    """A log in long form, file units: ``table`` has LONG_COLUMNS (+ ``file``), ``pack`` (optional)
    has time, pack_current and maybe pack_voltage. ``notes`` are assumptions made while reading."""

    table: pd.DataFrame
    n_series: int
    n_parallel: int
    form: str
    pack: pd.DataFrame | None = None
    cell_labels: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_topology(text: str) -> tuple[int, int]:
    """'12s4p' -> (12, 4)."""
    m = re.fullmatch(r"\s*(\d+)\s*[sS]\s*(\d+)\s*[pP]\s*", str(text))
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise IngestError(f"topology {text!r} is not of the form <N>s<M>p (e.g. 12s4p)")
    return int(m[1]), int(m[2])


def read_table(path: Path, fmt: str = "auto") -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (by extension, or ``fmt`` when declared)."""
    if not path.exists():
        raise IngestError(f"log file {str(path)!r} does not exist")
    suffix = {"csv": ".csv", "parquet": ".parquet"}.get(fmt, path.suffix.lower())
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise IngestError(f"log file {str(path)!r} cannot be read as {suffix[1:]}: {exc}") from exc
    raise IngestError(f"log file {str(path)!r}: unknown extension {suffix!r}; expected .csv or "
                      f".parquet")


def _rename(df: pd.DataFrame, columns: dict[str, str], path: Path) -> pd.DataFrame:
    """Map declared column names (``{quantity: name in file}``) onto packtwin's names."""
    missing = [f"{q}={c!r}" for q, c in columns.items() if c not in df.columns]
    if missing:
        raise IngestError(f"log file {str(path)!r}: declared column(s) {', '.join(missing)} not "
                          f"found; columns are {list(df.columns)}")
    return df.rename(columns={c: q for q, c in columns.items()})


def _require(df: pd.DataFrame, names, path: Path, form: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise IngestError(f"log file {str(path)!r} ({form} form): column(s) {missing} missing; "
                          f"expected {list(names)}, found {list(df.columns)} (declare other names "
                          f"with --columns quantity=name)")


def long_form(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require(df, LONG_COLUMNS, path, "long")
    return df[list(LONG_COLUMNS)].copy()


def _indexed_columns(df: pd.DataFrame, pattern: str) -> list[tuple[int, str]]:
    rx = re.compile(pattern, re.IGNORECASE)
    found = []
    for col in df.columns:
        m = rx.match(str(col))
        if m:
            found.append((int(next(g for g in m.groups() if g is not None)
                              if m.groups() else len(found)), str(col)))
    return sorted(found)


def _find_one(df: pd.DataFrame, names, path: Path, what: str, required: bool) -> str | None:
    lower = {str(c).lower(): str(c) for c in df.columns}
    for n in names:
        if n in lower:
            return lower[n]
    if required:
        raise IngestError(f"log file {str(path)!r} (wide form): no {what} column; expected one of "
                          f"{list(names)} (or --columns {what}=NAME), found {list(df.columns)}")
    return None


def wide_form(df: pd.DataFrame, path: Path, n_series: int, n_parallel: int, voltage_pattern: str,
              temperature_pattern: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Long table and pack table from a wide BMS table, with the mapping notes."""
    _require(df, ("time",), path, "wide")
    n_cells = n_series * n_parallel
    notes: list[str] = []
    vcols = _indexed_columns(df, voltage_pattern)
    tcols = [c for c in _indexed_columns(df, temperature_pattern) if c[1] not in dict(vcols).values()]
    icol = _find_one(df, PACK_CURRENT_NAMES, path, "pack_current", True)
    pvcol = _find_one(df, PACK_VOLTAGE_NAMES, path, "pack_voltage", False)
    # voltages: one per cell, or one per parallel group (parallel cells share their terminals)
    if len(vcols) == n_cells:
        v_of_cell = [vcols[c][1] for c in range(n_cells)]
    elif len(vcols) == n_series and n_parallel > 1:
        v_of_cell = [vcols[c // n_parallel][1] for c in range(n_cells)]
        notes.append("one voltage per parallel group: every cell of a group is given its group's "
                     "voltage (parallel cells share their terminals; interconnect drops ignored)")
    else:
        raise IngestError(f"log file {str(path)!r} (wide form): {len(vcols)} voltage columns match "
                          f"{voltage_pattern!r} ({[c for _, c in vcols]}); a {n_series}s{n_parallel}p "
                          f"pack needs {n_cells} (one per cell) or {n_series} (one per group)")
    # temperatures: per cell, per group, per module of consecutive cells, or one pack sensor
    n_t = len(tcols)
    if n_t == 0 or n_cells % n_t:
        raise IngestError(f"log file {str(path)!r} (wide form): {n_t} temperature columns match "
                          f"{temperature_pattern!r} ({[c for _, c in tcols]}); expected a divisor of "
                          f"{n_cells} cells (per cell, per group, per module, or 1 for the pack)")
    per = n_cells // n_t
    t_of_cell = [tcols[c // per][1] for c in range(n_cells)]
    if per > 1:
        notes.append(f"{n_t} temperature sensor(s) for {n_cells} cells: cells "
                     f"k*{per}..k*{per}+{per - 1} (numbered group by group) read sensor k")
    notes.append(f"wide form: each cell's current is the pack current / {n_parallel} (series cells "
                 "carry the string current; an equal split between parallel cells is assumed, "
                 "since a pack current alone cannot tell how a parallel group shares it)")
    time = df["time"].to_numpy()
    cur = pd.to_numeric(df[icol], errors="coerce").to_numpy(dtype=float) / n_parallel
    parts = [pd.DataFrame({"time": time, "cell": c,
                           "voltage": pd.to_numeric(df[v_of_cell[c]], errors="coerce").to_numpy(float),
                           "current": cur,
                           "temperature": pd.to_numeric(df[t_of_cell[c]], errors="coerce").to_numpy(float)})
             for c in range(n_cells)]
    pack = pd.DataFrame({"time": time,
                         "pack_current": pd.to_numeric(df[icol], errors="coerce").to_numpy(float)})
    if pvcol is not None:
        pack["pack_voltage"] = pd.to_numeric(df[pvcol], errors="coerce").to_numpy(float)
    return pd.concat(parts, ignore_index=True), pack, notes


def read_log(paths: list[Path], fmt: str = "auto", form: str = "auto",
             columns: dict[str, str] | None = None, topology: str | None = None,
             voltage_pattern: str = VOLTAGE_PATTERN,
             temperature_pattern: str = TEMPERATURE_PATTERN) -> Log:
    """All files of one log (rows concatenated; they must share one form and one set of cells)."""
    columns = dict(columns or {})
    if fmt not in ("auto", "csv", "parquet"):
        raise IngestError(f"--format must be auto, csv or parquet, got {fmt!r}")
    frames = []
    for p in paths:
        df = _rename(read_table(p, fmt), columns, p)
        frames.append((p, df))
    forms = {p: (form if form != "auto" else ("long" if "cell" in df.columns else "wide"))
             for p, df in frames}
    if len(set(forms.values())) > 1:
        raise IngestError(f"log files mix forms: {({str(p): f for p, f in forms.items()})}")
    the_form = next(iter(forms.values()))
    if the_form == "long":
        table = pd.concat([long_form(df, p).assign(file=str(p)) for p, df in frames],
                          ignore_index=True)
        labels = sorted(pd.unique(table["cell"]).tolist())
        if topology is None:
            if len(labels) != 1:
                raise IngestError(f"log {[str(p) for p in paths]} holds {len(labels)} cells "
                                  f"({labels[:8]}...): declare the pack's --topology NsMp")
            ns, npar = 1, 1
        else:
            ns, npar = parse_topology(topology)
        if len(labels) != ns * npar:
            raise IngestError(f"log {[str(p) for p in paths]}: column 'cell' holds {len(labels)} "
                              f"distinct cells, a {ns}s{npar}p pack has {ns * npar}")
        table["cell"] = table["cell"].map({lab: i for i, lab in enumerate(labels)})
        notes = [] if ns * npar == 1 else [
            f"cell labels, sorted, are cells 0..{len(labels) - 1} (attrs['cell_labels']), numbered group by group "
            f"(cell k: series group k // {npar}, parallel position k % {npar})"]
        return Log(table, ns, npar, "long", cell_labels=labels, notes=notes)
    if topology is None:
        raise IngestError(f"log {[str(p) for p in paths]} is in wide form: declare the pack's "
                          f"--topology NsMp (each cell's current is derived from it)")
    ns, npar = parse_topology(topology)
    tables, packs, notes = [], [], []
    for p, df in frames:
        t, pk, notes = wide_form(df, p, ns, npar, voltage_pattern, temperature_pattern)
        tables.append(t.assign(file=str(p)))
        packs.append(pk.assign(file=str(p)))
    return Log(pd.concat(tables, ignore_index=True), ns, npar, "wide",
               pack=pd.concat(packs, ignore_index=True), cell_labels=list(range(ns * npar)),
               notes=notes)


def numeric_range(values: np.ndarray) -> tuple[float, float] | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else None
