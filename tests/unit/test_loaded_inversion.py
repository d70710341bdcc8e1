"""The loaded-voltage start prior (packtwin/physics/loaded_inversion.py, issue #9 item 4)."""

import pytest
import torch

from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.loaded_inversion import (PRIORS, REST_CURRENT_A, invert_loaded,
                                               loaded_voltage, start_stoichiometry)
from packtwin.physics.observer_stream import cell_lines, cell_soc_window
from packtwin.physics.ocv_inversion import invert_ocv

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)


@pytest.fixture(scope="module")
def core():
    return ReducedCore(CoreParams.nominal(4), TINY)


def _f64(*x):
    return torch.tensor(x, dtype=torch.float64)


def test_round_trip_under_load(core):
    lo, hi = cell_soc_window(core)
    sto = lo + (hi - lo) * _f64(0.2, 0.45, 0.7, 0.9)
    line = cell_lines(core)
    # discharge > 0 (the nominal cell is 5 Ah); the tiny core collapses at 1C and -10 degC
    for T, I in ((298.15, _f64(5.0, -2.5, 2.5, 1.0)), (263.15, _f64(1.0, -1.0, 0.5, 0.25))):
        T = torch.full((4,), T, dtype=torch.float64)
        # a short history keeps the test fast (2 core steps per evaluation)
        V = loaded_voltage(core, sto, I, T, lo, hi, history_s=120.0)
        assert V.shape == (4,) and (V > 2.5).all() and (V < 4.4).all()
        back = invert_loaded(core, V, I, T, line, lo, hi, history_s=120.0, iterations=9)
        assert back.shape == (4,)
        assert torch.allclose(back, sto, atol=1e-6), (T[0], back - sto)
        # the loaded voltage is not an OCV: read as one, the discharging cells look emptier
        ocv_read = invert_ocv(V, line)
        assert (ocv_read[I > 0] < sto[I > 0] - 1e-3).all()
        assert (ocv_read[I < 0] > sto[I < 0] + 1e-3).all()


def test_zero_current_is_the_ocv_inversion(core):
    V = _f64(3.4, 3.7, 3.95, 4.1)
    zero = torch.zeros(4, dtype=torch.float64)
    T = torch.full((4,), 273.15, dtype=torch.float64)
    got = invert_loaded(core, V, zero, T, iterations=3)
    assert torch.allclose(got, invert_ocv(V, cell_lines(core)), atol=1e-9)
    assert torch.allclose(start_stoichiometry(core, V, zero, T, prior="ocv"),
                          invert_ocv(V, cell_lines(core)))


def test_balancing_current_is_read_as_rest(core):
    """|I| <= REST_CURRENT_A (a parallel group's balancing current at rest): the OCV reading;
    above it the load counts."""
    V = _f64(3.6, 3.6, 3.6, 3.6)
    T = torch.full((4,), 263.15, dtype=torch.float64)
    I = _f64(REST_CURRENT_A, -0.5 * REST_CURRENT_A, 0.5, -0.5)
    got = start_stoichiometry(core, V, I, T, history_s=120.0)
    ocv = invert_ocv(V, cell_lines(core))
    assert torch.equal(got[:2], ocv[:2])
    assert got[2] > ocv[2] + 1e-4 and got[3] < ocv[3] - 1e-4  # discharge: fuller than it reads


def test_clamped_to_the_line_ends(core):
    line = cell_lines(core)
    a = ((line.n_li - line.cap_p) / line.cap_n).clamp(min=0.0) + 1e-4  # like invert_ocv
    b = (line.n_li / line.cap_n).clamp(max=1.0) - 1e-4
    T = torch.full((4,), 298.15, dtype=torch.float64)
    got = invert_loaded(core, _f64(0.5, 9.0, 0.5, 9.0), _f64(0.0, 0.0, 2.0, -2.0), T,
                        history_s=120.0, iterations=4)
    assert torch.allclose(got[[0, 2]], a[[0, 2]].to(torch.float64))
    assert torch.allclose(got[[1, 3]], b[[1, 3]].to(torch.float64))


def test_unknown_prior_refused(core):
    assert PRIORS == ("loaded_window", "loaded", "ocv")
    with pytest.raises(ValueError, match="loaded"):
        start_stoichiometry(core, _f64(3.7, 3.7, 3.7, 3.7), torch.zeros(4), torch.full((4,), 298.0),
                            prior="rest")
