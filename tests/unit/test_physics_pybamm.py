"""Physics residuals on real PyBaMM output (OKane2022): coarse SPM and DFN runs made in the test.

Tolerances are relative to the terms each equation balances; the why is beside each one.
"""

import numpy as np
import pytest
import torch

pybamm = pytest.importorskip("pybamm")

from packtwin.physics.constants import F, okane2022  # noqa: E402
from packtwin.physics.conservation import (average_concentration,  # noqa: E402
                                           lithium_balance_residual, mean_interfacial_current,
                                           plating_side_charge, sei_side_charge)
from packtwin.physics.derivatives import fd_derivs, surface_gradient  # noqa: E402
from packtwin.physics.diffusion import (diffusion_term_scale,  # noqa: E402
                                        fick_residual_normalised, particle_diffusivity,
                                        surface_flux_residual)
from packtwin.physics.sei import sei_growth_rate  # noqa: E402
from packtwin.physics.voltage import spm_terminal_voltage  # noqa: E402

pytestmark = pytest.mark.slow

CELL = okane2022()
T_AMB = 308.15  # isothermal, away from T_ref so every Arrhenius factor is exercised
N_R = 16  # radial nodes: coarse on purpose (seconds), the tolerances below follow from it
T_SKIP = 60.0  # s: the first minute holds the sqrt(t) start-up layer that 16 nodes cannot resolve


def _solve(model, var_pts):
    pv = pybamm.ParameterValues("OKane2022")
    pv.update({"Ambient temperature [K]": T_AMB, "Initial temperature [K]": T_AMB})
    sim = pybamm.Simulation(model, parameter_values=pv, var_pts=var_pts)
    t_eval = np.linspace(0.0, 1800.0, 181)  # 1C discharge for 30 min, 10 s samples
    sol = sim.solve([0.0, 1800.0], t_interp=t_eval)
    assert sol.t[-1] == pytest.approx(1800.0), sol.termination
    return sim, sol


@pytest.fixture(scope="module")
def spm():
    return _solve(pybamm.lithium_ion.SPM(),
                  {"x_n": 4, "x_s": 4, "x_p": 4, "r_n": N_R, "r_p": N_R})


@pytest.fixture(scope="module")
def dfn():
    # Lumped thermal: the cell warms during the discharge, so D(T), j0(T) and the SEI rate are
    # checked with a time-varying temperature (the schema's measured T).
    model = pybamm.lithium_ion.DFN({"SEI": "solvent-diffusion limited",
                                    "lithium plating": "partially reversible",
                                    "thermal": "lumped"})
    return _solve(model, {"x_n": 8, "x_s": 4, "x_p": 8, "r_n": N_R, "r_p": N_R})


def _temperature(sol):
    return torch.tensor(sol["Volume-averaged cell temperature [K]"].entries)


def _rho(sim, domain, e):
    return torch.tensor(sim.mesh[f"{domain} particle"].nodes / e.R)


def _charge(sol):
    t = torch.tensor(sol.t)
    I = torch.tensor(sol["Current [A]"].entries)
    Q = torch.cat([torch.zeros(1, dtype=t.dtype), torch.cumulative_trapezoid(I, t)])
    return t, I, Q


@pytest.mark.parametrize("domain", ["negative", "positive"])
@pytest.mark.parametrize("ix", [0, -1])
def test_dfn_fick_and_surface_flux_residuals_at_one_x(dfn, domain, ix):
    sim, sol = dfn
    e = CELL.electrode(domain)
    t, _, _ = _charge(sol)
    c = torch.tensor(sol[f"{domain.capitalize()} particle concentration [mol.m-3]"]
                     .entries[:, ix, :].T)  # [T, R] at one x
    rho = _rho(sim, domain, e)
    T = _temperature(sol)
    assert (T.max() - T.min()).item() > 2.0  # the cell did warm: Arrhenius matters here
    D = particle_diffusivity(e, T)[:, None]  # [T, 1]
    d = fd_derivs(c, t, rho)
    keep = t > T_SKIP
    res = fick_residual_normalised(*d, rho, D, e.R)[keep]
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / e.R**2)[keep].mean()
    # Ignoring the temperature rise (D at ambient) must be visibly worse.
    iso = fick_residual_normalised(*d, rho, particle_diffusivity(e, T_AMB), e.R)[keep]
    iso_rel = (iso.abs().mean() / scale).item()
    mean_rel = (res.abs().mean() / scale).item()
    max_rel = (res.abs().max() / scale).item()
    # 3-point FD of a 16-cell finite-volume solution: truncation ~ (1/16)^2 ~ 4e-3 on average
    # (measured 0.6-1.2e-3); the worst point (fast current change, surface node) reaches ~8 %.
    assert mean_rel < 1e-2, mean_rel
    assert max_rel < 0.2, max_rel
    # Negative control: a 20 % wrong diffusivity must stand out well above that tolerance.
    wrong = fick_residual_normalised(*d, rho, 1.2 * D, e.R)[keep]
    assert (wrong.abs().mean() / scale).item() > 3e-2
    # Surface flux with the local intercalation current of that x.
    j = torch.tensor(sol[f"{domain.capitalize()} electrode interfacial current density [A.m-2]"]
                     .entries[ix])
    flux = surface_flux_residual(surface_gradient(d, rho), D[:, 0], j, R=e.R)[keep]
    flux_rel = (flux.abs().mean() / (j[keep].abs().mean() / F)).item()
    # Second-order extrapolation to r = R from a cell-centre grid (measured ~2e-3).
    assert flux_rel < 1e-2, flux_rel
    print(f"measured DFN {domain} x[{ix}]: Fick mean/max rel {mean_rel:.2e}/{max_rel:.2e}, "
          f"20% wrong D {(wrong.abs().mean() / scale).item():.2e}, isothermal D {iso_rel:.2e}, "
          f"surface flux rel {flux_rel:.2e}")


