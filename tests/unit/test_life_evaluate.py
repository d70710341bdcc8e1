"""The ``life`` section of ``packtwin evaluate`` (packtwin.eval.life_evaluate) on a life store made
by code (tests/unit/test_life_pack.py's cells that follow the life model exactly): config
validation, the data-only estimator's blindness to judged cycles, the report's shape."""

import json

import numpy as np
import pytest

from packtwin import schema
from packtwin.errors import PacktwinError
from packtwin.data.splits import SelectionError
from packtwin.eval import life_data_only, life_evaluate, life_report
from packtwin.eval.life_evaluate import LifeConfigError
from packtwin.physics.life_pack import cell_life
from tests.unit.test_life_pack import _store

UPTO = 10
TINY_FIT = {"steps": 40, "hidden": 8}
SPLITS = {"cycles_beyond": {"ambient_temperature": [25], "cells": [0]},
          "unseen_cells": {"ambient_temperature": [25], "cells": [1]},
          "hotter_45C": {"ambient_temperature": [45], "cycles": {"min": 15}}}


def _spec(**changes):
    spec = {"calibration": {"ambient_temperature": [25], "cells": [0], "upto_cycle": UPTO},
            "splits": SPLITS, "seeds": [0, 1, 2], "data_only": TINY_FIT}
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def life_store():
    return _store(n_cycles=24, checkup_every=8).assign_coords(
        discharge_c_rate=("scenario", [1.0, 1.0]))


@pytest.fixture(scope="module")
def report(life_store, one_torch_thread):
    return life_evaluate.evaluate(life_store, life_evaluate.parse(_spec()), source="made.zarr")


@pytest.mark.parametrize("spec, match", [
    (_spec(splits={"x": {"temperature": [25]}}), r"life split 'x': unknown keys \['temperature'\]"),
    (_spec(calibrate={}), r"config 'life': unknown keys \['calibrate'\]"),
    (_spec(calibration={"cells": [0]}), r"'upto_cycle' must be an integer >= 3"),
    (_spec(splits={}), r"needs \['splits'\]"),
    (_spec(data_only={"epochs": 3}), r"life data_only: unknown keys \['epochs'\]"),
])
def test_malformed_life_config_is_refused_by_key(spec, match):
    with pytest.raises(LifeConfigError, match=match):
        life_evaluate.parse(spec)


def test_a_split_selecting_no_cycles_is_refused_naming_it(life_store):
    short = life_store.copy()
    short["cycles_done"] = ("scenario", np.array([24.0, 9.0]))  # the hot run stopped at 9
    with pytest.raises(LifeConfigError, match=r"'hotter_45C' selects no cycles.*finished \[9\]"):
        life_evaluate.resolve(short, life_evaluate.parse(_spec()))
    early = _spec(splits={"early": {"cells": [1], "cycles": {"max": 12}}})
    with pytest.raises(LifeConfigError, match=r"'early': cycles .* reach into the calibration"):
        life_evaluate.resolve(life_store, life_evaluate.parse(early))
    with pytest.raises(SelectionError, match=r"life split 'none'.*selects no scenario"):
        life_evaluate.resolve(life_store, life_evaluate.parse(
            _spec(splits={"none": {"discharge_c_rate": [2.0]}})))


def test_a_store_without_the_cycle_dim_is_refused_naming_what_is_missing(life_store):
    flat = life_store.isel(cycle=0, drop=True)
    with pytest.raises(LifeConfigError, match=r"x.zarr.*needs the 'cycle' dimension.*found dims"):
        life_evaluate.check_store(flat, "x.zarr")
    with pytest.raises(LifeConfigError, match=r"x.zarr: variable 'life_current' is missing "
                                              r"\(expected dims \('scenario', 'cell', 'cycle'"):
        life_evaluate.check_store(life_store.drop_vars("life_current"), "x.zarr")


