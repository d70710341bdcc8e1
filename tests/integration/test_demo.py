"""`packtwin demo` end to end on the synthetic store: report, full predictions for the app, app command."""

import sys
from pathlib import Path

import pytest

from packtwin import cli, schema
from packtwin.data import store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_demo_writes_report_predictions_and_prints_app_command(synthetic_store, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["packtwin"])
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--experiment", str(ROOT / "configs/experiments/tiny.yaml"),
                   "--store", str(synthetic_store), "--output", str(out), "--seeds", "[0]",
                   "--progress", "false"])
    assert rc == 0
    text = capsys.readouterr().out
    assert (out / "report.md").exists()
    assert f"packtwin app --store {synthetic_store}" in text
    truth = store.open_store(synthetic_store)
    for variant in ("physics", "data_only"):
        path = out / "predictions" / f"{variant}.zarr"
        assert str(path) in text
        pred = store.open_store(path, kind="prediction")
        assert schema.validate(pred, kind="prediction") == []
        # every scenario and cell of the pack, so the app can show all of them
        assert pred.sizes[schema.CELL] == truth.sizes[schema.CELL]
        assert pred.sizes[schema.SCENARIO] == truth.sizes[schema.SCENARIO]
