"""packtwin replay: a store streamed through the streaming twin via the real CLI."""

import json

import numpy as np
import pytest
import torch

from packtwin import cli
from packtwin.data import store, windows
from packtwin.eval import predict, replay
from packtwin.model.checkpoint import load_twin
from tests.unit.test_stream import tiny_checkpoint  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_replay_at_speed_0_equals_the_window_estimates(tiny_checkpoint, synthetic_store, tmp_path,
                                                       capsys):
    out = tmp_path / "replay.zarr"
    rc, printed, err = run(["replay", "--checkpoint", str(tiny_checkpoint), "--store",
                            str(synthetic_store), "--speed", "0", "--out", str(out),
                            "--max-samples", "12", "--every", "4", "--trained-cells",
                            "--voltage-alarm", "0"], capsys)
    assert rc == 0, err
    lines = printed.splitlines()
    assert sum(" | SOC mean " in line for line in lines) == 3  # samples 0, 4, 8
    assert any(line.startswith("ALARM voltage:") for line in lines)  # threshold 0: every cell
    assert lines[-1].startswith("replayed 12 pack samples x 4 cells")
    got = store.open_store(out, check=False)
    src = store.open_store(synthetic_store, check=False)
    for dim in ("scenario", "cell", "snapshot", "time"):
        np.testing.assert_array_equal(got[dim].values, src[dim].values)
    record = json.loads(got.attrs["replay"])
    assert record["samples"] == 12 and record["alarms"][0]["alarm"] == "voltage"
    # the streamed samples equal the window forward's estimates (the twin is causal); the rest
    # of the store was not streamed and is NaN
    ref = predict.predict_dataset(load_twin(tiny_checkpoint).module, src, scenarios=[0],
                                  snapshots=[0])
    for name in ("voltage", "soc", "plating_margin", "c_s_n"):
        a = ref[name].isel(scenario=0, snapshot=0).values[:, :12]
        b = got[name].isel(scenario=0, snapshot=0).values[:, :12]
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=name)
    rest = got["soc"].isel(scenario=0, snapshot=0).values[:, 12:]
    assert np.isnan(rest).all()


def test_pacing_follows_the_store_clock(tiny_checkpoint, synthetic_store):
    """At speed S, sample k is due (t_k - t_0) / S after the cycle starts (injected clock)."""
    twin = load_twin(tiny_checkpoint)
    ds = store.open_store(synthetic_store, check=False)
    sel = predict.selection_of(ds, [0], None, [0])
    seq = windows.load_sequences(ds, sel, with_targets=False)
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    emb = replay.cell_embeddings(twin.net, np.unique(seq.cell), trained=False)
    _, record = replay.replay(twin.net, seq, emb, speed=100.0, max_samples=5, say=None,
                              sleep=sleep, clock=lambda: now[0])
    period = float(ds.attrs["period_s"])
    assert record["samples"] == 5
    np.testing.assert_allclose(slept, [period / 100.0] * 4, rtol=1e-6)


@pytest.mark.parametrize("extra,fragment", [
    (["--speed", "-1"], "--speed must be >= 0"),
    (["--max-samples", "0"], "--max-samples must be >= 1"),
    (["--app", "--out", "x.zarr"], "--out and --app do not go together"),
])
def test_bad_arguments_are_one_line(tiny_checkpoint, synthetic_store, capsys, extra, fragment):
    rc, _, err = run(["replay", "--checkpoint", str(tiny_checkpoint), "--store",
                      str(synthetic_store), *extra], capsys)
    assert rc == 2 and fragment in err, err


def test_an_ingested_log_replays_as_its_simulated_store(tiny_checkpoint, tmp_path, capsys):
    """V/I/T of a simulated pack written as a CSV log and ingested (no hidden variables, no
    grid): replay gives the same estimates as replaying the simulated store."""
    pytest.importorskip("pandas")
    from packtwin.data import synthetic
    from tests.unit.test_ingest import long_log

    sim_path = tmp_path / "sim.zarr"
    sim = synthetic.make_store(sim_path, n_snapshots=1, seed=5, scenarios=[dict(
        ambient_temperature=20.0, charge_c_rate=0.5, discharge_c_rate=0.5, protocol="cccv")])
    log = tmp_path / "log.csv"
    long_log(sim.load()).to_csv(log, index=False)
    measured = tmp_path / "measured.zarr"
    rc, _, err = run(["ingest", str(log), "--out", str(measured), "--topology", "2s2p",
                      "--period-s", repr(sim.attrs["period_s"]), "--ambient-temperature", "20",
                      "--cycle", str(int(sim["snapshot_cycle"].values[0])),
                      "--units", "voltage=V,current=A,temperature=K"], capsys)
    assert rc == 0, err
    outs = {}
    for name, src in (("sim", sim_path), ("measured", measured)):
        outs[name] = tmp_path / f"replay_{name}.zarr"
        rc, _, err = run(["replay", "--checkpoint", str(tiny_checkpoint), "--store", str(src),
                          "--speed", "0", "--max-samples", "8", "--quiet",
                          "--out", str(outs[name])], capsys)
        assert rc == 0, err
    a, b = (store.open_store(outs[n], check=False) for n in ("sim", "measured"))
    assert json.loads(b.attrs["replay"])["input_kind"] == "measured"
    for name in ("voltage", "soc", "c_s_p"):
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-5, atol=1e-6,
                                   equal_nan=True, err_msg=name)
    assert np.isfinite(b["soc"].values[..., :8]).all()
