"""Open-circuit potentials of the OKane2022 electrodes (LG M50), in torch [V vs Li/Li+].

* Positive (NMC811): Chen2020's closed-form fit ``nmc_LGM50_ocp_Chen2020``.
* Negative (graphite): PyBaMM interpolates 248 measured points with a *cubic* ``Interpolant``,
  i.e. scipy's ``CubicSpline`` with not-a-knot end conditions, extrapolated with the end cubics;
  the same spline is rebuilt here from the same points (:mod:`packtwin.physics.graphite_ocp_data`).

OKane2022's entropic changes ("... OCP entropic change [V.K-1]") are 0, so U does not depend on T.
Both functions are differentiable (autograd) and take any shape.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.graphite_ocp_data import GRAPHITE_OCP_DATA


def ocp_positive(sto: Tensor) -> Tensor:
    """OKane2022 positive-electrode OCP [V] at stoichiometry ``sto`` = c_s / c_max [1]."""
    sto = torch.as_tensor(sto)
    return (-0.8090 * sto + 4.4875
            - 0.0428 * torch.tanh(18.5138 * (sto - 0.5542))
            - 17.7326 * torch.tanh(15.7890 * (sto - 0.3117))
            + 17.5842 * torch.tanh(15.9308 * (sto - 0.3120)))


@lru_cache(maxsize=1)
def _not_a_knot_spline() -> tuple[np.ndarray, np.ndarray]:
    """Knots [n] and cubic coefficients [n-1, 4]: y, y', y''/2, y'''/6 at left knots."""
    data = np.asarray(GRAPHITE_OCP_DATA, dtype=np.float64)
    x, y = data[:, 0], data[:, 1]
    if not np.all(np.diff(x) > 0):
        raise ValueError("graphite OCP data: stoichiometries must be strictly increasing")
    n = x.size
    h = np.diff(x)
    # Unknowns: second derivatives M_i at the knots.
    A = np.zeros((n, n))
    rhs = np.zeros(n)
    for i in range(1, n - 1):
        A[i, i - 1] = h[i - 1]
        A[i, i] = 2.0 * (h[i - 1] + h[i])
        A[i, i + 1] = h[i]
        rhs[i] = 6.0 * ((y[i + 1] - y[i]) / h[i] - (y[i] - y[i - 1]) / h[i - 1])
    # Not-a-knot: the third derivative is continuous across the second and second-to-last knots.
    A[0, 0], A[0, 1], A[0, 2] = -1.0 / h[0], 1.0 / h[0] + 1.0 / h[1], -1.0 / h[1]
    A[-1, -3], A[-1, -2], A[-1, -1] = -1.0 / h[-2], 1.0 / h[-2] + 1.0 / h[-1], -1.0 / h[-1]
    M = np.linalg.solve(A, rhs)
    b = (y[1:] - y[:-1]) / h - h * (2.0 * M[:-1] + M[1:]) / 6.0
    coeffs = np.stack([y[:-1], b, M[:-1] / 2.0, (M[1:] - M[:-1]) / (6.0 * h)], axis=1)
    return x, coeffs


@lru_cache(maxsize=8)
def _spline_tensors(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    # One host-to-device copy per dtype/device, not one per call; the inner knots too (the
    # Newton iterations look pieces up hundreds of times per streamed sample).
    x_np, c_np = _not_a_knot_spline()
    x = torch.as_tensor(x_np, dtype=dtype, device=device)
    return x, torch.as_tensor(c_np, dtype=dtype, device=device), x[1:-1].contiguous()


def _spline_piece(sto: Tensor) -> tuple[Tensor, Tensor]:
    """Offset from the left knot and the cubic's coefficients [..., 4] at each ``sto``."""
    sto = torch.as_tensor(sto)
    if not sto.is_floating_point():
        sto = sto.to(torch.get_default_dtype())
    # Interval index: searchsorted on the inner knots clamps out-of-range points to the end pieces.
    x, coeffs, inner = _spline_tensors(sto.dtype, sto.device)
    if torch.compiler.is_exporting():
        # ONNX has no searchsorted: the same index as the count of inner knots <= sto.
        i = (sto.detach()[..., None] >= inner).sum(-1)
    else:
        i = torch.searchsorted(inner, sto.detach().contiguous(), right=True)
    return sto - x[i], coeffs[i]


def ocp_negative(sto: Tensor) -> Tensor:
    """OKane2022 negative-electrode (graphite) OCP [V] at stoichiometry ``sto`` [1].

    Outside the data range [0, 1] the end cubics extrapolate, as PyBaMM's spline does.
    """
    dx, c = _spline_piece(sto)
    return c[..., 0] + dx * (c[..., 1] + dx * (c[..., 2] + dx * c[..., 3]))


def ocp_positive_slope(sto: Tensor) -> Tensor:
    """dU_p/dsto [V] of :func:`ocp_positive` (closed form)."""
    sto = torch.as_tensor(sto)

    def sech2(a, b):
        return 1.0 - torch.tanh(a * (sto - b)) ** 2

    return (-0.8090 - 0.0428 * 18.5138 * sech2(18.5138, 0.5542)
            - 17.7326 * 15.7890 * sech2(15.7890, 0.3117)
            + 17.5842 * 15.9308 * sech2(15.9308, 0.3120))


def ocp_negative_slope(sto: Tensor) -> Tensor:
    """dU_n/dsto [V] of :func:`ocp_negative` (the spline's own derivative)."""
    dx, c = _spline_piece(sto)
    return c[..., 1] + dx * (2.0 * c[..., 2] + 3.0 * dx * c[..., 3])


def ocp_positive_with_slope(sto: Tensor) -> tuple[Tensor, Tensor]:
    """(:func:`ocp_positive`, :func:`ocp_positive_slope`) from one evaluation of the tanh terms
    (a Newton iteration needs both at the same point)."""
    t1 = torch.tanh(18.5138 * (sto - 0.5542))
    t2 = torch.tanh(15.7890 * (sto - 0.3117))
    t3 = torch.tanh(15.9308 * (sto - 0.3120))
    value = -0.8090 * sto + 4.4875 - 0.0428 * t1 - 17.7326 * t2 + 17.5842 * t3
    # torch.rsub(t, 1): 1 - t without Tensor.__rsub__'s Python wrapper (a Newton hot path)
    slope = (-0.8090 - 0.0428 * 18.5138 * torch.rsub(t1 * t1, 1.0)
             - 17.7326 * 15.7890 * torch.rsub(t2 * t2, 1.0)
             + 17.5842 * 15.9308 * torch.rsub(t3 * t3, 1.0))
    return value, slope


def ocp_negative_with_slope(sto: Tensor) -> tuple[Tensor, Tensor]:
    """(:func:`ocp_negative`, :func:`ocp_negative_slope`) from one spline-piece lookup."""
    dx, c = _spline_piece(sto)
    c0, c1, c2, c3 = c.unbind(-1)
    return (c0 + dx * (c1 + dx * (c2 + dx * c3)), c1 + dx * (2.0 * c2 + 3.0 * dx * c3))


def ocp(sto: Tensor, domain: str) -> Tensor:
    """OCP [V] of the ``"negative"`` or ``"positive"`` electrode at stoichiometry ``sto``."""
    if domain in ("negative", "n"):
        return ocp_negative(sto)
    if domain in ("positive", "p"):
        return ocp_positive(sto)
    raise ValueError(f"unknown electrode {domain!r}; expected 'negative' or 'positive'")
