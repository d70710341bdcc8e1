"""Bad inputs, as a hostile user would give them, through ``packtwin.cli.main`` in-process.

Each row: a description (the id), a setup made by code, the argv, the fragment the one-line
error must hold. Every row checks: a non-zero exit, the fragment on stderr, no traceback, and
that nothing the user had was changed (every file under the protected paths is hashed before
and after) and no store/output appeared where none was asked for.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from packtwin import cli
from packtwin.sim.generate import PRESET_DIR

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
TINY = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())


@dataclass
class World:
    """Paths a case may use: a private copy of the truth store (made on first use) and of a
    checkpoint."""

    tmp: Path
    source: Path
    ckpt: Path
    protect: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)

    @property
    def truth(self) -> Path:
        p = self.tmp / "truth.zarr"
        if not p.exists():
            shutil.copytree(self.source, p)
            self.protect.append(p)
        return p

    def file(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def folder_with_files(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "thesis.tex").write_text("three years of work\n")
        (d / "data.csv").write_text("1,2,3\n")
        self.protect.append(d)
        return d


@dataclass
class Case:
    id: str
    argv: Callable[[World], list[str]]
    fragment: str
    needs: str = "generate"  # generate | lightning (imports torch; needs the checkpoint)


def gen_config(w: World, **changes) -> list[str]:
    """``generate`` on the tiny preset with ``changes`` (dotted keys patch nested mappings)."""
    d = yaml.safe_load(yaml.safe_dump(TINY))
    d.pop("store", None)
    for key, val in changes.items():
        parts = key.split("__")
        tgt = d
        for p in parts[:-1]:
            tgt = tgt.setdefault(p, {})
        tgt[parts[-1]] = val
    cfg = w.file("gen.yaml", yaml.safe_dump(d))
    store = w.tmp / "new.zarr"
    w.absent.append(store)
    return ["generate", "--config", str(cfg), "--store", str(store), "--quiet", "--workers", "1"]


def scen(**kw) -> list[dict]:
    s = {"ambient_temperature": 25.0, "charge_c_rate": 1.0, "discharge_c_rate": 1.0,
         "protocol": "cccv"}
    s.update(kw)
    return [s]


def fit_args(w: World, output: str) -> list[str]:
    over = {"trainer": {"callbacks": [], "enable_progress_bar": False, "logger": False,
                        "default_root_dir": str(w.tmp / "root")},
            "checkpoint": {"dirpath": str(w.tmp / "ckpts")},
            "data": {"store": str(w.truth)},
            "model": {"hidden": 16, "n_modes": 4, "trunk_width": 8},
            "prediction": {"output": output}}
    cfg = w.file("fit_over.yaml", yaml.safe_dump(over))
    return ["--config", str(CONFIGS / "fit.yaml"), "--config", str(CONFIGS / "data/tiny.yaml"),
            "--config", str(CONFIGS / "trainer/tiny.yaml"), "--config", str(cfg)]


def predict(w: World, output: str | Path) -> list[str]:
    return ["predict", *fit_args(w, str(output)), "--ckpt_path", str(w.ckpt)]


def export(w: World, out: str | Path, *extra: str) -> list[str]:
    return ["export", "--ckpt", str(w.ckpt), "--out", str(out), "--batch", "2", "--time", "4",
            *extra]


def evaluate(w: World, output: str | Path, store: str | Path | None = None) -> list[str]:
    cfg = {"store": str(store or w.truth), "output": str(output),
           "train": {"cells": [0, 1, 2]}, "splits": {"held": {"cells": [3]}},
           "checkpoints": {"physics": [str(w.ckpt)]}, "variants": {"physics": []},
           "seeds": [0], "plots": False, "progress": False}
    return ["evaluate", "--config", str(w.file("eval.yaml", yaml.safe_dump(cfg)))]


def interrupted_store(w: World) -> Path:
    """A copy of the truth store whose first scenario no generation wrote (status NaN), as an
    interrupted ``packtwin generate`` leaves it."""
    import zarr

    p = w.tmp / "interrupted.zarr"
    shutil.copytree(w.source, p)
    status = zarr.open_array(str(p / "status"), mode="r+")
    status[0] = np.nan
    w.protect.append(p)
    return p


def estimate(w: World, out: str | Path, *extra: str, store: str | Path | None = None
             ) -> list[str]:
    if not Path(out).exists():
        w.absent.append(Path(out))
    return ["estimate", "--checkpoint", str(w.ckpt), "--store", str(store or w.truth),
            "--out", str(out), "--steps", "2", *extra]


def other_truth(w: World) -> Path:
    other = w.tmp / "other_truth.zarr"
    shutil.copytree(w.truth, other)
    w.protect.append(other)
    return other


def incomplete_store(w: World) -> list[str]:
    """A folder with a generator-made-looking zarr.json but a foreign config: refused."""
    argv = gen_config(w)
    store = w.tmp / "new.zarr"
    shutil.copytree(w.source, store)
    w.absent.remove(store)
    w.protect.append(store)
    return argv


def non_zarr_store(w: World) -> list[str]:
    argv = gen_config(w)
    store = w.tmp / "new.zarr"
    w.absent.remove(store)
    w.folder_with_files("new.zarr")
    return argv


def held_lock(w: World) -> list[str]:
    return gen_config(w) + ["--hold-lock-for-test"]


CASES = [
    # --- generate: unknown keys, named with the nearest valid one ---------------------------
    Case("gen-unknown-top-key", lambda w: gen_config(w, scenarioz=[]), "did you mean 'scenarios'"),
    Case("gen-unknown-nested-key", lambda w: gen_config(w, pack__n_paralel=2),
         "did you mean 'n_parallel'"),
    Case("gen-unknown-scenario-key",
         lambda w: gen_config(w, scenarios=[{"ambient_temprature": 25.0}]),
         "did you mean 'ambient_temperature'"),
    Case("gen-unknown-variation-key",
         lambda w: gen_config(w, variation={"parameters": [{"key": "neg_j0", "sprad": 0.1}]}),
         "did you mean 'spread'"),
    Case("gen-unknown-cli-option", lambda w: gen_config(w) + ["--seeed", "3"],
         "did you mean 'seed'"),
    Case("gen-unknown-cli-nested-option", lambda w: gen_config(w) + ["--pack.n_paralel", "3"],
         "did you mean 'pack.n_parallel'"),
    Case("gen-unknown-override-key",
         lambda w: gen_config(w, model__parameter_overrides={"Contact resistanse [Ohm]": 0.01}),
         "did you mean 'Contact resistance [Ohm]'"),
    Case("gen-unknown-pybamm-option",
         lambda w: gen_config(w, model__options={"SEIX": "constant"}), "Best matches are ['SEI']"),
    Case("gen-bad-pybamm-option-value",
         lambda w: gen_config(w, model__options={"SEI": "bogus"}),
         "'bogus' is not recognized in option 'SEI'"),
    Case("gen-unknown-parameter-set", lambda w: gen_config(w, model__parameter_set="OKane2020"),
         "did you mean 'OKane2022'"),
    Case("gen-unknown-model", lambda w: gen_config(w, model__model="DFM"), "did you mean 'DFN'"),
    Case("gen-unknown-mesh-key",
         lambda w: gen_config(w, model__var_pts={"x_n": 4, "x_s": 3, "x_p": 4, "r_n": 5, "r_p": 5,
                                                 "x_q": 3}), "did you mean 'x_"),
    Case("gen-mesh-too-coarse",
         lambda w: gen_config(w, model__var_pts={"x_n": 1, "x_s": 3, "x_p": 4, "r_n": 5, "r_p": 5}),
         "model.var_pts.x_n must be an integer >= 2"),
    Case("gen-unknown-protocol", lambda w: gen_config(w, scenarios=scen(protocol="cccx")),
         "did you mean 'cccv'"),
    Case("gen-unknown-varied-parameter",
         lambda w: gen_config(w, variation={"parameters": [{"key": "neg_c_inti", "spread": 0.01}]}),
         "did you mean 'neg_c_init'"),
    Case("gen-unknown-distribution",
         lambda w: gen_config(w, variation={"parameters": [
             {"key": "neg_j0", "spread": 0.1, "distribution": "gaussian"}]}),
         "distribution 'gaussian'"),
    Case("gen-spread-too-large",
         lambda w: gen_config(w, variation={"parameters": [{"key": "neg_j0", "spread": 0.7}]}),
         "spread must be in [0, 0.5)"),
    Case("gen-duplicate-varied",
         lambda w: gen_config(w, variation={"parameters": [{"key": "neg_j0", "spread": 0.1},
                                                           {"key": "neg_j0", "spread": 0.2}]}),
         "duplicate keys"),
    Case("gen-correlation-shape",
         lambda w: gen_config(w, variation={"parameters": [{"key": "neg_j0", "spread": 0.1}],
                                            "correlation": [[1, 0], [0, 1]]}),
         "variation.correlation must be 1x1"),
    Case("gen-correlation-not-psd",
         lambda w: gen_config(w, variation={
             "parameters": [{"key": "neg_j0", "spread": 0.1}, {"key": "pos_j0", "spread": 0.1}],
             "correlation": [[1, 2], [2, 1]]}), "positive semi-definite"),
    # --- generate: limits a config cannot widen, and physical sense ---------------------------
    Case("gen-temperature-range-widened", lambda w: gen_config(
        w, model__temperature_range_c=[-10, 600], scenarios=scen(ambient_temperature=500.0)),
        "beyond the hard limits"),
    Case("gen-ambient-500C-hard-limit", lambda w: gen_config(
        w, model__temperature_range_c=[-10, 600], scenarios=scen(ambient_temperature=500.0)),
        "ambient_temperature 500.0 degC is outside the hard limits"),
    Case("gen-ambient-outside-range", lambda w: gen_config(w, scenarios=scen(ambient_temperature=70.0)),
         "outside the model's range [-10.0, 60.0]"),
    Case("gen-negative-c-rate", lambda w: gen_config(w, scenarios=scen(charge_c_rate=-1.0)),
         "charge_c_rate must be a positive C-rate"),
    Case("gen-zero-c-rate", lambda w: gen_config(w, scenarios=scen(discharge_c_rate=0.0)),
         "discharge_c_rate must be a positive C-rate"),
    Case("gen-c-rate-above-hard-limit", lambda w: gen_config(w, scenarios=scen(charge_c_rate=100.0)),
         "above the hard limit 20.0C"),
    Case("gen-c-rate-1e-9-estimate", lambda w: gen_config(w, scenarios=scen(charge_c_rate=1e-9)),
         "refusing to start: the store would be"),
    Case("gen-1e8-cycles-estimate", lambda w: gen_config(w, n_cycles=100_000_000),
         "refusing to start"),
    Case("gen-1000s1000p-estimate",
         lambda w: gen_config(w, pack={"n_series": 1000, "n_parallel": 1000}),
         "1000000 cells"),
    Case("gen-zero-pulse-pattern-estimate", lambda w: gen_config(
        w, scenarios=scen(protocol="pulse"), protocol__pulse_pattern=[[0.0, 60.0], [0.0, 60.0]]),
        "refusing to start"),
    Case("gen-pulse-negative-seconds",
         lambda w: gen_config(w, protocol__pulse_pattern=[[1.0, -60.0]]),
         "pulse_pattern[0] must be [multiple, seconds > 0]"),
    Case("gen-pulse-empty", lambda w: gen_config(w, protocol__pulse_pattern=[]),
         "pulse_pattern is empty"),
    Case("gen-period-zero", lambda w: gen_config(w, solver__period_s=0.0),
         "solver.period_s must be > 0"),
    Case("gen-period-too-long", lambda w: gen_config(w, solver__period_s=1e5),
         "solver.period_s 100000.0 s is outside"),
    Case("gen-vmin-above-vmax", lambda w: gen_config(w, protocol__v_min=4.0, protocol__v_max=3.0),
         "0 < v_min < v_max"),
    Case("gen-vmax-hard-limit", lambda w: gen_config(w, protocol__v_max=10.0),
         "protocol.v_max 10.0 V is outside the hard limits"),
    Case("gen-no-scenarios", lambda w: gen_config(w, scenarios=[]), "scenarios is empty"),
    Case("gen-zero-series", lambda w: gen_config(w, pack={"n_series": 0, "n_parallel": 2}),
         "pack.n_series must be >= 1"),
    Case("gen-snapshot-every-zero", lambda w: gen_config(w, snapshot_every=0),
         "snapshot_every must be >= 1"),
    Case("gen-zero-cycles", lambda w: gen_config(w, n_cycles=0), "n_cycles must be >= 1"),
    Case("gen-zero-workers", lambda w: gen_config(w)[:-2] + ["--workers", "0"],
         "--workers must be >= 1"),
    Case("gen-negative-contact-resistance-override",
         lambda w: gen_config(w, model__parameter_overrides={"Contact resistance [Ohm]": -0.005}),
         "is not physical (must be >= 0)"),
    Case("gen-c-init-above-c-max", lambda w: gen_config(w, model__parameter_overrides={
        "Initial concentration in negative electrode [mol.m-3]": 1e6}),
        "neg_c_init = 1e+06 mol/m3 is not physical"),
    Case("gen-drawn-am-fraction-above-one", lambda w: gen_config(
        w, pack={"n_series": 10, "n_parallel": 10},
        model__parameter_overrides={"Negative electrode active material volume fraction": 0.95},
        variation={"parameters": [{"key": "neg_am_fraction", "spread": 0.1}]}),
        "neg_am_fraction = "),
    Case("gen-override-not-a-number", lambda w: gen_config(
        w, model__parameter_overrides={"Contact resistance [Ohm]": "small"}),
        "must be a finite number"),
    # --- generate: files --------------------------------------------------------------------
    Case("gen-yaml-syntax-error",
         lambda w: ["generate", "--config", str(w.file("bad.yaml", "pack: {n_series: [1,\n"))],
         "is not valid YAML"),
    Case("gen-config-missing",
         lambda w: ["generate", "--config", str(w.tmp / "nope.yaml")], "cannot be read"),
    Case("gen-config-not-a-mapping",
         lambda w: ["generate", "--config", str(w.file("list.yaml", "- 1\n- 2\n"))],
         "must hold a mapping"),
    Case("gen-unknown-preset", lambda w: ["generate", "--preset", "tinyy"], "unknown preset"),
    Case("gen-wrong-type", lambda w: gen_config(w) + ["--pack.n_series", "two"],
         "pack.n_series"),
    Case("gen-store-is-a-foreign-folder", non_zarr_store, "is not a Zarr store"),
    Case("gen-store-is-another-truth-store", incomplete_store, "different generator config"),
    Case("gen-store-parent-is-a-file", lambda w: gen_config(w)[:3] + [
        "--store", str(w.file("afile", "x") / "s.zarr"), "--workers", "1"], "not writable"),
    Case("gen-store-locked", held_lock, "is being written by pid"),
    # --- predict: outputs that would destroy data ------------------------------------------------
    Case("predict-output-is-truth-store", lambda w: predict(w, w.truth),
         "is the input", needs="lightning"),
    Case("predict-output-inside-truth-store", lambda w: predict(w, w.truth / "pred.zarr"),
         "lies inside it", needs="lightning"),
    Case("predict-output-contains-truth-store", lambda w: predict(w, w.tmp),
         "contains the input", needs="lightning"),
    Case("predict-output-is-foreign-folder",
         lambda w: predict(w, w.folder_with_files("results")), "not a packtwin prediction output",
         needs="lightning"),
    Case("predict-output-is-checkpoint", lambda w: predict(w, w.ckpt), "is the input",
         needs="lightning"),
    Case("predict-output-is-another-truth-store", lambda w: predict(w, other_truth(w)),
         "not a packtwin prediction output", needs="lightning"),
    Case("predict-store-missing", lambda w: predict(w, w.tmp / "p.zarr") + [
        "--data.store", str(w.tmp / "missing.zarr")], "does not exist", needs="lightning"),
    Case("predict-store-is-foreign-folder", lambda w: predict(w, w.tmp / "p.zarr") + [
        "--data.store", str(w.folder_with_files("notastore"))], "cannot be opened as a Zarr store",
        needs="lightning"),
    Case("predict-ckpt-missing", lambda w: predict(w, w.tmp / "p.zarr")[:-2] + [
        "--ckpt_path", str(w.tmp / "none.ckpt")], "none.ckpt", needs="lightning"),
    Case("fit-yaml-syntax-error", lambda w: ["fit", "--config", str(w.file("b.yaml", "a: [1,\n"))],
         "Problems parsing config", needs="lightning"),
    Case("fit-store-missing", lambda w: ["fit", *fit_args(w, str(w.tmp / "p.zarr")),
                                         "--data.store", str(w.tmp / "missing.zarr"),
                                         "--trainer.fast_dev_run=true"], "does not exist",
         needs="lightning"),
    # --- export ---------------------------------------------------------------------------------
    Case("export-out-is-checkpoint", lambda w: export(w, w.ckpt), "is the input",
         needs="lightning"),
    Case("export-out-is-another-checkpoint", lambda w: export(w, _copy_ckpt(w)),
         "existing checkpoint", needs="lightning"),
    Case("export-out-is-foreign-file",
         lambda w: export(w, _protected(w, w.file("notes.pt", "my notes"))),
         "not a packtwin export output", needs="lightning"),
    Case("export-out-is-foreign-folder", lambda w: export(w, w.folder_with_files("dir.pt")),
         "not a packtwin export output", needs="lightning"),
    Case("export-ckpt-missing",
         lambda w: ["export", "--ckpt", str(w.tmp / "none.ckpt"), "--out", str(w.tmp / "o.pt")],
         "does not exist", needs="lightning"),
    Case("export-bad-format", lambda w: export(w, w.tmp / "o.pt", "--format", "tflite"),
         "tflite", needs="lightning"),
    # --- evaluate ---------------------------------------------------------------------------------
    Case("evaluate-output-is-truth-store", lambda w: evaluate(w, w.truth), "is the input",
         needs="lightning"),
    Case("evaluate-output-is-foreign-folder",
         lambda w: evaluate(w, w.folder_with_files("results")), "not a packtwin evaluation output",
         needs="lightning"),
    Case("evaluate-store-missing",
         lambda w: evaluate(w, w.tmp / "ev", store=w.tmp / "missing.zarr"), "does not exist",
         needs="lightning"),
    Case("evaluate-store-interrupted",
         lambda w: evaluate(w, w.tmp / "ev", store=interrupted_store(w)),
         "is incomplete: scenarios [0] were never written", needs="lightning"),
    Case("evaluate-config-missing",
         lambda w: ["evaluate", "--config", str(w.tmp / "nope.yaml")], "nope.yaml",
         needs="lightning"),
    # --- estimate: any pack, every cell new (tests/unit/test_estimate.py has the data cases) -----
    Case("estimate-out-is-the-store", lambda w: estimate(w, w.truth), "would destroy the input",
         needs="lightning"),
    Case("estimate-out-is-foreign-folder",
         lambda w: estimate(w, w.folder_with_files("results")),
         "not a packtwin prediction output", needs="lightning"),
    Case("estimate-store-missing",
         lambda w: estimate(w, w.tmp / "e.zarr", store=w.tmp / "missing.zarr"), "does not exist",
         needs="lightning"),
    Case("estimate-checkpoint-missing",
         lambda w: estimate(w, w.tmp / "e.zarr", "--checkpoint", str(w.tmp / "nope.ckpt")),
         "checkpoint does not exist", needs="lightning"),
    Case("estimate-level-outside-0-1",
         lambda w: estimate(w, w.tmp / "e.zarr", "--level", "95"), "coverage level must be in",
         needs="lightning"),
    # --- the CLI itself -------------------------------------------------------------------------
    Case("cli-unknown-command", lambda w: ["genrate"], "unknown command 'genrate'"),
]


def _copy_ckpt(w: World) -> Path:
    other = w.tmp / "other.ckpt"
    shutil.copyfile(w.ckpt, other)
    w.protect.append(other)
    return other


def _protected(w: World, p: Path) -> Path:
    w.protect.append(p)
    return p


def _hashes(paths: list[Path]) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(q for q in root.rglob("*") if q.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, synthetic_store):
    """A real Lightning checkpoint of a small twin (one short epoch)."""
    import torch

    from packtwin.train import cli as fit_cli

    tmp = tmp_path_factory.mktemp("ckpt")
    w = World(tmp, synthetic_store, tmp / "unused.ckpt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    argv0 = sys.argv
    sys.argv = ["packtwin"]
    try:
        fit_cli(["fit", *fit_args(w, str(tmp / "p.zarr")), "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    finally:
        sys.argv = argv0
        torch.set_num_threads(threads)
    return tmp / "ckpts" / "last.ckpt"


@pytest.fixture
def world(tmp_path, synthetic_store, request):
    ckpt = tmp_path / "model.ckpt"
    w = World(tmp_path, synthetic_store, ckpt)
    if request.node.callspec.params["case"].needs == "lightning":
        shutil.copyfile(request.getfixturevalue("checkpoint"), ckpt)
        w.protect += [ckpt, w.truth]
    return w


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argument parsers exit with their usage message
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.err + out.out


# Rows through the Lightning CLI need a trained checkpoint (~10 s) and ~1 s each: slow. The same
# guards are tested fast, without the CLI, in tests/unit/test_outputs.py.
PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.needs == "lightning" else [])
          for c in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input(case: Case, world: World, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["packtwin"])
    argv = case.argv(world)
    hold = "--hold-lock-for-test" in argv
    if hold:
        argv.remove("--hold-lock-for-test")
    before = _hashes(world.protect)
    if hold:
        from packtwin.data import lock

        with lock.exclusive(world.tmp / "new.zarr", command="another packtwin generate"):
            rc, msg = run_cli(argv, capsys)
    else:
        rc, msg = run_cli(argv, capsys)
    assert rc not in (0, None), msg
    assert case.fragment in msg, msg
    assert "Traceback" not in msg
    assert _hashes(world.protect) == before, "protected data changed"
    for p in world.absent:
        assert not p.exists(), f"{p} was created"


def test_case_count():
    """The table holds the cases the README counts (distinct ids)."""
    assert len({c.id for c in CASES}) == len(CASES) >= 50


def test_debug_shows_the_traceback():
    from packtwin.sim.config import ConfigError

    with pytest.raises(ConfigError, match="unknown preset"):
        cli.main(["--debug", "generate", "--preset", "tinyy"])


def test_programming_errors_keep_their_traceback(monkeypatch):
    from packtwin.sim import generate

    def broken(argv):
        raise KeyError("a bug")

    monkeypatch.setattr(generate, "main", broken)
    with pytest.raises(KeyError):
        cli.main(["generate"])
