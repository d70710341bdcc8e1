"""``packtwin ingest --format arbin|maccor|batterydata|battdat-*``: cycler files written here in each
format come back, through battery-data-toolkit and the real CLI, as one cell's V/I/T with
packtwin's units and sign (discharge > 0), the file's period and the provenance attrs.

The toolkit is the extra 'cycler', which scripts/bootstrap.sh installs (``.[all]``), so CI runs
these tests; the skip only spares a machine installed without the extra.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packtwin.cli import main as cli_main
from packtwin.data import store

battdat = pytest.importorskip("battdat", reason="extra 'cycler' (battery-data-toolkit) not installed")

PERIOD = 6.0  # s; 0.1 min, so MACCOR's minutes are exact
T_DEGC = 25.0


def profile() -> pd.DataFrame:
    """One cell, charge > 0 like the toolkit: rest, 4 discharge pulses of 2 A, then a 1 A charge.

    The voltage drops 50 mOhm x discharge current (the ohmic jump ingest's sign check reads) and
    sags slowly with the charge passed, so a reversed sign would be caught.
    """
    segments = [(5, 0.0)] + [(5, -2.0), (5, 0.0)] * 4 + [(10, 1.0)]
    i_charge = np.concatenate([np.full(n, a) for n, a in segments])
    t = np.arange(i_charge.size) * PERIOD
    q_dis = np.cumsum(-i_charge) * PERIOD / 3600.0
    v = 3.8 + 0.05 * i_charge - 0.02 * q_dis
    temp = T_DEGC + 0.01 * np.arange(t.size)
    return pd.DataFrame({"t": t, "i": i_charge, "v": v, "temp": temp})


def write_arbin(p: pd.DataFrame, path: Path, drop: str | None = None) -> Path:
    df = pd.DataFrame({"Data_Point": np.arange(len(p)) + 1, "DateTime": 1.6e9 + p["t"],
                       "Cycle_Index": 1, "Step_Index": 1, "Current": p["i"], "Voltage": p["v"],
                       "Temperature": p["temp"], "Internal_Resistance": 0.05})
    df.drop(columns=[drop] if drop else []).to_csv(path, index=False)
    return path


def write_maccor(p: pd.DataFrame, path: Path) -> Path:
    """MACCOR ASCII: one header line, tab-separated columns; Amps >= 0 with State C/D/R."""
    state = np.where(p["i"] > 0, "C", np.where(p["i"] < 0, "D", "R"))
    minutes = p["t"] / 60.0
    df = pd.DataFrame({"Rec#": np.arange(len(p)) + 1, "Cyc#": 0, "Step": 1, "Test (Min)": minutes,
                       "Step (Min)": minutes, "Amp-hr": 0.0, "Watt-hr": 0.0,
                       "Amps": np.abs(p["i"]), "Volts": p["v"], "State": state, "ES": 0,
                       "DPt Time": "03/31/2016 16:05:31"})
    with open(path, "w", encoding="ISO-8859-1") as f:
        f.write("Today's Date 04/04/2016  Date of Test:\t03/31/2016\t Filename:\ttest.001\n")
        df.to_csv(f, sep="\t", index=False)
    return path


def write_batterydata(p: pd.DataFrame, path: Path) -> Path:
    df = pd.DataFrame({"Cycle_Index": 1, "Step": 1, "Time_s": p["t"], "Current_A": p["i"],
                       "Voltage_V": p["v"], "Cell_Temperature_C": p["temp"],
                       "Datenum_d": 737792.44 + p["t"] / 86400.0})
    df.to_csv(path, index=False)
    return path


def _battdat_dataset(p: pd.DataFrame):
    from battdat.data import BatteryDataset

    raw = pd.DataFrame({"cycle_number": 0, "test_time": p["t"], "current": p["i"],
                        "voltage": p["v"], "temperature": p["temp"]})
    return BatteryDataset.make_cell_dataset(raw_data=raw, metadata={"name": "cell-A"})


def write_hdf5(p: pd.DataFrame, path: Path) -> Path:
    from battdat.io.hdf import HDF5Writer

    HDF5Writer().export(_battdat_dataset(p), path)
    return path


def write_parquet(p: pd.DataFrame, path: Path) -> Path:
    from battdat.io.parquet import ParquetWriter

    ParquetWriter().export(_battdat_dataset(p), path)
    return path / "raw_data.parquet"


FORMATS = {  # --format -> (file name, writer, extra CLI options)
    "arbin": ("cell.csv", write_arbin, []),
    "maccor": ("cell.001", write_maccor, ["--ambient-temperature", str(T_DEGC)]),
    "batterydata": ("cell-raw.csv", write_batterydata, []),
    "battdat-hdf5": ("cell.h5", write_hdf5, []),
    "battdat-parquet": ("cell_parquet", write_parquet, []),
}


def ingest_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = cli_main(["ingest", *args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_cycler_file_becomes_one_cell_with_packtwin_units_and_sign(fmt, tmp_path, capsys):
    p = profile()
    name, writer, extra = FORMATS[fmt]
    log = writer(p, tmp_path / name)
    out = tmp_path / "cell.zarr"
    rc, err = ingest_cli([str(log), "--format", fmt, "--out", str(out), *extra], capsys)
    assert rc == 0, err
    ds = store.open_store(out, kind="measured").load()
    assert (ds.sizes["cell"], ds.sizes["time"]) == (1, len(p))
    assert ds.attrs["period_s"] == pytest.approx(PERIOD)
    np.testing.assert_allclose(ds["time"].values, p["t"], atol=1e-6)
    assert ds["valid"].values.all()
    v, i, temp = (ds[q].values[0, 0, 0] for q in ("voltage", "current", "temperature"))
    np.testing.assert_allclose(v, p["v"], atol=1e-5)
    # the toolkit's charge > 0 becomes packtwin's discharge > 0: the 2 A pulses are +2 A
    np.testing.assert_allclose(i, -p["i"], atol=1e-5)
    assert i.max() == pytest.approx(2.0, abs=1e-5)
    want_t = np.full(len(p), T_DEGC) if fmt == "maccor" else p["temp"]  # MACCOR logs no temperature
    np.testing.assert_allclose(temp, want_t + 273.15, atol=1e-4)
    assert [ds[q].attrs["units"] for q in ("voltage", "current", "temperature")] == ["V", "A", "K"]
    assert ds.attrs["source_format"] == f"{fmt}-cycler"
    units = json.loads(ds.attrs["units"])
    assert units["current_sign"].startswith("charge-positive in the file")
    assert units["temperature"].startswith("degC")
    n_steps = int((np.abs(np.diff(p["i"])) > 0.1 * 2.0).sum())  # every step agrees with the sign
    assert units["current_sign_check"].startswith(f"{n_steps} of {n_steps} large current steps")
    src = json.loads(ds.attrs["source_files"])
    assert src[0]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    notes = json.loads(ds.attrs["assumptions"])
    assert any("battery-data-toolkit" in n and "Reader" in n for n in notes)
    if fmt == "maccor":
        assert any("ambient 25 degC" in n for n in notes)


def test_several_files_are_one_test_in_order(tmp_path, capsys):
    """Two Arbin files split from one test come back as the one-file store, times included."""
    p = profile()
    first = write_arbin(p.iloc[:30], tmp_path / "part1.csv")
    second = write_arbin(p.iloc[30:].reset_index(drop=True), tmp_path / "part2.csv")
    whole = write_arbin(p, tmp_path / "whole.csv")
    stores = []
    for name, logs in (("split", [first, second]), ("whole", [whole])):
        out = tmp_path / f"{name}.zarr"
        rc, err = ingest_cli([*map(str, logs), "--format", "arbin", "--out", str(out)], capsys)
        assert rc == 0, err
        stores.append(store.open_store(out, kind="measured").load())
    split, one = stores
    np.testing.assert_array_equal(split["time"].values, one["time"].values)
    for q in ("voltage", "current", "temperature"):
        np.testing.assert_array_equal(split[q].values, one[q].values)
    assert any("2 files joined" in n for n in json.loads(split.attrs["assumptions"]))


def test_declaring_the_opposite_sign_is_stopped_by_the_ohmic_check(tmp_path, capsys):
    log = write_arbin(profile(), tmp_path / "cell.csv")
    rc, err = ingest_cli([str(log), "--format", "arbin", "--out", str(tmp_path / "o.zarr"),
                          "--current-sign", "discharge-positive"], capsys)
    assert rc == 2 and "current sign looks reversed" in err and "cell.csv" in err
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("case, args, expected", [
    ("missing column", ["--format", "arbin"], ["cell.csv", "'Voltage' missing", "Arbin CSV"]),
    ("no temperature", ["--format", "maccor"], ["cell.001", "no cell temperature",
                                                "--ambient-temperature"]),
    ("table option", ["--format", "arbin", "--topology", "2s1p"], ["--topology", "not applicable"]),
    ("wrong format", ["--format", "batterydata"], ["cell.csv", "cannot be read", "-raw.csv"]),
])
def test_a_bad_cycler_file_is_named(case, args, expected, tmp_path, capsys):
    p = profile()
    if case == "no temperature":
        log = write_maccor(p, tmp_path / "cell.001")
    else:
        log = write_arbin(p, tmp_path / "cell.csv", drop="Voltage" if case == "missing column" else None)
    rc, err = ingest_cli([str(log), "--out", str(tmp_path / "o.zarr"), *args], capsys)
    assert rc == 2
    for text in expected:
        assert text in err, (case, err)


def test_missing_extra_names_the_extra_and_the_pip_command(tmp_path, capsys, monkeypatch):
    log = write_arbin(profile(), tmp_path / "cell.csv")
    monkeypatch.setitem(sys.modules, "battdat", None)  # import battdat now raises ImportError
    rc, err = ingest_cli([str(log), "--format", "arbin", "--out", str(tmp_path / "o.zarr")], capsys)
    assert rc == 2
    assert "optional extra 'cycler'" in err and "pip install 'packtwin[cycler]'" in err