def test_data_only_estimator_never_reads_truth_of_judged_cycles_or_other_runs(life_store,
                                                                           one_torch_thread):
    cfg = life_evaluate.parse(_spec(seeds=[0]))
    calib, _ = life_evaluate.resolve(life_store, cfg)
    one = cell_life(life_store, 1, 1)

    def predictions(ds):
        return life_data_only.predict(life_evaluate.fit_data_only(ds, cfg, calib)[0], one)

    base = predictions(life_store)
    hidden = life_store.copy(deep=True)
    for v in ("sei_thickness_end", "lli", "capacity"):
        hidden[v][:, :, UPTO:] = 1e3  # every judged cycle's truth, garbage
        hidden[v][1] = -1e3  # and all of the other scenario's
        hidden[v][:, 1] = -1e3  # and of the unseen cell
    for k in base:
        np.testing.assert_array_equal(predictions(hidden)[k], base[k])
    seen = life_store.copy(deep=True)  # the check can fail: calibration truth does matter
    seen["sei_thickness_end"][0, 0, UPTO - 1] += 5.0
    assert not np.array_equal(predictions(seen)["sei"], base["sei"])


def test_data_only_features_of_a_cycle_use_no_later_measurement(life_store):
    one = cell_life(life_store, 0, 0)
    later = one.copy(deep=True)
    later["capacity"][..., 15:] = 0.1
    later["life_temperature"][..., 16:, :] = 400.0
    a, b = life_data_only.features(one), life_data_only.features(later)
    np.testing.assert_array_equal(a[:16], b[:16])  # capacity of cycle c enters from c + 1 on
    assert not np.array_equal(a[16], b[16])


def test_report_has_every_split_and_estimator(report, life_store):
    assert list(report["splits"]) == list(SPLITS)
    for name, sp in report["splits"].items():
        assert list(sp["estimators"]) == list(life_evaluate.ESTIMATORS)
        d = sp["estimators"]["data_only"]
        assert not d["deterministic"] and len(d["per_seed"]) == 3 and d["std"]["sei_mae_nm"] >= 0
        for est in sp["estimators"].values():
            assert set(est["mean"]) >= {"sei_mae_nm", "sei_mae_pct_of_growth", "lli_mae_points",
                                        "capacity_mae_pct"}
            assert all(np.isfinite(v) for v in est["mean"].values())
    hot = report["splits"]["hotter_45C"]
    assert hot["cycles"] == [15, 24] and "ambient_temperature 45 (+20" in hot["holds_out"]
    assert report["splits"]["unseen_cells"]["holds_out"] == "unseen cells [1]"
    assert any("no unseen C-rate" in line for line in report["coverage"])
    # the cells follow the twin's model exactly: it is far better than its baselines here
    assert all(report["splits"]["unseen_cells"]["twin_better_than_baselines"].values())
    json.dumps(report)  # the JSON file's content
    md = life_report.markdown(report)
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert sum(any(f"| {e} |" in r for r in rows) for e in life_evaluate.ESTIMATORS) == 4
    assert len([r for r in rows if " +- " in r]) == len(SPLITS)  # data_only: mean +- std
    assert report["calibration"]["pulses"] == {"in_store": False, "read": False,
                                               "film_gain": None}
    assert "Check-up pulses (`checkup_pulse_resistance`): none in the store." in md


def _config(tmp_path, store, **life_changes) -> str:
    import yaml

    cfg = {"store": str(store), "output": str(tmp_path / "out"),
           "life": _spec(seeds=[0], **life_changes)}
    path = tmp_path / "life.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_packtwin_evaluate_runs_the_life_section_and_writes_its_report(life_store, tmp_path,
                                                                       one_torch_thread, cli_argv,
                                                                       capsys):
    from packtwin.eval import evaluate

    store = tmp_path / "life.zarr"
    life_store.to_zarr(store, consolidated=False)
    assert evaluate.main(["--config", _config(tmp_path, store), "--progress", "false"]) == 0
    out = tmp_path / "out"
    rep = json.loads((out / life_evaluate.REPORT_JSON).read_text())
    assert list(rep["splits"]) == list(SPLITS) and rep["calibration"]["upto_cycle"] == UPTO
    assert (out / life_evaluate.REPORT_MD).read_text().startswith(life_report.TITLE)
    assert not (out / "metrics.zarr").exists()  # life only: no twin training or metrics store
    assert "life_report.md" in capsys.readouterr().out


