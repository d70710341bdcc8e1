"""The reduced electrochemical core alone: analytic diffusion, conservation, rest, bounds,
stability at 60 s, parameters from a truth table, differentiability. Small and fast (no PyBaMM)."""

import math

import numpy as np
import pytest
import torch

from packtwin.physics.analytic import constant_flux_sphere, constant_flux_sphere_average
from packtwin.physics.constants import F, okane2022
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_grid import SphereGrid, ThicknessGrid, interp_linear
from packtwin.physics.core_params import NOMINAL_CONTACT_RESISTANCE, CoreParams
from packtwin.physics.current_distribution import NEWTON_ITERATIONS
from packtwin.physics.ocp import ocp_negative, ocp_positive
from packtwin.physics.particle_fv import (particle_average, particle_operators, particle_step,
                                         surface_concentration)

CELL = okane2022()
SMALL = CoreConfig(n_x_n=3, n_x_s=2, n_x_p=3, n_r=8)  # fast; the physics is the same


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _core(n_cells=2, config=SMALL, **overrides):
    p = CoreParams.nominal(n_cells)
    for k, v in overrides.items():
        setattr(p, k, torch.as_tensor(v, dtype=torch.float64))
    return ReducedCore(p, config)


def test_particle_matches_crank_constant_flux():
    # Crank's constant-flux sphere: 30 surface-refined shells, backward Euler at 2 s for 600 s.
    e = CELL.neg
    grid = SphereGrid.make(30, 2.0).tensors()
    j = 1.5  # A/m2, ~1C de-intercalation
    D = torch.tensor([e.D_ref], dtype=torch.float64)
    R = torch.tensor([e.R], dtype=torch.float64)
    ops = particle_operators(grid, D, R, 2.0)
    c = torch.full((1, 1, 30), 20000.0, dtype=torch.float64)
    jj = torch.full((1, 1), j, dtype=torch.float64)
    for _ in range(300):
        c = particle_step(c, jj, ops)
    t = 600.0
    exact = constant_flux_sphere(grid["centres"], torch.tensor(t, dtype=torch.float64), 20000.0, j, e.D_ref, e.R)
    exact_surf = constant_flux_sphere(torch.tensor(1.0, dtype=torch.float64), torch.tensor(t), 20000.0, j, e.D_ref,
                                      e.R)
    surf = surface_concentration(c, jj, D, R, grid)
    # Exact mean (conservation), profile and surface within 0.05 % of c_max (time step and mesh)
    assert float(particle_average(c, grid)) == pytest.approx(
        float(constant_flux_sphere_average(torch.tensor(t, dtype=torch.float64), 20000.0, j, e.R)), rel=1e-12)
    assert float((c[0, 0] - exact).abs().max()) < 5e-4 * e.c_max
    assert abs(float(surf) - float(exact_surf)) < 5e-4 * e.c_max
    # ... and the surface really moved (the check is not vacuous): by more than 5 % of c_max
    assert 20000.0 - float(exact_surf) > 0.05 * e.c_max


