"""The live page of ``packtwin replay --app``: callback ticks stream the CLI replay's estimates."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

from packtwin import cli  # noqa: E402
from packtwin.data import store, windows  # noqa: E402
from packtwin.eval import predict, replay  # noqa: E402
from packtwin.model.checkpoint import load_twin  # noqa: E402
from tests.unit.test_stream import tiny_checkpoint  # noqa: E402,F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def live_page(checkpoint, store_path, speed=60.0, **alarms):
    """The page as ``packtwin replay --app`` builds it for a browser session (new cells)."""
    from packtwin.app.live import LivePack

    twin = load_twin(checkpoint)
    ds = store.open_store(store_path, check=False)
    seq = windows.load_sequences(ds, predict.selection_of(ds, [0], None, [0]), with_targets=False)
    emb = replay.cell_embeddings(twin.net, np.unique(seq.cell), trained=False)
    return LivePack(replay.Run(twin.net, seq, emb, 0.0, None, replay.Alarms(**alarms)), speed)


def test_pacing():
    from packtwin.app.live import MIN_TICK_MS, pacing

    assert pacing(165.0, 60.0) == (2750, 1)  # one sample every 165 s / 60
    period_ms, per_tick = pacing(165.0, 1e5)  # 1.65 ms a sample: several per redraw
    assert per_tick == 61 and period_ms >= MIN_TICK_MS
    assert pacing(165.0, 0.0) == (MIN_TICK_MS, 1)


def test_ticks_stream_the_cli_replay_estimates(tiny_checkpoint, synthetic_store, tmp_path,
                                                capsys):
    out = tmp_path / "replay.zarr"
    assert cli.main(["replay", "--checkpoint", str(tiny_checkpoint), "--store",
                     str(synthetic_store), "--scenarios", "0", "--snapshots", "0", "--speed",
                     "0", "--max-samples", "12", "--quiet", "--out", str(out)]) == 0
    ref = store.open_store(out, check=False).isel(scenario=0, snapshot=0)
    live = live_page(tiny_checkpoint, synthetic_store)
    assert len(live.lines.data) == 0 and live.per_tick() == 1
    n_cells = len(live.cells)
    for n in range(1, 6):
        assert live.tick() == 1
        assert len(live.lines.data) == n * n_cells  # each tick: one sample of every cell
    assert live.advance(7) == 7
    df = live.lines.data
    times = np.unique(df.time_min)
    assert len(times) == 12
    np.testing.assert_allclose(times, ref.time.values[:12] / 60.0, rtol=1e-6)
    for col, name in (("soc", "soc"), ("v_est", "voltage"), ("margin_mV", "plating_margin")):
        got = df.pivot(index="cell", columns="time_min", values=col).values
        want = ref[name].values[:, :12] * (1e3 if col == "margin_mV" else 1.0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                   err_msg=col)
    strip = live.strip.data  # the bars: the latest sample of every cell
    np.testing.assert_allclose(strip.soc.values, ref["soc"].values[:, 11], rtol=1e-5)
    assert "12 pack samples streamed" in live.status.object
    assert "paused" in live.status.object  # stepped by hand, not playing
    # the plot callbacks draw what the streams hold (one SOC curve per cell)
    soc = live.plots["soc"][()]
    assert len(soc) == n_cells and len(soc.values()[0]) == 12


def test_a_planted_voltage_fault_raises_its_alarm_on_the_page(tiny_checkpoint, synthetic_store,
                                                               tmp_path):
    """Cell 2's voltage sensor jumps by 0.5 V from sample 6: a voltage alarm for that cell only,
    at that sample, in the page's alarm list (the replay's own Alarms)."""
    from packtwin import schema

    ds = store.open_store(synthetic_store).load()
    v = ds["voltage"].values.copy()
    v[:, 2, :, 6:] += 0.5
    ds["voltage"] = ds["voltage"].copy(data=v)
    ds = schema.apply_attrs(ds)
    for var in ds.variables.values():
        var.encoding = {}
    faulty = tmp_path / "faulty.zarr"
    ds.to_zarr(faulty, mode="w", **store.ZARR_KW)

    live = live_page(tiny_checkpoint, faulty, voltage=0.3)
    live.advance(6)
    assert live.run.alarms.events == []
    assert "none so far" in live.alarm_list.object.to_string()
    live.advance(4)
    events = live.run.alarms.events
    assert [(e["alarm"], e["cells"], e["sample"]) for e in events] == [("voltage", [2], 6)]
    table = live.alarm_list.object
    assert list(table.alarm) == ["voltage"] and list(table.cells) == ["2"]
    json.dumps(events)  # the page shows what --out records
