"""Every committed experiment config parses into an evaluation Config (configs never rot)."""

from pathlib import Path

import pytest

from packtwin.eval import evaluate

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_config_parses(path):
    cfg, _ = evaluate.parse(["--config", str(path)])
    assert cfg.splits or cfg.life, "an experiment needs held-out splits or life splits"
    if cfg.life is not None:
        from packtwin.eval import life_evaluate

        assert life_evaluate.parse(cfg.life).splits
    if not cfg.variants:  # an observers-only evaluation: no twin is trained
        assert cfg.observers, "no variants and no observers: nothing next to the baseline"
    else:
        assert set(cfg.variants) == {"physics", "data_only"}
    # the variants may differ only by their model config: the fair-ablation rule
    for args in cfg.variants.values():
        assert all(a == "--config" or a.startswith("configs/model/") for a in args), args
    if cfg.generate:
        assert (ROOT / cfg.generate).exists(), cfg.generate


def test_demo_and_ablation_share_everything_but_seeds_and_output():
    demo, _ = evaluate.parse(["--config", str(ROOT / "configs/experiments/demo.yaml")])
    abl, _ = evaluate.parse(["--config", str(ROOT / "configs/experiments/ablation_demo.yaml")])
    assert len(abl.seeds) >= 3
    for key in ("store", "train", "val", "splits", "fit_configs", "fit", "variants",
                "monitor", "patience", "adapt"):
        assert getattr(demo, key) == getattr(abl, key), key
