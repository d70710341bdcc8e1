"""``packtwin ingest``: logs written by the tests from a simulated store come back as the same V/I/T,
and every bad-log case gets its documented repair or a message naming file, column and values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from packtwin import schema
from packtwin.cli import main as cli_main
from packtwin.data import ingest, store
from packtwin.data.ingest_read import IngestError
from packtwin.data.outputs import OutputError
from packtwin.data.ingest_repair import resample_step

Q = ["voltage", "current", "temperature"]


@pytest.fixture(scope="module")
def sim(synthetic_store):
    return store.open_store(synthetic_store).load()


def sim_cycle(ds, scenario: int = 0, snapshot: int = 0):
    """Valid samples of one (scenario, snapshot): time [n_t], {q: [cell, n_t]}."""
    sub = ds.isel(scenario=scenario, snapshot=snapshot)
    valid = sub["valid"].values.astype(bool)
    return sub["time"].values[valid], {q: sub[q].values[:, valid] for q in Q}, sub


def long_log(ds, scenario=0, snapshot=0) -> pd.DataFrame:
    time, vals, _ = sim_cycle(ds, scenario, snapshot)
    n_cells = vals["voltage"].shape[0]
    return pd.DataFrame({"time": np.tile(time, n_cells), "cell": np.repeat(np.arange(n_cells), time.size),
                         **{q: vals[q].reshape(-1).astype(np.float64) for q in Q}})


def wide_log(ds, scenario=0, snapshot=0) -> pd.DataFrame:
    time, vals, sub = sim_cycle(ds, scenario, snapshot)
    cols = {"time": time, "pack_current": sub["pack_current"].values[sub["valid"].values.astype(bool)]}
    for c in range(vals["voltage"].shape[0]):  # BMS numbering starts at 1
        cols[f"V_{c + 1}"] = vals["voltage"][c]
        cols[f"T_{c + 1}"] = vals["temperature"][c]
    return pd.DataFrame(cols)


SIM_OPTS = dict(topology="2s2p", units={"voltage": "V", "current": "A", "temperature": "K"})


def assert_same_vit(ds, out, scenario=0):
    """The ingested store holds the simulated V/I/T on the same cells and times."""
    time, vals, sub = sim_cycle(ds, scenario)
    assert schema.validate(out, kind="measured") == []
    np.testing.assert_allclose(out["time"].values, time - time[0], rtol=0, atol=1e-9)
    assert out.attrs["period_s"] == pytest.approx(ds.attrs["period_s"])
    np.testing.assert_array_equal(out["series_index"].values, sub["series_index"].values)
    np.testing.assert_array_equal(out["parallel_index"].values, sub["parallel_index"].values)
    assert out["valid"].values.all()
    for q in Q:
        np.testing.assert_allclose(out[q].values[0, :, 0], vals[q], rtol=1e-6, atol=1e-6, err_msg=q)
        assert out[q].attrs["units"] == schema.units(q)


def test_long_csv_from_simulated_store_round_trips_through_the_cli(sim, tmp_path):
    log = tmp_path / "pack_log.csv"
    long_log(sim).to_csv(log, index=False)
    out = tmp_path / "measured.zarr"
    rc = cli_main(["ingest", str(log), "--out", str(out), "--topology", "2s2p",
                   "--period-s", str(sim.attrs["period_s"]),
                   "--units", "voltage=V,current=A,temperature=K"])
    assert rc == 0
    ds = store.open_store(out, kind="measured")
    assert_same_vit(sim, ds)
    assert not any(n in ds.variables for n in schema.HIDDEN)
    files = json.loads(ds.attrs["source_files"])
    assert files[0]["path"] == str(log.resolve()) and len(files[0]["sha256"]) == 64
    assert ds.attrs["source_format"] == "csv-long"
    assert json.loads(ds.attrs["units"])["voltage"] == "V (declared)"
    # ambient was not declared: inferred from the first sample and said so
    assert any("ambient temperature not declared" in a for a in json.loads(ds.attrs["assumptions"]))


def test_wide_csv_derives_cell_currents_from_the_pack_current(sim, tmp_path):
    log = tmp_path / "bms.csv"
    wide_log(sim).to_csv(log, index=False)
    out = ingest.ingest([log], tmp_path / "w.zarr", period_s=sim.attrs["period_s"], **SIM_OPTS)
    ds = store.open_store(out, kind="measured").load()
    assert_same_vit(sim, ds)  # synthetic cells carry I_pack / n_parallel, as the split assumes
    np.testing.assert_allclose(ds["pack_current"].values[0, 0],
                               sim_cycle(sim)[2]["pack_current"].values[:ds.sizes["time"]], rtol=1e-6)
    assert any("equal split" in a for a in json.loads(ds.attrs["assumptions"]))


def test_wide_form_with_group_voltages_and_one_pack_sensor(sim, tmp_path):
    df = wide_log(sim)
    df = df.drop(columns=["V_2", "V_4", "T_2", "T_3", "T_4"]).rename(columns={"V_3": "V_2"})
    log = tmp_path / "bms.csv"
    df.to_csv(log, index=False)
    ds = ingest.build_dataset([log], period_s=sim.attrs["period_s"], **SIM_OPTS)
    v = ds["voltage"].values[0, :, 0]
    np.testing.assert_array_equal(v[0], v[1])  # a parallel group shares its voltage
    np.testing.assert_array_equal(ds["temperature"].values[0, 3, 0], ds["temperature"].values[0, 0, 0])
    notes = " ".join(json.loads(ds.attrs["assumptions"]))
    assert "one voltage per parallel group" in notes and "read sensor k" in notes


def test_parquet_long_round_trip_with_inferred_units(sim, tmp_path):
    df = long_log(sim)
    df["voltage"] *= 1000.0  # mV, inferred
    df["temperature"] -= 273.15  # degC, inferred
    log = tmp_path / "log.parquet"
    df.to_parquet(log)
    ds = ingest.build_dataset([log], period_s=sim.attrs["period_s"], topology="2s2p",
                              capacity_ah=5.0)
    assert_same_vit(sim, ds)
    u = json.loads(ds.attrs["units"])
    assert u["voltage"] == "mV (inferred)" and u["temperature"] == "degC (inferred)"
    assert u["current"] == "A (inferred)" and ds.attrs["source_format"] == "parquet-long"


def test_resampling_preserves_the_charge_passed():
    t = np.arange(0.0, 100.0 + 1e-9, 1.0)
    i = np.where(t < 37.5, 2.0, -1.0) + 0.1 * np.sin(t)
    grid = np.arange(0.0, 100.0 + 1e-9, 10.0)
    out = resample_step(t, i, grid, 10.0, 30.0)
    q_raw = np.sum(i[1:] * np.diff(t))  # the stores' convention: i[k] over (t[k-1], t[k]]
    q_new = np.sum(out[1:] * np.diff(grid))
    assert q_new == pytest.approx(q_raw, rel=1e-12)
    assert out[0] == i[0]


def _mutate(kind):
    """(mutation of the base long log, expected) for the table-driven bad-log cases."""
    def drop_times(df, idx):
        times = np.unique(df["time"])[idx]
        return df[~df["time"].isin(times)]
    cases = {
        "out_of_order": (lambda df: df.sample(frac=1.0, random_state=1), ("repair", "out-of-order")),
        "exact_duplicates": (lambda df: pd.concat([df, df.iloc[5:9]]), ("repair", "4 exact duplicate")),
        "nan_value": (lambda df: df.assign(voltage=df["voltage"].where(df.index != 10)),
                      ("repair", "1 missing voltage")),
        "short_gap": (lambda df: drop_times(df, [7]), ("repair", "gaps up to")),
        "long_gap": (lambda df: drop_times(df, list(range(5, 15))), ("invalid", "marked invalid")),
        "missing_time_stamp": (lambda df: df.assign(time=df["time"].where(df.index != 3)),
                               ("repair", "without a timestamp")),
        "conflicting_duplicate": (lambda df: pd.concat([df, df.iloc[[4]].assign(voltage=3.0)]),
                                  ("error", "share a timestamp with different values")),
        "missing_column": (lambda df: df.drop(columns=["temperature"]),
                           ("error", "column(s) ['temperature'] missing")),
        "unit_mismatch": (lambda df: df, ("error", "declared unit 'degC'", "look like 'K'",
                                          "'temperature'")),
        "non_numeric": (lambda df: df.astype({"current": object}).assign(
            current=lambda d: d["current"].where(d.index != 2, "0.5A")),
            ("error", "non-numeric", "'0.5A'", "'current'")),
        "current_unit_undeclared": (lambda df: df, ("error", "cannot be inferred", "--units current")),
    }
    return cases[kind]


BAD_CASES = ["out_of_order", "exact_duplicates", "nan_value", "short_gap", "long_gap",
             "missing_time_stamp", "conflicting_duplicate", "missing_column", "unit_mismatch",
             "non_numeric", "current_unit_undeclared"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_log_is_repaired_or_named(sim, tmp_path, case):
    mutate, expected = _mutate(case)
    log = tmp_path / f"{case}.csv"
    mutate(long_log(sim)).to_csv(log, index=False)
    units = dict(SIM_OPTS["units"])
    if case == "unit_mismatch":
        units["temperature"] = "degC"
    if case == "current_unit_undeclared":
        del units["current"]
    opts = dict(period_s=sim.attrs["period_s"], topology="2s2p", units=units)
    if expected[0] == "error":
        with pytest.raises(IngestError) as err:
            ingest.build_dataset([log], **opts)
        for part in expected[1:] + (str(log),):
            assert part in str(err.value), (part, str(err.value))
        return
    ds = ingest.build_dataset([log], **opts)
    repairs = " ".join(json.loads(ds.attrs["repairs"]))
    assert expected[1] in repairs, repairs
    assert schema.validate(ds, kind="measured") == []
    if expected[0] == "invalid":
        valid = ds["valid"].values[0, 0].astype(bool)
        # samples 5..14 are gone: the 11-step hole is longer than 3 steps, so it is not invented
        assert not valid[5:15].any() and valid[:5].all() and valid[15:].all()
        assert np.isnan(ds["voltage"].values[0, :, 0, 5:15]).all()
        return
    assert_same_vit(sim, ds) if case != "nan_value" else None
    if case == "nan_value":  # linear interpolation of a smooth synthetic voltage: close, not equal
        time, vals, _ = sim_cycle(sim)
        np.testing.assert_allclose(ds["voltage"].values[0, :, 0], vals["voltage"], atol=2e-2)
        assert ds["valid"].values.all()


def test_several_files_are_one_log(sim, tmp_path):
    df = long_log(sim)
    cut = np.unique(df["time"])[20]
    later, earlier = tmp_path / "b_part1.csv", tmp_path / "a_part2.csv"
    df[df["time"] < cut].to_csv(later, index=False)
    df[df["time"] >= cut].to_csv(earlier, index=False)
    ds = ingest.build_dataset([earlier, later], period_s=sim.attrs["period_s"], **SIM_OPTS)
    assert_same_vit(sim, ds)
    assert len(json.loads(ds.attrs["source_files"])) == 2


def test_current_sign_is_checked_and_can_be_declared(sim, tmp_path):
    df = long_log(sim, scenario=2)  # pulses: many current steps with their ohmic voltage jumps
    df["current"] = -df["current"]  # a file that counts charge as positive
    log = tmp_path / "charge_positive.csv"
    df.to_csv(log, index=False)
    opts = dict(period_s=sim.attrs["period_s"], **SIM_OPTS)
    with pytest.raises(IngestError, match="current sign looks reversed") as err:
        ingest.build_dataset([log], **opts)
    assert str(log) in str(err.value) and "--current-sign charge-positive" in str(err.value)
    ds = ingest.build_dataset([log], current_sign="charge-positive", **opts)
    assert_same_vit(sim, ds, scenario=2)
    assert json.loads(ds.attrs["units"])["current_sign"].startswith("charge-positive in the file")


def test_the_twin_reads_ingested_and_simulated_stores_the_same(sim, tmp_path):
    """Input features (V, I, T, charge passed, ambient, time, cycle) of the ingested log equal
    those of the simulated store it was written from."""
    from packtwin.data.splits import Selection
    from packtwin.data.windows import measured_features

    log = tmp_path / "bms.csv"
    wide_log(sim).to_csv(log, index=False)
    sub = sim.isel(scenario=0, snapshot=0)
    ds = ingest.build_dataset([log], period_s=sim.attrs["period_s"], **SIM_OPTS,
                              ambient_temperature=float(sub["ambient_temperature"]),
                              cycle=int(sub["snapshot_cycle"]))
    cells = np.arange(sim.sizes["cell"])
    f_sim, v_sim = measured_features(sim, Selection(np.array([0]), cells, np.array([0])))
    f_in, v_in = measured_features(ds, Selection(np.array([0]), cells, np.array([0])))
    n = f_in.shape[1]
    assert v_in.all() and v_sim[:, :n].all() and not v_sim[:, n:].any()
    np.testing.assert_allclose(f_in, f_sim[:, :n], rtol=1e-6, atol=1e-6)


def test_dates_as_timestamps(sim, tmp_path):
    df = long_log(sim)
    df["time"] = pd.Timestamp("2026-01-02T03:04:05Z") + pd.to_timedelta(df["time"], unit="s")
    log = tmp_path / "dated.csv"
    df.to_csv(log, index=False)
    ds = ingest.build_dataset([log], period_s=sim.attrs["period_s"], **SIM_OPTS)
    assert_same_vit(sim, ds)
    assert ds.attrs["start_time"].startswith("2026-01-02T03:04:05")


def test_output_policy(sim, tmp_path):
    log = tmp_path / "log.csv"
    long_log(sim).to_csv(log, index=False)
    opts = dict(period_s=sim.attrs["period_s"], **SIM_OPTS)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a packtwin measured store output"):
        ingest.ingest([log], foreign, overwrite=True, **opts)
    assert (foreign / "keep.txt").read_text() == "mine"
    with pytest.raises(OutputError, match="is the input"):
        ingest.ingest([log], log, overwrite=True, **opts)
    out = ingest.ingest([log], tmp_path / "m.zarr", **opts)
    first = store.read_attrs(out)["ingested_at"]
    with pytest.raises(IngestError, match="pass --overwrite"):
        ingest.ingest([log], out, **opts)
    ingest.ingest([log], out, overwrite=True, **opts)
    assert store.read_attrs(out)["ingested_at"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "log.csv", "m.zarr"]


def test_cli_reads_options_from_yaml(sim, tmp_path):
    log = tmp_path / "bms.csv"
    wide_log(sim).rename(columns={"pack_current": "I_batt"}).to_csv(log, index=False)
    cfg = tmp_path / "ingest.yaml"
    cfg.write_text(f"topology: 2s2p\nperiod_s: {sim.attrs['period_s']!r}\ncycle: 7\n"
                   "ambient_temperature: 10.0\ncolumns: {pack_current: I_batt}\n"
                   "units: {voltage: V, current: A, temperature: K}\n")
    out = tmp_path / "y.zarr"
    assert cli_main(["ingest", str(log), "--out", str(out), "--config", str(cfg)]) == 0
    ds = store.open_store(out, kind="measured").load()
    assert_same_vit(sim, ds)
    assert int(ds["snapshot_cycle"][0]) == 7 and float(ds["ambient_temperature"][0]) == 10.0


def test_cli_error_names_the_problem(tmp_path, capsys):
    log = tmp_path / "log.csv"
    pd.DataFrame({"time": [0, 1], "cell": [0, 0], "voltage": [3.7, 3.7]}).to_csv(log, index=False)
    assert cli_main(["ingest", str(log), "--out", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err
    assert str(log) in err and "missing" in err and not (tmp_path / "o.zarr").exists()


def test_measured_kind_rejects_a_truth_store_and_keeps_the_other_kinds(sim):
    assert schema.validate(sim, kind="truth") == []
    problems = " ".join(schema.validate(sim, kind="measured"))
    assert "hidden states" in problems and "'source_files' is missing" in problems
