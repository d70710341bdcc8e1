"""Generator options for life runs: check-up cycles and every cycle's V/I/T (no PyBaMM)."""

import dataclasses

import pytest

from packtwin.errors import ConfigError
from packtwin.sim import budget
from packtwin.sim import config as cfgmod
from packtwin.sim.generate import upgrade_stored_config


def _cfg(**protocol):
    return cfgmod.GenerateConfig(protocol=cfgmod.ProtocolConfig(**protocol), n_cycles=10)


def test_checkup_cycles_and_their_padded_discharge():
    cfg = _cfg(checkup_every=4, checkup_c_rate=0.2)
    assert [c for c in range(1, 11) if cfgmod.is_checkup(cfg, c)] == [4, 8]
    assert not any(cfgmod.is_checkup(_cfg(), c) for c in range(1, 11))
    # the time axis holds a C/5 discharge (1.3 x 5 h at 60 s), not only the 1C one
    assert cfgmod.phase_steps(cfg, cfg.scenarios[0])["discharge"] == 390
    assert cfgmod.phase_steps(_cfg(), cfg.scenarios[0])["discharge"] == 78
    assert cfgmod.n_time(cfg) == cfgmod.n_time(_cfg()) + 390 - 78


def test_bad_checkup_options_are_named():
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(_cfg(checkup_every=-1, checkup_c_rate=0.0))
    assert "protocol.checkup_every must be an integer >= 0" in str(err.value)
    assert "protocol.checkup_c_rate must be a positive C-rate, found 0.0" in str(err.value)


def test_life_variables_stored_and_budgeted():
    cfg = _cfg(checkup_every=5)
    assert cfgmod.life_vars(cfg) == ["checkup"]
    series = dataclasses.replace(cfg, cycle_series=True)
    assert cfgmod.life_vars(series) == ["life_voltage", "life_current", "life_temperature",
                                        "checkup"]
    extra = budget.estimate(series).store_bytes - budget.estimate(cfg).store_bytes
    n = 4 * 10 * cfgmod.n_time(cfg)  # cells x cycles x samples, float32, 3 series
    assert extra == pytest.approx(3 * 4 * n)


def test_a_store_made_before_the_life_options_resumes_with_their_defaults():
    old = cfgmod.to_dict(cfgmod.GenerateConfig())
    del old["cycle_series"], old["protocol"]["checkup_every"], old["protocol"]["checkup_c_rate"]
    default = cfgmod.GenerateConfig()
    assert upgrade_stored_config(old, default) == cfgmod.to_dict(default)
    assert cfgmod.from_dict(old) == cfgmod.GenerateConfig()
    # but not with other values: that would be other physics
    other = cfgmod.GenerateConfig(protocol=cfgmod.ProtocolConfig(checkup_every=3))
    assert upgrade_stored_config(old, default) != cfgmod.to_dict(other)


def test_a_store_made_before_the_exact_cut_off_resumes_only_with_the_grid_cut_off():
    old = cfgmod.to_dict(cfgmod.GenerateConfig())
    del old["solver"]["cutoff"]
    default = cfgmod.GenerateConfig()
    assert default.solver.cutoff == "crossing"
    assert upgrade_stored_config(old, default) != cfgmod.to_dict(default)  # not mixed into it
    grid = cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(cutoff="grid"))
    assert upgrade_stored_config(old, grid) == cfgmod.to_dict(grid)


def test_an_unknown_cut_off_is_refused_naming_the_choices():
    cfg = cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(cutoff="event"))
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(cfg)
    assert "solver.cutoff must be one of ['crossing', 'grid'], found 'event'" in str(err.value)


def test_an_unknown_coupling_or_the_dae_with_the_grid_cut_off_is_refused():
    cfg = cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(coupling="joint"))
    with pytest.raises(ConfigError, match=r"solver.coupling must be one of \['stepped', 'dae'\], "
                                          r"found 'joint'"):
        cfgmod.validate(cfg)
    cfg = cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(coupling="dae", cutoff="grid"))
    with pytest.raises(ConfigError, match="needs solver.cutoff 'crossing', found 'grid'"):
        cfgmod.validate(cfg)
    cfgmod.validate(cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(coupling="dae")))


def test_a_store_made_before_the_coupling_option_resumes_only_stepped():
    old = cfgmod.to_dict(cfgmod.GenerateConfig())
    del old["solver"]["coupling"]
    stepped = cfgmod.GenerateConfig()
    assert stepped.solver.coupling == "stepped"
    assert upgrade_stored_config(old, stepped) == cfgmod.to_dict(stepped)
    dae = cfgmod.GenerateConfig(solver=cfgmod.SolverConfig(coupling="dae"))
    assert upgrade_stored_config(old, dae) != cfgmod.to_dict(dae)


def test_check_up_pulse_options():
    cfg = _cfg(checkup_every=5, checkup_pulse_c_rate=1.0)
    assert cfgmod.has_pulse(cfg) and not cfgmod.has_pulse(_cfg(checkup_every=5))
    assert cfgmod.life_vars(cfg) == ["checkup", "checkup_pulse_resistance"]
    # half of the nominal capacity at C/5 (2.5 h) on the 60 s grid: the pulse fills period 150
    assert cfgmod.pulse_period(cfg) == 150
    with pytest.raises(ConfigError) as err:
        cfgmod.validate(_cfg(checkup_pulse_c_rate=1.0, checkup_pulse_s=60.0,
                             checkup_pulse_at=0.99))
    msg = str(err.value)
    assert "checkup_pulse_c_rate > 0 needs check-up cycles" in msg
    assert "protocol.checkup_pulse_s must be in (0, solver.period_s = 60.0) s" in msg
    assert "protocol.checkup_pulse_at must be a discharged fraction in [0.05, 0.9], found 0.99" in msg
    with pytest.raises(ConfigError, match="checkup_pulse_c_rate must be a C-rate >= 0"):
        cfgmod.validate(_cfg(checkup_every=5, checkup_pulse_c_rate=-1.0))
    # a store made before the pulse resumes with no pulse, and only then
    old = cfgmod.to_dict(_cfg(checkup_every=5))
    for key in ("checkup_pulse_c_rate", "checkup_pulse_s", "checkup_pulse_at"):
        del old["protocol"][key]
    assert upgrade_stored_config(old, _cfg(checkup_every=5)) == cfgmod.to_dict(
        _cfg(checkup_every=5))
    assert upgrade_stored_config(old, cfg) != cfgmod.to_dict(cfg)
