"""Life reports pooled over cell draws (packtwin/eval/life_draws.py, scripts/life_seeds.py)."""

import json

import numpy as np
import pytest

from packtwin.eval import life_draws

TARGETS = {"sei_mae_nm": 1.0, "sei_mae_pct_of_growth": 5.0, "lli_mae_points": 0.2,
           "capacity_mae_pct": 0.5}


def _report(sei_twin: float, sei_fit: float) -> dict:
    def est(sei, det=True):
        row = {"sei_mae_nm": sei, "sei_mae_pct_of_growth": 10 * sei, "lli_mae_points": 0.1,
               "capacity_mae_pct": 0.3, "sei_growth_nm": 10.0}
        return {"deterministic": det, "mean": row}

    split = {"holds_out": "unseen cells [2, 3]",
             "estimators": {"twin": est(sei_twin), "sqrt_fit": est(sei_fit)},
             "twin_meets_targets": {k: (sei_twin < 0.5) for k in TARGETS},
             "twin_better_than_baselines": {k: sei_twin < sei_fit for k in TARGETS}}
    return {"targets": TARGETS, "splits": {"unseen_cells": split}}


def test_pool_is_mean_and_sample_std_over_draws():
    pooled = life_draws.pool({0: _report(0.4, 0.6), 1: _report(0.8, 0.5), 2: _report(0.3, 0.9)})
    row = pooled["splits"]["unseen_cells"]["estimators"]["twin"]["sei_mae_nm"]
    assert row["n"] == 3 and row["per_draw"] == [0.4, 0.8, 0.3]
    assert abs(row["mean"] - 0.5) < 1e-12
    assert abs(row["std"] - float(np.std([0.4, 0.8, 0.3], ddof=1))) < 1e-12
    counts = pooled["splits"]["unseen_cells"]
    assert counts["draws_twin_meets_target"]["sei_mae_nm"] == 2  # 0.4 and 0.3 < 0.5
    assert counts["draws_twin_better_than_baselines"]["sei_mae_nm"] == 2  # draws 0 and 2
    md = life_draws.markdown(pooled)
    assert "0.5 ± 0.26 (n=3)" in md and "sei_mae_nm 2/3" in md
    json.dumps(pooled)  # JSON-able as written by scripts/life_seeds.py


def test_draws_judged_differently_are_refused_by_name():
    other = _report(0.4, 0.6)
    other["splits"]["hotter_45C"] = other["splits"].pop("unseen_cells")
    with pytest.raises(ValueError, match="seed-1.json: splits"):
        life_draws.pool({0: _report(0.4, 0.6), 1: other}, where={1: "seed-1.json"})
    fewer = _report(0.4, 0.6)
    del fewer["splits"]["unseen_cells"]["estimators"]["sqrt_fit"]
    with pytest.raises(ValueError, match="estimators"):
        life_draws.pool({0: _report(0.4, 0.6), 1: fewer})
    with pytest.raises(ValueError, match="no life reports"):
        life_draws.pool({})


def test_the_script_pools_the_committed_report(tmp_path, monkeypatch):
    """scripts/life_seeds.py --pool-only on the committed seed-0 report (one draw: no std)."""
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    mod = runpy.run_path(str(root / "scripts" / "life_seeds.py"), run_name="life_seeds")
    out = tmp_path / "pooled"
    assert mod["main"](["--seeds", "0", "--pool-only", "--out", str(out)]) == 0
    pooled = json.loads(Path(str(out) + ".json").read_text())
    rep = json.loads((root / "reports" / "life-demo" / "life_report.json").read_text())
    twin = pooled["splits"]["unseen_cells"]["estimators"]["twin"]["sei_mae_nm"]
    assert twin["mean"] == rep["splits"]["unseen_cells"]["estimators"]["twin"]["mean"]["sei_mae_nm"]
    assert twin["std"] is None and twin["n"] == 1
    with pytest.raises(SystemExit, match="life-demo-s7"):
        mod["main"](["--seeds", "0", "7", "--pool-only", "--out", str(out)])


def test_the_script_takes_another_preset_and_refuses_a_missing_one(tmp_path, monkeypatch):
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    mod = runpy.run_path(str(root / "scripts" / "life_seeds.py"), run_name="life_seeds")
    assert mod["store_for"](0, "life-long") == "data/life-long.zarr"
    assert mod["output_for"](2, "life-long") == "reports/life-long-s2"
    with pytest.raises(SystemExit, match="configs/generate/no-such.yaml not found"):
        mod["main"](["--preset", "no-such", "--pool-only", "--out", str(tmp_path / "p")])
