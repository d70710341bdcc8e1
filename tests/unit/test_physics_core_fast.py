"""The core's fast paths against their readable references: the paired Newton solve of both
electrodes against :func:`solve_electrode` per electrode, the batched Thomas sweep against a
dense solve, and the fused OCP value/slope against the separate functions."""

import pytest
import torch

from packtwin.physics.constants import F
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.current_distribution import solve_electrode
from packtwin.physics.electrolyte import THOMAS_MIN_BATCH, tridiagonal_solve
from packtwin.physics.ocp import (ocp_negative, ocp_negative_slope, ocp_negative_with_slope,
                                  ocp_positive, ocp_positive_slope, ocp_positive_with_slope)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("config", [CoreConfig(), CoreConfig(n_x_n=5, n_x_s=2, n_x_p=3, n_r=6)])
@pytest.mark.parametrize("iterations", [1, 6])
def test_paired_newton_equals_one_electrode_solves(config, iterations):
    # the pair iterates on past ``iterations`` until its steps settle (STEP_TOL_V), so it is
    # held to the reference's converged answer (twelve iterations)
    B = 4
    core = ReducedCore(CoreParams.nominal(B), config)
    gen = torch.Generator().manual_seed(3)
    rnd = lambda *s: torch.rand(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    st = core.initial_state()
    # surfaces well inside (0, c_max): the pair's Newton is bounded there, the reference's not
    s0_n = st.c_n[..., -1] * (0.4 + 0.5 * rnd(B, config.n_x_n))
    s0_p = st.c_p[..., -1] * (0.7 + 0.5 * rnd(B, config.n_x_p))
    c_e = st.c_e * (0.5 + rnd(B, core.grid_x.n))
    T = torch.tensor([298.15, 263.15, 318.0, 280.0], dtype=torch.float64)
    i_app = torch.tensor([15.0, -5.0, 2.0, 0.0], dtype=torch.float64) / core.design.area
    D_n, D_p = core.diffusivities(T)
    rho = core.sphere["centres"][-1]
    p, c, d, g = core.params, core.design.constants, core.design, core.grid_x
    g_n = -(1.0 - rho) * p.R_n / (F * D_n)
    g_p = -(1.0 - rho) * p.R_p / (F * D_p)
    cfg = CoreConfig(**{**config.__dict__, "newton_iterations": iterations})
    neg, pos, kappa, _ = ReducedCore(core.params, cfg)._solve(s0_n, g_n, s0_p, g_p, c_e, T, i_app,
                                                              st.L_sei)
    n0, p0 = g.n_n, g.n_n + g.n_s
    ref_n = solve_electrode(s0_n, g_n, ocp_negative, ocp_negative_slope, c.neg.c_max, p.k_n,
                            c.neg.Ea_k, T, c_e[:, :n0], kappa[:, :n0], d.sigma_eff("n"), g.dx_n,
                            core.a_n, i_app, +1.0, core.film_resistance(st.L_sei), 12)
    ref_p = solve_electrode(s0_p, g_p, ocp_positive, ocp_positive_slope, c.pos.c_max, p.k_p,
                            c.pos.Ea_k, T, c_e[:, p0:], kappa[:, p0:], d.sigma_eff("p"), g.dx_p,
                            core.a_p, i_app, -1.0, 0.0, 12)
    for got, ref in ((neg, ref_n), (pos, ref_p)):
        for name in ("j", "dphi", "c_surf", "i_e_faces"):
            a, b = getattr(got, name), getattr(ref, name)
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()) + 1e-14), name
    # not vacuous: the currents are non-uniform and non-zero
    assert float(ref_n.j[0].std()) > 0.01 * float(ref_n.j[0].abs().mean())


@pytest.mark.parametrize("batch", [3, THOMAS_MIN_BATCH + 6])
def test_tridiagonal_solve_matches_dense(batch):
    gen = torch.Generator().manual_seed(0)
    N = 19
    lo = -torch.rand(batch, N - 1, generator=gen, dtype=torch.float64)
    up = -torch.rand(batch, N - 1, generator=gen, dtype=torch.float64)
    di = 2.5 + torch.rand(batch, N, generator=gen, dtype=torch.float64)
    rhs = torch.rand(batch, N, generator=gen, dtype=torch.float64)
    M = torch.diag_embed(di) + torch.diag_embed(lo, -1) + torch.diag_embed(up, 1)
    x = tridiagonal_solve(lo, di, up, rhs)
    assert torch.allclose((M @ x[..., None])[..., 0], rhs, rtol=0, atol=1e-13)


def test_fused_ocp_value_and_slope_match_the_separate_functions():
    sto = torch.linspace(-0.02, 1.02, 301, dtype=torch.float64)
    for fused, value, slope in ((ocp_negative_with_slope, ocp_negative, ocp_negative_slope),
                                (ocp_positive_with_slope, ocp_positive, ocp_positive_slope)):
        u, du = fused(sto)
        assert torch.allclose(u, value(sto), rtol=0, atol=1e-13)
        assert torch.allclose(du, slope(sto), rtol=0, atol=1e-10)
