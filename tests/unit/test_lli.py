"""Loss of lithium inventory with the lithium still plated (packtwin.physics.lli) against PyBaMM's
own definition: "Loss of lithium inventory [%]" = (1 - n_Li_particles / n_Li_particles_init) 100."""

import numpy as np
import pytest

from packtwin.physics import lli
from packtwin.physics.life_state import life_model


@pytest.fixture(scope="module")
def okane():
    import pybamm

    return pybamm, pybamm.ParameterValues("OKane2022")


def test_inventory_and_plated_moles_are_pybamms(okane):
    pybamm, pv = okane
    n0 = pv.evaluate(pybamm.LithiumIonParameters().n_Li_particles_init)
    assert lli.particle_inventory_mol() == pytest.approx(n0, rel=1e-12)
    assert life_model().n_li0 == pytest.approx(n0, rel=1e-12)  # the twin's own inventory
    # PyBaMM's base_plating: Q_plated = c_plated_av * L_n * L_y * L_z
    volume = pv["Negative electrode thickness [m]"] * pv["Electrode height [m]"] \
        * pv["Electrode width [m]"]
    assert lli.plated_mol(250.0) == pytest.approx(250.0 * volume, rel=1e-12)


def test_constructed_loss_with_plated_lithium_equals_pybamms_lli(okane):
    pybamm, pv = okane
    n0 = pv.evaluate(pybamm.LithiumIonParameters().n_Li_particles_init)
    volume = pv["Negative electrode thickness [m]"] * pv["Electrode height [m]"] \
        * pv["Electrode width [m]"]
    sei_mol, dead, plated = 1.2e-3, 40.0, np.array([0.0, 173.0, 2500.0])  # mol, mol/m3, mol/m3
    particles = n0 - sei_mol - (dead + plated) * volume  # what is left in the particles
    pybamm_lli = (1.0 - particles / n0) * 100.0
    ours = lli.with_plated(lli.lli_points(sei_mol + lli.plated_mol(dead)), plated)
    np.testing.assert_allclose(ours, pybamm_lli, rtol=1e-12)
    # 173 mol/m3 x 85.2 um x 0.1027 m2 / 0.28397 mol: 0.533 points
    assert ours[1] - ours[0] == pytest.approx(0.533, abs=1e-3)
    # no plating estimate for a cycle: the SEI and dead lithium's LLI, not NaN
    assert lli.with_plated([0.4], [np.nan])[0] == pytest.approx(0.4)


@pytest.mark.slow
def test_lli_from_pybamms_side_reaction_outputs_equals_its_lli(okane):
    """A cold fast charge of PyBaMM's SPM with SEI and partially reversible plating: its SEI
    lithium, dead and still plated lithium through :mod:`packtwin.physics.lli` give its LLI."""
    pybamm, _ = okane
    pv = pybamm.ParameterValues("OKane2022")
    pv.update({"Ambient temperature [K]": 268.15, "Initial temperature [K]": 268.15})
    model = pybamm.lithium_ion.SPM({"SEI": "solvent-diffusion limited",
                                    "lithium plating": "partially reversible"})
    sol = pybamm.Simulation(model, parameter_values=pv,
                            experiment=pybamm.Experiment(["Charge at 2C for 10 minutes"])
                            ).solve(initial_soc=0.3)

    def last(name):
        return float(sol[name].entries[-1])

    plated = last("X-averaged negative lithium plating concentration [mol.m-3]")
    assert lli.plated_points(plated) > 0.1  # plating matters here
    ours = lli.with_plated(lli.lli_points(
        last("Loss of lithium to negative SEI [mol]")
        + lli.plated_mol(last("X-averaged negative dead lithium concentration [mol.m-3]"))),
        plated)
    assert ours == pytest.approx(last("Loss of lithium inventory [%]"), rel=1e-9)