def test_packtwin_evaluate_refuses_a_store_without_life_series_by_name(synthetic_store, tmp_path,
                                                                       cli_argv):
    from packtwin.eval import evaluate

    # the PINN's synthetic store: per-cycle summaries, but no per-cycle V/I/T
    with pytest.raises(LifeConfigError, match=rf"{synthetic_store}': variable 'life_temperature' "
                                              r"is missing \(expected dims \('scenario', 'cell', "
                                              r"'cycle', 'time'\)\).*cycle_series: true"):
        evaluate.main(["--config", _config(tmp_path, synthetic_store), "--progress", "false"])
    with pytest.raises(LifeConfigError, match=r"unknown keys \['temperature'\]"):
        evaluate.main(["--config", _config(tmp_path, synthetic_store,
                                           splits={"x": {"temperature": [1]}})])


def test_the_life_section_scores_as_the_standalone_life_evaluation(report, life_store):
    from packtwin.eval import life

    model, live, forecast, _ = life.twin_estimates(life_store, [0], [0], UPTO)
    groups = life.judge(life_store, live, forecast, [0], [0], UPTO, model.L_0 * 1e9)["groups"]
    for split, group in (("cycles_beyond", "seen_cells"), ("unseen_cells", "unseen_cells")):
        for est in ("twin", "twin_forecast", "sqrt_fit"):
            got = report["splits"][split]["estimators"][est]["mean"]
            assert got == pytest.approx(groups[group][est], rel=1e-12), (split, est)


def _plating_store(life_store):
    """life_store with PyBaMM-like plating truth: events at every third cycle, lithium still
    plated at each cycle's end P (its LLI added to the truth's, as PyBaMM counts it)."""
    from packtwin.physics.lli import plated_points

    ds = life_store.copy(deep=True)
    cycles = ds["cycle"].values.astype(float)
    dims, shape = ("scenario", "cell", "cycle"), ds["lli"].shape
    event = np.broadcast_to((cycles % 3 == 0).astype(float), shape)
    plated = np.broadcast_to(150.0 + 5.0 * cycles, shape)
    ds["plating_event"] = (dims, event.copy())
    ds["plating_margin_min"] = (dims, np.where(event > 0, -0.01, 0.01))
    ds["plated_lithium_end"] = (dims, plated.copy())
    ds["lli"] = ds["lli"] + plated_points(plated)
    return schema.apply_attrs(ds)


@pytest.fixture
def stub_plating(monkeypatch):
    """The plating estimate replaced by a constructed one (the reduced core is tested in
    test_plating.py and, end to end, in tests/integration/test_plating_life.py): the true plated
    lithium exactly, events at every third and every fifth cycle."""
    import xarray as xr

    from packtwin.eval import plating_life

    def estimate_store(ds, life_est, params="nominal", **kwargs):
        cycles = ds["cycle"].values
        ev = np.broadcast_to(((cycles % 3 == 0) | (cycles % 5 == 0)).astype(float),
                             ds["lli"].shape)
        est = xr.Dataset({"plating_event_est": (ds["lli"].dims, ev.copy()),
                          "plating_margin_min_est": (ds["lli"].dims, np.where(ev > 0, -0.01, 0.01)),
                          "plated_lithium_end_est": ds["plated_lithium_end"].copy()})
        return est, {"params": params, "stub": True}

    monkeypatch.setattr(plating_life, "estimate_store", estimate_store)


