"""The check-up pulse against PyBaMM: what a 1 s current step inside a slow discharge reads of
the SEI film, and what it does not (the generator's options, OKane2022, coarse life mesh)."""

import numpy as np
import pytest

from packtwin.physics.life_state import life_model

pybamm = pytest.importorskip("pybamm")

VAR_PTS = {"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}


def _pulse_resistance(L_sei_m: float, j0_scale: float = 1.0, T_c: float = 25.0) -> float:
    """Resistance [Ohm] of a 1C step held 1 s after 5 min at C/5 from half charge, read as the
    generator reads it (packtwin.sim.pulse_gain.step_resistance), the generator's options."""
    from packtwin.sim.config import ModelConfig
    from packtwin.sim.pulse_gain import step_resistance

    model = pybamm.lithium_ion.DFN(ModelConfig().options)
    pv = pybamm.ParameterValues("OKane2022")
    pv.update({"Contact resistance [Ohm]": 0.005, "Initial SEI thickness [m]": L_sei_m,
               "Ambient temperature [K]": 273.15 + T_c, "Initial temperature [K]": 273.15 + T_c})
    j0 = pv["Negative electrode exchange-current density [A.m-2]"]
    pv["Negative electrode exchange-current density [A.m-2]"] = (
        lambda ce, cs, cmax, T: j0_scale * j0(ce, cs, cmax, T))
    return step_resistance(model, pv, 0.2, 300.0, 1.0, 1.0, VAR_PTS, initial_soc=0.5)


def test_the_pulse_reads_the_film_at_the_twins_kappa_and_nothing_else_of_the_sei():
    """20 nm more SEI raise the pulse resistance by kappa x 20 nm (kappa = rho_SEI / (a L_n A),
    the life twin's film term) within 3 %; a 10 % faster charge transfer or a hotter cell moves
    the resistance itself by far more than the film, but not the film's slope (within 2 %): the
    rise of one cell's pulse over life is its film."""
    kappa = life_model().kappa
    r5, r25 = _pulse_resistance(5e-9), _pulse_resistance(25e-9)
    slope = (r25 - r5) / 20e-9
    assert slope == pytest.approx(kappa, rel=0.03)
    assert r25 - r5 > 1e-3  # > 1 mOhm: at 1C (5 A) a 5 mV step, well above a logger's resolution
    for kw in ({"j0_scale": 1.1}, {"T_c": 45.0}):
        a, b = _pulse_resistance(5e-9, **kw), _pulse_resistance(25e-9, **kw)
        assert abs(a - r5) > 0.5 * (r25 - r5)  # the offset moves more than half the film ...
        assert (b - a) / 20e-9 == pytest.approx(slope, rel=0.02)  # ... the film's slope does not
    assert np.isfinite([r5, r25]).all()