@pytest.mark.parametrize("domain", ["negative", "positive"])
def test_spm_residuals_voltage_and_conservation(spm, domain):
    sim, sol = spm
    e = CELL.electrode(domain)
    t, I, Q = _charge(sol)
    c = torch.tensor(sol[f"X-averaged {domain} particle concentration [mol.m-3]"].entries.T)
    rho = _rho(sim, domain, e)
    D = particle_diffusivity(e, T_AMB)
    d = fd_derivs(c, t, rho)
    keep = t > T_SKIP
    scale = diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D / e.R**2)[keep].mean()
    res = fick_residual_normalised(*d, rho, D, e.R)[keep]
    fick_rel = (res.abs().mean() / scale).item()
    assert fick_rel < 1e-2
    # The x-averaged current is fixed by the cell current (exact in PyBaMM).
    j = mean_interfacial_current(I, e)
    j_pb = torch.tensor(sol[f"X-averaged {domain} electrode interfacial current density [A.m-2]"]
                        .entries)
    assert torch.allclose(j, j_pb, rtol=1e-10, atol=0)
    flux = surface_flux_residual(surface_gradient(d, rho), D, j, R=e.R)[keep]
    flux_rel = (flux.abs().mean() / (j.abs().mean() / F)).item()
    assert flux_rel < 1e-2
    # Lithium balance: finite-volume average of PyBaMM's own cells is exact to round-off.
    c_avg = average_concentration(c, rho)
    bal = lithium_balance_residual(c_avg, c_avg[0], Q, e)
    bal_rel = (bal.abs().max() / (c_avg[-1] - c_avg[0]).abs()).item()
    assert bal_rel < 1e-8
    print(f"measured SPM {domain}: Fick mean rel {fick_rel:.2e}, surface flux rel {flux_rel:.2e}, "
          f"lithium balance rel {bal_rel:.2e}")


def test_spm_voltage_equals_pybamm(spm):
    _, sol = spm
    _, I, _ = _charge(sol)
    cn = torch.tensor(sol["X-averaged negative particle surface concentration [mol.m-3]"].entries)
    cp = torch.tensor(sol["X-averaged positive particle surface concentration [mol.m-3]"].entries)
    V = torch.tensor(sol["Voltage [V]"].entries)
    err = (spm_terminal_voltage(cn, cp, I, T_AMB, CELL) - V).abs().max().item()
    # Same equations; the residue is the solver's tolerance (measured ~1 uV).
    assert err < 1e-4, err
    print(f"measured SPM voltage max abs error {err:.2e} V")


def test_dfn_sei_rate_and_lithium_balance_with_side_reactions(dfn):
    sim, sol = dfn
    t, _, Q = _charge(sol)
    L = torch.tensor(sol["X-averaged negative SEI thickness [m]"].entries)
    dL_dt = torch.gradient(L, spacing=(t,), edge_order=2)[0]
    rel = ((dL_dt - sei_growth_rate(L, _temperature(sol), CELL)).abs() / dL_dt.abs()).max().item()
    # L grows by only ~2e-3 of itself per 10 s sample, so the solver's ~1e-6 relative error on L
    # becomes ~5e-4 in dL/dt (measured 4e-4; finer sampling makes it worse, not better).
    assert rel < 2e-3, rel
    # Ignoring the self-heating (rate at ambient) must be clearly wrong.
    iso = ((dL_dt - sei_growth_rate(L, T_AMB, CELL)).abs() / dL_dt.abs()).max().item()
    assert iso > 10 * rel, iso
    # The negative electrode's lithium follows the charge less SEI and plating, to round-off;
    # without the side reactions the balance is visibly off.
    e = CELL.neg
    c = torch.tensor(sol["Negative particle concentration [mol.m-3]"].entries).permute(2, 1, 0)
    c_avg = average_concentration(c, _rho(sim, "negative", e)).mean(-1)  # uniform x mesh
    side = 3600.0 * torch.tensor(sol["Loss of capacity to negative SEI [A.h]"].entries
                                 + sol["Loss of capacity to negative lithium plating [A.h]"]
                                 .entries)
    # The same side charge rebuilt from the hidden states the twin predicts (SEI thickness and
    # plated + dead lithium): the conservation term can be driven by those outputs.
    c_pl = torch.tensor(sol["X-averaged negative lithium plating concentration [mol.m-3]"].entries)
    c_dead = torch.tensor(sol["X-averaged negative dead lithium concentration [mol.m-3]"].entries)
    ours = (sei_side_charge(L, L[0], e, CELL.sei)
            + plating_side_charge(c_pl, e, c_dead=c_dead, c_plated_0=CELL.plating.c_0))
    side_rel = ((ours - side).abs().max() / side.abs().max()).item()
    assert side_rel < 1e-8, side_rel
    dc = (c_avg[-1] - c_avg[0]).abs()
    with_side = lithium_balance_residual(c_avg, c_avg[0], Q, e, side_charge_C=side)
    without = lithium_balance_residual(c_avg, c_avg[0], Q, e)
    assert (with_side.abs().max() / dc).item() < 1e-8
    assert (without.abs().max() / dc).item() > 1e-4
    print(f"measured DFN SEI rate max rel error {rel:.2e} (at ambient T {iso:.2e}); negative lithium balance rel "
          f"{(with_side.abs().max() / dc).item():.2e} with SEI+plating, "
          f"{(without.abs().max() / dc).item():.2e} without; side charge from states rel "
          f"{side_rel:.2e}")
