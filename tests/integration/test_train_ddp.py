"""DDP on CPU: two processes on gloo through the real CLI (slow: process start-up dominates)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fit_ddp_cpu_two_processes(tmp_path, synthetic_store):
    overrides = {"trainer": {"callbacks": [], "enable_progress_bar": False,
                             "default_root_dir": str(tmp_path),
                             "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                         "init_args": {"save_dir": str(tmp_path / "logs")}}]},
                 "checkpoint": {"dirpath": str(tmp_path / "ckpt")},
                 "data": {"store": str(synthetic_store)},
                 "model": {"hidden": 16, "n_modes": 4, "trunk_width": 8}}
    cfg = tmp_path / "overrides.yaml"
    cfg.write_text(yaml.safe_dump(overrides))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo",
           "MASTER_PORT": "29533", "OMP_NUM_THREADS": "1"}
    # A subprocess: DDP re-launches the script for rank 1, which an in-process pytest cannot be.
    cmd = [sys.executable, "-m", "packtwin", "fit", "--config", "configs/fit.yaml",
           "--config", "configs/data/tiny.yaml", "--config", "configs/trainer/ddp_cpu.yaml",
           "--config", str(cfg)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    metrics = next((tmp_path / "logs").rglob("metrics.csv")).read_text()
    assert "val/c_s_n_rmse" in metrics and "val/loss" in metrics
    import torch

    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] > 0
    assert ckpt["packtwin_schema_version"]