def test_the_twins_lli_adds_its_plated_lithium_estimate(life_store, stub_plating):
    from packtwin.eval import life

    plated = _plating_store(life_store)
    base = life.twin_estimates(life_store, [0], [0], UPTO)  # truth without plating
    without = life.twin_estimates(plated, [0], [0], UPTO)
    with_pl = life.twin_estimates(plated, [0], [0], UPTO, plating="nominal")
    L0 = base[0].L_0 * 1e9

    def lli_mae(ds, est):
        groups = life.judge(ds, est[1], est[2], [0], [0], UPTO, L0)["groups"]
        return groups["unseen_cells"]["twin"]["lli_mae_points"]

    # calibrated on the SEI and dead lithium alone, plus the (here exact) plated estimate: the
    # same error as the twin on a store without plating; leaving it out costs ~0.5 points
    assert lli_mae(plated, with_pl) == pytest.approx(lli_mae(life_store, base), abs=1e-9)
    assert lli_mae(plated, without) > 0.3 + lli_mae(life_store, base)
    np.testing.assert_allclose(with_pl[1]["sei_thickness_est"], base[1]["sei_thickness_est"],
                               rtol=1e-9)
    assert with_pl[3]["twin"]["stub"] and with_pl[1].attrs["lli_includes_plated"] == 1


def test_life_section_reports_plating_per_split_and_estimator(life_store, stub_plating,
                                                             one_torch_thread):
    rep = life_evaluate.evaluate(_plating_store(life_store),
                                 life_evaluate.parse(_spec(seeds=[0], plating="nominal")),
                                 source="plated.zarr")
    assert rep["plating"]["params"] == "nominal" and rep["plating"]["lli_includes_plated"]
    unseen = rep["splits"]["unseen_cells"]["plating"]  # scenario 0, cell 1, cycles 11..24
    assert unseen["sqrt_fit"] is None and unseen["data_only"] is None
    for est in ("twin", "twin_forecast"):  # true 12, 15, 18, 21, 24; estimated also 20
        row = unseen[est]
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (5, 1, 0, 8)
        assert row["precision"] == pytest.approx(5 / 6) and row["f1"] == pytest.approx(10 / 11)
        assert row["plated_lithium_mae"] == 0.0
        assert row["plated_lithium_true_mean"] == pytest.approx(150 + 5 * 17.5)
    json.dumps(rep)
    md = life_report.markdown(rep)
    assert "| unseen_cells | twin | 0.833 | 1 | 0.909 (5/1/0/8) | 0 | 238 |" in md
    assert "|  | sqrt_fit | n/a | n/a | n/a | n/a | n/a |" in md


def test_life_section_with_plating_refuses_a_store_without_plating_truth_by_name(life_store):
    with pytest.raises(LifeConfigError, match=r"'plating' must be one of \('nominal', 'truth'\)"):
        life_evaluate.parse(_spec(plating="yes"))
    for bad in (0, 2.5, True):
        with pytest.raises(LifeConfigError, match=r"'plating_every' must be an integer >= 1"):
            life_evaluate.parse(_spec(plating="nominal", plating_every=bad))
    assert life_evaluate.parse(_spec(plating="nominal", plating_every=10)).plating_every == 10
    cfg = life_evaluate.parse(_spec(plating="nominal"))
    old = _plating_store(life_store).drop_vars(["plated_lithium_end"])
    with pytest.raises(LifeConfigError, match=r"old.zarr: 'plating' needs the per-cycle plating "
                                              r"truth \['plated_lithium_end'\]"):
        life_evaluate.evaluate(old, cfg, source="old.zarr")
    life_evaluate.check_store(old, "old.zarr")  # without plating it is still read
    from packtwin.physics.life_pack import calibrate_pack

    with pytest.raises(ValueError, match=r"the store lacks \['plated_lithium_end'\]"):
        calibrate_pack(life_store, [0], [0], upto_cycle=UPTO, plated_apart=True)


