"""OKane2022 OCPs in torch equal PyBaMM's own functions on a stoichiometry grid."""

import numpy as np
import pytest
import torch

pybamm = pytest.importorskip("pybamm")

from packtwin.physics.ocp import ocp, ocp_negative, ocp_positive  # noqa: E402

# 1 mV is far below what a voltage loss resolves; the float64 implementation is exact to ~1e-14 V
# (same points, same not-a-knot spline), float32 to ~1e-6 V.
TOL_V = 1e-3


@pytest.fixture(scope="module")
def pv():
    return pybamm.ParameterValues("OKane2022")


def _pybamm_ocp(pv, domain, sto):
    f = pv[f"{domain.capitalize()} electrode OCP [V]"]
    return np.asarray(f(pybamm.Vector(sto)).evaluate()).ravel()


@pytest.mark.parametrize("domain,fun", [("negative", ocp_negative), ("positive", ocp_positive)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ocp_equals_pybamm(pv, domain, fun, dtype):
    # Includes slight extrapolation beyond [0, 1] and every knot neighbourhood at this density.
    sto = np.linspace(-0.02, 1.02, 4001)
    want = _pybamm_ocp(pv, domain, sto)
    got = fun(torch.tensor(sto, dtype=dtype)).double().numpy()
    err = np.abs(got - want).max()
    assert err < TOL_V, f"{domain} OCP max abs error {err:.3g} V"
    if dtype == torch.float64:
        assert err < 1e-9
    x = torch.tensor(sto, dtype=dtype)
    assert torch.equal(ocp(x, domain), fun(x))


def test_ocp_differentiable_and_decreasing_in_range():
    sto = torch.linspace(0.05, 0.95, 200, dtype=torch.float64, requires_grad=True)
    for fun in (ocp_negative, ocp_positive):
        (g,) = torch.autograd.grad(fun(sto).sum(), sto)
        assert torch.isfinite(g).all()
    # Both OCPs fall with lithiation over the range cells use.
    assert (ocp_positive(sto).diff() < 0).all()
    assert ocp_negative(torch.tensor(0.1)) > ocp_negative(torch.tensor(0.9))


def test_ocp_keeps_shape():
    sto = torch.rand(3, 4, 5, dtype=torch.float64)
    assert ocp_negative(sto).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="unknown electrode"):
        ocp(sto, "cathode")
