"""The check-up pulse's film gain (packtwin/sim/pulse_gain.py) against PyBaMM: a property of the
cell and its temperature, not of the film's thickness or the mesh; and what a store must record
for it."""

import json

import numpy as np
import pytest
import xarray as xr

from packtwin.physics.life_state import life_model
from packtwin.sim import pulse_gain as pg

pybamm = pytest.importorskip("pybamm")

PROTOCOL = pg.PulseProtocol(checkup_c_rate=0.2, pulse_c_rate=1.0, pulse_s=0.1, pulse_at=0.5)
GENERATOR = {"protocol": {"checkup_c_rate": 0.2, "checkup_pulse_c_rate": 1.0,
                          "checkup_pulse_s": 0.1, "checkup_pulse_at": 0.5},
             "model": {"model": "DFN", "parameter_set": "OKane2022",
                       "options": {"SEI": "solvent-diffusion limited",
                                   "lithium plating": "partially reversible",
                                   "thermal": "lumped", "contact resistance": "true"},
                       "parameter_overrides": {"Contact resistance [Ohm]": 0.005,
                                               "Total heat transfer coefficient [W.m-2.K-1]": 50.0}}}
LIFE_MESH = {"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}  # the life presets' coarse mesh


def _spec():
    return pg.of_store(xr.Dataset(attrs={"generator_config": json.dumps(GENERATOR)}))[1]


@pytest.mark.slow
def test_the_gain_is_the_cells_and_its_temperatures_not_the_films_or_the_meshs():
    """On the nominal cell the pulse reads 1-4 % more than kappa x the film at 25 C and less of
    the excess at 45 C; the 25 C gain taken from 5 -> 25 nm on the twin's fine mesh predicts the
    rise from 15 -> 35 nm on the life presets' 8-point mesh within 0.5 %."""
    kappa, spec = life_model().kappa, _spec()
    g25 = pg.film_gain(298.15, PROTOCOL, spec, kappa)
    g45 = pg.film_gain(318.15, PROTOCOL, spec, kappa)
    assert 1.005 < g25 < 1.04
    assert g45 < g25 - 0.005  # hotter: closer to kappa (measured 1.022 vs 1.007)
    r15, r35 = (pg.pulse_resistance(298.15, L, PROTOCOL, spec, var_pts=LIFE_MESH)
                for L in (15e-9, 35e-9))
    assert (r35 - r15) / (kappa * 20e-9) == pytest.approx(g25, rel=0.005)


def test_a_store_without_its_pulse_protocol_is_refused_by_name():
    ds = xr.Dataset(attrs={})
    with pytest.raises(pg.PulseGainError, match=r"pack\.zarr: has check-up pulses but no "
                                                r"'generator_config'.*life\.pulse_gain"):
        pg.of_store(ds, "pack.zarr")
    broken = {"protocol": {"checkup_c_rate": 0.2}, "model": GENERATOR["model"]}
    with pytest.raises(pg.PulseGainError, match="lacks 'checkup_pulse_c_rate'"):
        pg.of_store(xr.Dataset(attrs={"generator_config": json.dumps(broken)}), "x.zarr")
    no_pulse = json.loads(json.dumps(GENERATOR))
    no_pulse["protocol"]["checkup_pulse_c_rate"] = 0.0
    with pytest.raises(pg.PulseGainError, match="no check-up pulse"):
        pg.of_store(xr.Dataset(attrs={"generator_config": json.dumps(no_pulse)}), "x.zarr")


def test_each_run_gets_the_gain_of_its_measured_check_up_temperature(monkeypatch):
    """Runs share a gain when their check-up temperatures round to the same 0.5 K; a run
    without a check-up keeps 1.0; the gain is asked once per temperature."""
    asked = []

    def fake_gain(T, protocol, spec, kappa):
        asked.append(T)
        return 1.0 + (T - 273.15) / 1000.0

    monkeypatch.setattr(pg, "film_gain", fake_gain)
    T = np.full((2, 2, 3, 4), np.nan)
    T[0, :, :, :2] = 298.2
    T[1, 0, :, :2] = 318.3
    ck = np.zeros((2, 2, 3))
    ck[:, :, 1] = 1.0
    ck[1, 1, :] = 0.0  # no check-up in this run
    ds = xr.Dataset({"life_temperature": (("scenario", "cell", "cycle", "time"), T),
                     "checkup": (("scenario", "cell", "cycle"), ck)},
                    attrs={"generator_config": json.dumps(GENERATOR)})
    g = pg.store_gains(ds, 6e4, "x.zarr")
    np.testing.assert_allclose(g, [[1.02485, 1.02485], [1.04535, 1.0]])
    assert asked == [298.0, 298.0, 318.5]
    with pytest.raises(pg.PulseGainError, match=r"lacks \['life_temperature'\]"):
        pg.store_gains(ds.drop_vars("life_temperature"), 6e4, "x.zarr")