def test_life_section_with_plating_on_a_store_without_events_scores_no_event(
        life_store, stub_plating, one_torch_thread):
    """A store written before the per-cycle events: the plated lithium still enters the twin's
    LLI and is scored; the events are not (counts 0, NaN scores), and the report says so."""
    no_events = _plating_store(life_store).drop_vars(["plating_event", "plating_margin_min"])
    rep = life_evaluate.evaluate(no_events, life_evaluate.parse(_spec(seeds=[0],
                                                                      plating="nominal")),
                                 source="old.zarr")
    assert rep["plating"]["events_scored"] is False
    row = rep["splits"]["unseen_cells"]["plating"]["twin"]
    assert row["n"] == 0 and np.isnan(row["f1"]) and row["plated_lithium_mae"] == 0.0
    assert "events are not scored" in life_report.markdown(rep)


def test_rate_from_fade_reaches_the_twin_and_is_refused_unless_a_bool(life_store):
    from packtwin.eval import life

    with pytest.raises(LifeConfigError, match=r"'rate_from_fade' must be true or false, got 'no'"):
        life_evaluate.parse(_spec(rate_from_fade="no"))
    assert life_evaluate.parse(_spec()).rate_from_fade is True
    assert life_evaluate.parse(_spec(rate_from_fade=False)).rate_from_fade is False
    rates = {}
    for flag in (True, False):
        model, live, _, _ = life.twin_estimates(life_store, [0], [0], UPTO, rate_from_fade=flag)
        assert model.rate_from_fade is flag
        rates[flag] = live["sei_diffusivity_est"].values[:, 1]  # the uncalibrated cell
    np.testing.assert_allclose(rates[False], model.D_nominal, rtol=1e-12)
    assert np.nanmax(np.abs(rates[True] / model.D_nominal - 1)) > 0.01


def test_lithium_from_reaches_the_twin_and_is_refused_unless_known():
    from packtwin.eval import life

    with pytest.raises(LifeConfigError, match=r"'lithium_from' must be one of \('capacity', "
                                              r"'checkup'\), got 'voltage'"):
        life_evaluate.parse(_spec(lithium_from="voltage"))
    assert life_evaluate.parse(_spec()).lithium_from == "capacity"
    cfg = life_evaluate.parse(_spec(lithium_from="checkup"))
    assert cfg.lithium_from == "checkup"
    # the hot scenario's fade costs 1.5 x per lithium: only the check-ups keep the LLI of the
    # cell not calibrated on (the calibration cell's fade is gated out there and its own psi,
    # right in these data, carries it either way)
    ds = _store(n_cycles=40, checkup_every=8, beta=(1.0, 1.5), psi=3e-10,
                ocv_checkups=True).assign_coords(discharge_c_rate=("scenario", [1.0, 1.0]))
    err = {}
    for source in ("capacity", "checkup"):
        model, live, _, _ = life.twin_estimates(ds, [0], [0], 20, rate_from_fade=False,
                                                lithium_from=source)
        assert model.lithium_from == source
        err[source] = abs(live["lli_est"].values[1, 1, -1] - ds["lli"].values[1, 1, -1])
    assert err["checkup"] < 0.25 * err["capacity"]
    # a store without check-ups is refused by name, not estimated from the fade silently
    with pytest.raises(ValueError, match="no 'checkup' variable"):
        life.twin_estimates(ds.drop_vars("checkup"), [0], [0], 20, lithium_from="checkup")


