"""Bad generator configs fail early with messages naming the field, expected and found values."""

from pathlib import Path

import pytest
import yaml

from packtwin.sim import config as cfgmod
from packtwin.sim.generate import PRESET_DIR, main, parse

TINY = PRESET_DIR / "tiny.yaml"


def _write(tmp_path: Path, edit) -> Path:
    d = yaml.safe_load(TINY.read_text())
    edit(d)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["scenarios"][0].update(discharge_c_rate=-1.0),
     "scenarios[0].discharge_c_rate must be a positive C-rate, found -1.0"),
    (lambda d: d["scenarios"][1].update(ambient_temperature=80.0),
     "scenarios[1].ambient_temperature 80.0 degC is outside the model's range [-10.0, 60.0]"),
    (lambda d: d["pack"].update(n_parallel=0), "pack.n_parallel must be >= 1, found 0"),
    (lambda d: d.setdefault("variation", {}).update(
        parameters=[{"key": "neg_electrode_thickness", "spread": 0.01}]),
     "variation.parameters[0].key 'neg_electrode_thickness' is not a known parameter"),
    (lambda d: d["scenarios"][0].update(protocol="wltp"), "protocol 'wltp' unknown"),
])
def test_bad_config_is_a_clear_error(tmp_path, capsys, edit, expected):
    err = _error(capsys, ["--config", str(_write(tmp_path, edit)), "--store", str(tmp_path / "s.zarr")])
    assert expected in err
    assert "bad.yaml" in err  # names the file
    assert not (tmp_path / "s.zarr").exists()


def test_every_problem_is_listed_at_once(tmp_path):
    def edit(d):
        d["pack"]["n_series"] = 0
        d["scenarios"][0]["charge_c_rate"] = 0.0
    with pytest.raises(cfgmod.ConfigError) as info:
        parse(["--config", str(_write(tmp_path, edit))])
    assert "n_series" in str(info.value) and "charge_c_rate" in str(info.value)


def test_unknown_preset(capsys):
    err = _error(capsys, ["--preset", "huge"])
    assert "unknown preset 'huge'" in err and "tiny" in err


def test_unwritable_store_path(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    err = _error(capsys, ["--preset", "tiny", "--store", str(blocker / "pack.zarr")])
    assert "not writable" in err and "a_file" in err


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_every_committed_preset_parses_and_validates(name):
    cfg, run = parse(["--preset", name])
    assert run["store"].endswith(".zarr")
    assert cfgmod.n_time(cfg) > 1
    assert cfgmod.from_dict(cfgmod.to_dict(cfg)) == cfg


def test_help_documents_the_config(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--pack.n_parallel" in out and "--preset" in out and "--retry-failed" in out
    assert "Pack time step and storage period" in out  # attribute docstrings become help


def test_differing_keys_name_the_nested_key():
    old = cfgmod.to_dict(cfgmod.GenerateConfig())
    new = cfgmod.to_dict(cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(fewer_trials=True),
                                               seed=7))
    assert cfgmod.differing_keys(old, new) == ["seed", "solver.fewer_trials"]
    assert cfgmod.differing_keys(old, old) == []
    assert cfgmod.differing_keys({"a": {"b": 1}}, {"a": 2}) == ["a"]
