"""SPM terminal voltage: OCV at rest, polarisation signs, and consistency with its parts."""

import torch

from packtwin.physics.constants import okane2022
from packtwin.physics.conservation import mean_interfacial_current
from packtwin.physics.kinetics import butler_volmer, electrode_exchange_current_density
from packtwin.physics.ocp import ocp_negative, ocp_positive
from packtwin.physics.voltage import spm_terminal_voltage, spm_voltage_terms

DT = torch.float64
CELL = okane2022()


def test_rest_voltage_is_ocv():
    cn = torch.tensor([0.2, 0.5, 0.85], dtype=DT) * CELL.neg.c_max
    cp = torch.tensor([0.9, 0.6, 0.3], dtype=DT) * CELL.pos.c_max
    V = spm_terminal_voltage(cn, cp, 0.0, 298.15, CELL)
    ocv = ocp_positive(cp / CELL.pos.c_max) - ocp_negative(cn / CELL.neg.c_max)
    assert torch.allclose(V, ocv, rtol=0, atol=1e-14)


def test_polarisation_signs_and_butler_volmer_consistency():
    cn = torch.tensor(0.6 * CELL.neg.c_max, dtype=DT)
    cp = torch.tensor(0.5 * CELL.pos.c_max, dtype=DT)
    T = torch.tensor(283.15, dtype=DT)
    rest = spm_terminal_voltage(cn, cp, 0.0, T, CELL)
    dis = spm_voltage_terms(cn, cp, 5.0, T, CELL, R_ohm=0.01)
    chg = spm_terminal_voltage(cn, cp, -5.0, T, CELL)
    assert dis.V < rest < chg
    assert torch.isclose(dis.V, dis.U_p - dis.U_n + dis.eta_p - dis.eta_n - 5.0 * 0.01)
    # The overpotentials reproduce the conservation-fixed currents through Butler-Volmer.
    for e, cs, eta in ((CELL.neg, cn, dis.eta_n), (CELL.pos, cp, dis.eta_p)):
        j0 = electrode_exchange_current_density(cs, CELL.c_e_ref, T, e)
        assert torch.isclose(butler_volmer(j0, eta, T), mean_interfacial_current(5.0, e),
                             rtol=1e-12)
    # Colder cells polarise more.
    warm = spm_terminal_voltage(cn, cp, 5.0, 318.15, CELL)
    assert dis.V + 5.0 * 0.01 < warm


def test_voltage_gradients_reach_concentrations():
    cn = torch.tensor([0.6 * CELL.neg.c_max], dtype=DT, requires_grad=True)
    cp = torch.tensor([0.5 * CELL.pos.c_max], dtype=DT, requires_grad=True)
    V = spm_terminal_voltage(cn, cp, 5.0, 298.15, CELL)
    gn, gp = torch.autograd.grad(V.sum(), (cn, cp))
    assert torch.isfinite(gn).all() and torch.isfinite(gp).all() and gp < 0