def test_check_up_pulses_reach_the_twin_and_are_refused_unless_a_bool():
    """An unseen cell's SEI rate 16 % above nominal: with the fade kept off the rate, only the
    check-up pulses move it, and life.use_pulse false leaves them unread."""
    from packtwin.eval import life

    with pytest.raises(LifeConfigError, match=r"'use_pulse' must be true or false, got 1"):
        life_evaluate.parse(_spec(use_pulse=1))
    assert life_evaluate.parse(_spec()).use_pulse is True
    assert life_evaluate.parse(_spec()).pulse_gain == "dfn"
    assert life_evaluate.parse(_spec(pulse_gain=1)).pulse_gain == 1.0
    for bad in ("pybamm", 0, -1.0, True):
        with pytest.raises(LifeConfigError, match="'pulse_gain' must be \"dfn\" or a number"):
            life_evaluate.parse(_spec(pulse_gain=bad))
    ds = _store(n_cycles=120, checkup_every=20, pulses=True).assign_coords(
        discharge_c_rate=("scenario", [1.0, 1.0]))
    assert cell_life(ds, 0, 1)["checkup_pulse_resistance"].notnull().sum() == 6
    # the synthetic store records no generator config: the DFN gain cannot be had, said by name
    with pytest.raises(PacktwinError, match="no 'generator_config'.*life.pulse_gain"):
        life.twin_estimates(ds, [0], [0], 20, rate_from_fade=False)
    sei, truth = {}, ds["sei_thickness_end"].values[:, 1, -1]
    for flag in (True, False):
        model, live, _, _ = life.twin_estimates(ds, [0], [0], 20, rate_from_fade=False,
                                                use_pulse=flag, pulse_gain=1.0)
        assert model.use_pulse is flag
        sei[flag] = live["sei_thickness_est"].values[:, 1, -1]
        if not flag:
            np.testing.assert_allclose(live["sei_diffusivity_est"].values[:, 1],
                                       model.D_nominal, rtol=1e-12)
    assert (np.abs(sei[True] - truth) < 0.5 * np.abs(sei[False] - truth)).all()
    # pulses that read 3 % more than kappa x the film (a store whose gain is 1.03): read with
    # that gain, the twin ends where the exact pulses read with kappa put it (within 0.02 nm:
    # the pulse's noise is relative to kappa_pulse); read with kappa alone, higher
    high = ds.copy()
    high["checkup_pulse_resistance"] = 0.025 + 1.03 * (ds["checkup_pulse_resistance"] - 0.025)
    end = {g: life.twin_estimates(high, [0], [0], 20, rate_from_fade=False, pulse_gain=g)[1][
        "sei_thickness_est"].values[:, 1, -1] for g in (1.0, 1.03)}
    np.testing.assert_allclose(end[1.03], sei[True], atol=0.02)
    assert (end[1.0] > sei[True] + 0.1).all()


def test_the_life_section_reads_a_stores_pulses(tmp_path, one_torch_thread):
    """From a Zarr store, as packtwin evaluate reads it (a subset of its variables loaded): the
    pulses reach the twin and the report says so; with use_pulse false they do not."""
    ds = _store(n_cycles=120, checkup_every=20, pulses=True).assign_coords(
        discharge_c_rate=("scenario", [1.0, 1.0]))
    path = tmp_path / "pulses.zarr"
    ds.to_zarr(path, consolidated=False)
    spec = _spec(seeds=[0], splits={"unseen_cells": {"ambient_temperature": [25], "cells": [1]}},
                 rate_from_fade=False, pulse_gain=1.0)
    on = life_evaluate.run(spec, str(path), tmp_path / "on")
    off = life_evaluate.run({**spec, "use_pulse": False}, str(path), tmp_path / "off")
    assert on["calibration"]["pulses"] == {"in_store": True, "read": True, "film_gain": {
        "setting": 1.0, "per_run": [[1.0, 1.0], [1.0, 1.0]]}}
    assert off["calibration"]["pulses"] == {"in_store": True, "read": False, "film_gain": None}
    err = {k: r["splits"]["unseen_cells"]["estimators"]["twin"]["mean"]["sei_mae_nm"]
           for k, r in (("on", on), ("off", off))}
    assert err["on"] < 0.75 * err["off"]  # the pulses start correcting at cycle 40
    md = (tmp_path / "on" / life_evaluate.REPORT_MD).read_text()
    assert "read by the twin" in md and "gain 1.0: 1 over the runs" in md
