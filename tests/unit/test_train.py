"""The real LightningCLI, in-process, on the synthetic store."""

from pathlib import Path

import pytest
import torch
import xarray as xr
import yaml

from packtwin import schema
from packtwin.data import store, synthetic
from packtwin.train import cli, main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def base_args(tmp_path: Path, store_path: Path, *extra: str) -> list[str]:
    """fit.yaml + tiny presets, every output under tmp_path, no progress bar."""
    overrides = {"trainer": {"callbacks": [], "enable_progress_bar": False,
                             "default_root_dir": str(tmp_path),
                             "logger": [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                         "init_args": {"save_dir": str(tmp_path / "logs")}}]},
                 "checkpoint": {"dirpath": str(tmp_path / "ckpt")},
                 "prediction": {"output": str(tmp_path / "pred.zarr")},
                 "data": {"store": str(store_path)},
                 "model": {"hidden": 16, "n_modes": 4, "trunk_width": 8}}
    cfg = tmp_path / "test_overrides.yaml"
    cfg.write_text(yaml.safe_dump(overrides))
    return ["--config", str(CONFIGS / "fit.yaml"), "--config", str(CONFIGS / "data/tiny.yaml"),
            "--config", str(CONFIGS / "trainer/tiny.yaml"), "--config", str(cfg), *extra]


@pytest.mark.parametrize("physics", ["true", "false"])
def test_fit_fast_dev_run(cli_argv, tmp_path, synthetic_store, physics):
    threads = torch.get_num_threads()
    try:
        c = cli(["fit", *base_args(tmp_path, synthetic_store, "--trainer.fast_dev_run=true",
                                   f"--model.physics={physics}", "--torch_threads=1")])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert c.trainer.state.finished
    assert c.model.hparams.n_cells == 4  # linked from the store
    assert c.model.variant == ("physics" if physics == "true" else "data_only")


@pytest.mark.slow  # ~19 s: keeps the default run near its 5 min budget; CI runs it
def test_fit_resume_last_then_predict(cli_argv, tmp_path, synthetic_store):
    args = base_args(tmp_path, synthetic_store, "--trainer.limit_train_batches=2",
                     "--trainer.limit_val_batches=2")
    first = cli(["fit", *args])
    steps = first.trainer.global_step
    assert steps > 0 and (tmp_path / "ckpt" / "last.ckpt").exists()
    metrics = first.trainer.callback_metrics
    for name in ("val/c_s_n_rmse", "val/c_s_p_rmse_pct", "val/voltage_rmse",
                 "val/sei_mae", "val/plating_margin_mae", "val/c_s_n_surf_rmse"):
        assert torch.isfinite(metrics[name])
    resumed = cli(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs=3"])
    assert resumed.trainer.global_step > steps  # continued, not restarted
    assert resumed.trainer.current_epoch == 3

    assert main(["predict", *args, "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")]) == 0
    pred = xr.open_zarr(tmp_path / "pred.zarr", consolidated=False)
    assert schema.validate(pred, kind="prediction") == []
    truth = store.open_store(synthetic_store)
    for name in ("c_s_n", "c_s_p", "sei_thickness_avg", "plating_margin", "soc", "voltage"):
        assert pred[name].dims == truth[name].dims
        assert pred[name].attrs["units"] == schema.VARIABLES[name].units
    assert pred.attrs["variant"] == "physics" and pred.attrs["truth_store"] == str(synthetic_store)
    assert "param_neg_diffusivity" in pred
    padding = truth["valid"] == 0
    assert bool(padding.any())
    assert int(pred["voltage"].where(padding).notnull().sum()) == 0  # NaN in the padding
    assert bool(pred["c_s_n"].where(~padding).notnull().sum() > 0)

    # a scenario that stopped before its second snapshot (status partial): NaN there, rest kept
    part = store.open_store(synthetic_store).load()
    part["valid"].values[1, 1] = 0
    for name in ("voltage", "current", "temperature"):
        part[name].values[1, :, 1] = float("nan")
    part["status"].values[1] = schema.STATUS_PARTIAL
    part_path = tmp_path / "partial.zarr"
    part.to_zarr(part_path, **store.ZARR_KW)
    assert main(["predict", *args, "--data.store", str(part_path), "--ckpt_path",
                 str(tmp_path / "ckpt" / "last.ckpt"), "--prediction.output",
                 str(tmp_path / "pred_partial.zarr")]) == 0
    pp = xr.open_zarr(tmp_path / "pred_partial.zarr", consolidated=False)
    assert int(pp["soc"].isel(scenario=1, snapshot=1).notnull().sum()) == 0
    assert int(pp["soc"].isel(scenario=1, snapshot=0).notnull().sum()) > 0

    # the same checkpoint on a store with another cell count: a clear error
    other = tmp_path / "two_cells.zarr"
    synthetic.make_store(other, n_series=2, n_parallel=1)
    with pytest.raises(ValueError, match=r"n_cells=4.*2 cells"):
        main(["predict", *args, "--data.store", str(other),
              "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])


def test_nan_inputs_are_a_clear_cli_error(cli_argv, tmp_path, synthetic_store):
    ds = store.open_store(synthetic_store).load()
    ds["temperature"].values[0, 0, 0, 2] = float("nan")
    bad = tmp_path / "nan.zarr"
    ds.to_zarr(bad, **store.ZARR_KW)
    with pytest.raises(ValueError, match="'temperature' has 1 NaN"):
        main(["fit", *base_args(tmp_path, bad, "--trainer.fast_dev_run=true")])


OWN_CONFIGS = sorted([CONFIGS / "fit.yaml"] + [p for d in ("data", "model", "trainer")
                                                for p in (CONFIGS / d).glob("*.yaml")])


@pytest.mark.parametrize("path", OWN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_parses(cli_argv, path, capsys):
    """Each YAML composes with the base config and passes the CLI parser."""
    args = ["fit", "--config", str(CONFIGS / "fit.yaml"), "--config", str(path), "--print_config"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["inference_mode"] is False
    assert isinstance(printed["seed_everything"], int)
    # last.ckpt comes from packtwin.train.LastCheckpoint after every epoch, not from this one
    assert printed["checkpoint"]["save_last"] is False and printed["checkpoint"]["dirpath"]


def test_nan_loss_stops_with_step_and_term_and_keeps_last_checkpoint(cli_argv, tmp_path,
                                                                      synthetic_store,
                                                                      monkeypatch):
    from packtwin.model import losses

    args = base_args(tmp_path, synthetic_store, "--trainer.limit_train_batches=1",
                     "--trainer.limit_val_batches=1", "--trainer.max_epochs=1")
    cli(["fit", *args])
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    real = losses.data_terms

    def poisoned(*a, **kw):
        terms = real(*a, **kw)
        terms["sei"] = terms["sei"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "data_terms", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss term 'sei' is nan at global step 1"):
        cli(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs=2"])
    assert last.read_bytes() == before  # the last good checkpoint is untouched
