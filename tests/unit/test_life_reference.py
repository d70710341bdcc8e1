"""Life data from PyBaMM (packtwin.sim.life_reference) and the life twin tracking it."""

import numpy as np
import pytest

from packtwin import schema
from packtwin.physics.life_state import life_model
from packtwin.physics.life_twin import calibrate, track

pytestmark = pytest.mark.slow  # ~10 s of PyBaMM on an idle core, ~50 s on the shared machine

N_CYCLES = 8


@pytest.fixture(scope="module")
def life():
    from packtwin.sim.config import GenerateConfig
    from packtwin.sim.generate import draw_cells
    from packtwin.sim.life_reference import run_life

    cells, nominal = draw_cells(GenerateConfig())
    return run_life(cells[1], nominal, N_CYCLES, 40.0, chunk=4, cell=1)


def test_summaries_are_sane_and_declared(life):
    assert life.sizes[schema.CYCLE] == N_CYCLES
    for name in ("capacity", "lli", "sei_thickness_end", "plated_lithium_end",
                 "temperature_max", "life_voltage", "life_current", "life_temperature"):
        assert life[name].attrs["units"] == schema.units(name), name
    lli = life["lli"].values.ravel()
    sei = life["sei_thickness_end"].values.ravel()
    assert lli[0] > 0 and np.all(np.diff(lli) > 0)
    assert sei[0] > 5.0 and np.all(np.diff(sei) > 0)
    cap = life["capacity"].values.ravel()
    assert np.all((cap > 4.5) & (cap < 5.2))
    # chunked solve: no jump at the chunk boundary (cycle 4 -> 5) beyond its neighbours
    steps = np.diff(sei)
    assert steps[3] < 1.2 * steps[2]
    T = life["life_temperature"].values[0, 0]
    assert np.nanmin(T) > 312.0 and np.nanmax(T) < 330.0  # 40 C ambient plus self-heating


def test_twin_tracks_pybamm_over_few_cycles(life):
    # calibrated (beta, kappa, priors) on cycles <= 5, judged on 6..8 from V/I/T only
    model = calibrate([life], life_model(), upto_cycle=5)
    est = track(life, model)
    late = life[schema.CYCLE].values > 5
    sei_true = life["sei_thickness_end"].values.ravel()
    sei_err = np.abs(est["sei_thickness_est"].values.ravel() - sei_true)[late]
    assert sei_err.max() < 0.05 * (sei_true[-1] - 5.0)
    lli_err = np.abs(est["lli_est"].values - life["lli"].values).ravel()[late]
    assert lli_err.max() < 0.005  # percentage points
    cap = life["capacity"].values.ravel()
    assert np.abs(est["capacity_est"].values.ravel() / cap - 1)[late].max() < 5e-4