@pytest.mark.parametrize("profile", ["cc", "pulses"])
def test_lithium_conserved_exactly(profile):
    core = _core()
    s0 = core.initial_state()
    if profile == "cc":
        I = torch.tensor([[5.0] * 8, [7.5] * 8], dtype=torch.float64)
    else:
        I = torch.tensor([[5.0, 10.0, 0.0, -2.5] * 5, [10.0, -5.0, 0.0, 7.5] * 5],
                         dtype=torch.float64)
    T = torch.full_like(I, 298.15)
    s1, _ = core.simulate(s0, I, T, 30.0)
    n0, p0, e0 = core.lithium(s0)
    n1, p1, e1 = core.lithium(s1)
    moles = I.sum(1) * 30.0 / F
    torch.testing.assert_close(n0 - n1, moles, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(p1 - p0, moles, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(e1, e0, rtol=1e-12, atol=0.0)
    assert float(moles.abs().min()) > 1e-4  # lithium moved


def test_zero_current_keeps_rest_state_and_open_circuit_voltage():
    core = _core(c_n_init=[29000.0, 25000.0])
    s0 = core.initial_state()
    I = torch.zeros(2, 10, dtype=torch.float64)
    s1, out = core.simulate(s0, I, torch.full_like(I, 298.15), 60.0)
    for a, b in zip(s0[:3], s1[:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    f64 = torch.float64
    ocv = (ocp_positive(torch.tensor(17038.0 / CELL.pos.c_max, dtype=f64))
           - ocp_negative(torch.tensor([29000.0, 25000.0], dtype=f64) / CELL.neg.c_max))
    torch.testing.assert_close(out["voltage"][:, -1], ocv.to(torch.float64), rtol=0, atol=1e-9)


def test_bounds_and_stability_at_60s_steps():
    # 1C at -10 degC and 2C at 25 degC for 10 min at 60 s samples, the default 10 s backward-Euler
    # sub-steps against 2 s ones. (2C at 10 degC already drains the DFN's electrolyte to
    # < 100 mol/m3.) One 60 s backward-Euler step without sub-steps is stable but not bounded:
    # at 2C its current distribution empties the particle next to the separator (c < 0).
    # Default x-resolution: 3 cells per electrode over-predict the positive electrolyte's
    # depletion at 2C (to 0 where the DFN keeps > 100 mol/m3).
    coarse = _core(config=CoreConfig())
    fine = _core(config=CoreConfig(max_substep_s=2.0))
    I = torch.tensor([[5.0], [10.0]], dtype=torch.float64).expand(2, 10)
    T = torch.tensor([[263.15], [298.15]]).expand(2, 10).to(torch.float64)
    _, a = coarse.simulate(coarse.initial_state(), I, T, 60.0)
    _, b = fine.simulate(fine.initial_state(), I, T, 60.0)
    for out in (a, b):
        for c, c_max in ((out["c_n"], CELL.neg.c_max), (out["c_p"], CELL.pos.c_max)):
            assert torch.isfinite(c).all()
            assert float(c.min()) >= 0.0 and float(c.max()) <= c_max
        assert float(out["c_e"].min()) > 0.0
    # no oscillation: the CC-discharge voltage falls monotonically after the first sample
    assert (a["voltage"][:, 2:] - a["voltage"][:, 1:-1] < 0).all()
    # first-order in time: 10 s sub-steps stay within 5 mV of 2 s ones
    err = (a["voltage"] - b["voltage"]).abs()
    assert float(err[:, 1:].max()) < 0.005


def test_more_newton_iterations_do_not_change_the_voltage():
    cfg = CoreConfig()
    I = torch.tensor([[5.0], [15.0]], dtype=torch.float64).expand(2, 5)
    T = torch.tensor([[263.15], [298.15]], dtype=torch.float64).expand(2, 5)
    outs = []
    # default cold and warm-started counts against 12 iterations everywhere
    for it, warm in ((NEWTON_ITERATIONS, cfg.warm_iterations), (12, 12)):
        core = _core(config=CoreConfig(**{**cfg.__dict__, "newton_iterations": it,
                                          "warm_iterations": warm}))
        outs.append(core.simulate(core.initial_state(), I, T, 60.0)[1]["voltage"])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-4)


def test_reaction_current_is_nonuniform_at_high_rate_in_the_cold():
    core = _core(config=CoreConfig())
    I = torch.tensor([[5.0], [15.0]], dtype=torch.float64).expand(2, 5)
    T = torch.tensor([[263.15], [298.15]], dtype=torch.float64).expand(2, 5)
    _, out = core.simulate(core.initial_state(), I, T, 60.0)
    j = out["j_n"][:, -1]
    spread = (j.max(1).values - j.min(1).values) / j.mean(1)
    assert float(spread.min()) > 0.05  # the x-variation the core exists for
    c_surf = out["c_n_surf"][:, -1]
    assert float((c_surf.max(1).values - c_surf.min(1).values).min()) > 0.002 * CELL.neg.c_max


def test_from_truth_maps_reference_values_back_to_prefactors():
    j0_ref_n = CELL.neg.k_ref * math.sqrt(1000.0) * 0.5 * CELL.neg.c_max  # sim.cell's reference
    p = CoreParams.from_truth({"param_neg_j0": [j0_ref_n, 2 * j0_ref_n],
                               "neg_diffusivity": [1e-14, 2e-14],
                               "contact_resistance": 0.01})
    torch.testing.assert_close(p.k_n, torch.tensor([1.0, 2.0], dtype=torch.float64)
                               * CELL.neg.k_ref)
    assert p.D_n.tolist() == [1e-14, 2e-14]
    assert p.R_contact.tolist() == [0.01, 0.01]
    assert p.k_p.tolist() == [CELL.pos.k_ref] * 2  # not given: nominal
    with pytest.raises(ValueError, match="unknown parameter keys"):
        CoreParams.from_truth({"neg_bogus": [1.0]})
    with pytest.raises(ValueError, match="'neg_radius' has 3 values"):
        CoreParams.from_truth({"neg_j0": [1.0, 1.0], "neg_radius": [1.0, 1.0, 1.0]}, n_cells=2)
    with pytest.raises(ValueError, match="finite and > 0"):
        CoreParams.from_truth({"neg_diffusivity": [np.nan]})


def test_nominal_contact_resistance_is_the_generators():
    from packtwin.sim.config import ModelConfig

    assert ModelConfig().parameter_overrides["Contact resistance [Ohm]"] == \
        NOMINAL_CONTACT_RESISTANCE


def test_voltage_is_differentiable_in_the_parameters():
    p = CoreParams.nominal(1)
    p.D_n = p.D_n.clone().requires_grad_(True)
    core = ReducedCore(p, SMALL)
    I = torch.full((1, 3), 5.0, dtype=torch.float64)
    _, out = core.simulate(core.initial_state(), I, torch.full_like(I, 273.15), 60.0)
    (g,) = torch.autograd.grad(out["voltage"][0, -1], p.D_n)
    # central finite difference in D_n
    vals = []
    for f in (1.01, 0.99):
        q = CoreParams.nominal(1)
        q.D_n = q.D_n * f
        c = ReducedCore(q, SMALL)
        vals.append(float(c.simulate(c.initial_state(), I, torch.full_like(I, 273.15),
                                     60.0)[1]["voltage"][0, -1]))
    fd = (vals[0] - vals[1]) / (0.02 * float(p.D_n.detach()))
    assert abs(fd) * float(p.D_n.detach()) > 1e-5  # V moves by > 10 uV per unit log(D_n)
    assert float(g) == pytest.approx(fd, rel=0.02)


def test_particle_field_reproduces_nodes_and_interpolates():
    core = _core()
    out = core.simulate(core.initial_state(), torch.full((2, 4), 10.0, dtype=torch.float64),
                        torch.full((2, 4), 298.15, dtype=torch.float64), 60.0)[1]
    c, cs = out["c_n"][:, -1], out["c_n_surf"][:, -1]
    x = core.grid_x.x_n()
    same = core.particle_field(c, cs, x, x, core.sphere["centres"])
    torch.testing.assert_close(same, c)
    surf = core.particle_field(c, cs, x, x, torch.tensor([1.0]))[..., 0]
    torch.testing.assert_close(surf, cs)
    grid = ThicknessGrid(3, 2, 3, 1.0, 0.5, 1.0)
    assert grid.centres().tolist() == pytest.approx([1 / 6, 0.5, 5 / 6, 1.125, 1.375,
                                                     1.5 + 1 / 6, 2.0, 2.5 - 1 / 6])
    y = torch.tensor([0.0, 1.0, 4.0])
    assert interp_linear(torch.tensor([-1.0, 0.5, 1.5, 9.0]), torch.tensor([0.0, 1.0, 2.0]),
                         y).tolist() == [0.0, 0.5, 2.5, 4.0]


@pytest.mark.parametrize("domain", ["negative", "positive"])
def test_ocp_slopes_match_autograd(domain):
    from packtwin.physics.ocp import ocp, ocp_negative_slope, ocp_positive_slope

    sto = torch.linspace(0.02, 0.98, 97, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(ocp(sto, domain).sum(), sto)
    slope = (ocp_negative_slope if domain == "negative" else ocp_positive_slope)(sto.detach())
    torch.testing.assert_close(slope, grad, rtol=1e-9, atol=1e-9)


def test_params_from_a_store_truth_table(synthetic_store):
    import xarray as xr

    from packtwin.physics.core_params import truth_table

    ds = xr.open_zarr(synthetic_store)
    table = truth_table(ds)
    p = CoreParams.from_truth(table)
    assert p.n_cells == ds.sizes["cell"]
    np.testing.assert_allclose(p.D_n.numpy(), ds["param_neg_diffusivity"].values)
    np.testing.assert_allclose(p.c_n_init.numpy(), ds["param_neg_c_init"].values)
    with pytest.raises(ValueError, match="no 'param_\\*' variables"):
        truth_table(ds.drop_vars([f"param_{k}" for k in table]))


def _cold_run(start_sto, minutes, config=SMALL):
    """1C at a fixed -10 degC (no self-heating) from a rest state at negative stoichiometry
    ``start_sto`` on the cell's lithium line, 60 s samples: the electrolyte next to the
    positive collector drains and the particle surfaces reach their bounds."""
    from packtwin.physics.observer_stream import cell_lines

    core = _core(n_cells=1, config=config)
    sto = torch.tensor([start_sto], dtype=torch.float64)
    s0 = core.initial_state(sto * CELL.neg.c_max, cell_lines(core).sto_p(sto) * CELL.pos.c_max)
    I = torch.full((1, minutes), 5.0, dtype=torch.float64)
    s1, out = core.simulate(s0, I, torch.full_like(I, 263.15), 60.0)
    return core, s0, s1, out


def _assert_bounded(core, s0, s1, out):
    for c, c_max in ((out["c_n"], CELL.neg.c_max), (out["c_p"], CELL.pos.c_max),
                     (out["c_n_surf"], CELL.neg.c_max), (out["c_p_surf"], CELL.pos.c_max)):
        assert torch.isfinite(c).all()
        assert float(c.min()) > 0.0 and float(c.max()) < c_max
    assert torch.isfinite(out["voltage"]).all() and float(out["voltage"].min()) > 0.0
    assert float(out["c_e"].min()) > 0.0
    n0, p0, e0 = core.lithium(s0)
    n1, p1, e1 = core.lithium(s1)
    torch.testing.assert_close(e1, e0, rtol=1e-10, atol=0.0)  # salt conserved
    torch.testing.assert_close(n0 - n1, p1 - p0, rtol=1e-8, atol=0.0)  # cyclable lithium
    return n0 - n1


def test_cold_discharge_to_cut_off_stays_bounded():
    """A 1C discharge at -10 degC from 55 % to past its 2.5 V cut-off (the end of a discharge,
    where evaluate's EKF saw a -3 kV model voltage): before the bounded Newton and the
    electrolyte floor the core went to -2.4 kV with c_e < 0 and both particles out of bounds
    (from full, 60 min, 60 s samples)."""
    core, s0, s1, out = _cold_run(0.55, 30)
    moved = _assert_bounded(core, s0, s1, out)
    V = out["voltage"][0]
    assert float(V[0]) > 3.3 and float(V[-1]) < 2.5  # falls through the cut-off ...
    k = int((V < 2.5).nonzero()[0, 0])
    assert float(V[k:].max()) < 2.51  # ... and stays there
    # the drain really happened: the electrolyte at its floor, the positive surface at c_max
    assert float(out["c_e"].min()) <= 1.0 + 1e-9
    assert float(out["c_p_surf"].max()) > 0.999 * CELL.pos.c_max
    # every coulomb was delivered until the cut-off (to 1e-5: a sub-step whose Newton stays
    # stuck at a bound passes a little less); past it, less (the positive is full)
    from packtwin.physics.core import CoreState

    at_cut = CoreState(*(out[n][:, k] for n in CoreState._fields if n in out))
    charge = torch.tensor([5.0 * 60.0 * (k + 1) / F], dtype=torch.float64)
    torch.testing.assert_close(core.lithium(s0)[0] - core.lithium(at_cut)[0], charge,
                               rtol=1e-5, atol=0.0)
    assert float(moved) < 5.0 * 1800 / F


def test_current_an_empty_cell_cannot_carry_is_cut_short():
    """From 25 % at 1C for 25 min the negative electrode empties after ~8 min: the core
    passes what it can (less than I t), stays bounded, balanced and finite, and its voltage
    stays far below the cut-off instead of blowing up (-120 V and c_n < 0 before)."""
    core, s0, s1, out = _cold_run(0.25, 25)
    moved = _assert_bounded(core, s0, s1, out)
    assert float(moved) < 0.9 * 5.0 * 1500 / F
    assert float(out["voltage"][0, 10:].max()) < 2.0


def test_keep_positive_conserves_salt_and_leaves_ordinary_profiles_alone():
    from packtwin.physics.electrolyte import C_MIN, keep_positive

    vol = torch.tensor([1.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    c = torch.tensor([[900.0, 600.0, 30.0, -20.0], [1000.0, 990.0, 980.0, 970.0]],
                     dtype=torch.float64)
    out = keep_positive(c, vol)
    torch.testing.assert_close((out * vol).sum(1), (c * vol).sum(1), rtol=1e-14, atol=0.0)
    assert float(out[0].min()) == C_MIN and float(out[0, 2]) < 30.0
    assert torch.equal(out[1], c[1])
    assert keep_positive(c[1:], vol) is c[1:] or torch.equal(keep_positive(c[1:], vol), c[1:])
