"""Finite-volume grids of the reduced core: particle shells in r, cells through the thickness in x.

Particle radius is normalised (rho = r / R in [0, 1]) so one grid serves every cell whatever its
radius. Volumes, face areas and centre distances are those of spheres (4 pi dropped), so
sum(volume * c) * 4 pi R^3 is the particle's lithium exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class SphereGrid:
    """Shells of a unit sphere between ``edges`` (0 = e_0 < ... < e_N = 1)."""

    edges: tuple[float, ...]

    @classmethod
    def make(cls, n: int, stretch: float = 1.0) -> "SphereGrid":
        """``n`` shells; ``stretch`` > 1 makes them thinner towards the surface (edges
        1 - (1 - i/n)^stretch), where the gradients and the surface value live."""
        if n < 2:
            raise ValueError(f"SphereGrid needs at least 2 shells, got {n}")
        if stretch < 1.0:
            raise ValueError(f"SphereGrid stretch must be >= 1, got {stretch}")
        u = np.linspace(0.0, 1.0, n + 1)
        return cls(tuple(float(e) for e in 1.0 - (1.0 - u) ** stretch))

    @property
    def n(self) -> int:
        return len(self.edges) - 1

    def tensors(self, dtype=torch.float64) -> dict[str, Tensor]:
        e = torch.tensor(self.edges, dtype=dtype)
        # Shell "centre": the radius halving the shell's volume would bias the surface
        # extrapolation; the midpoint is what PyBaMM uses for its nodes.
        centres = 0.5 * (e[1:] + e[:-1])
        return {
            "edges": e,
            "centres": centres,
            "volumes": (e[1:] ** 3 - e[:-1] ** 3) / 3.0,
            "face_areas": e[1:-1] ** 2,  # interior faces
            "distances": centres[1:] - centres[:-1],
        }


@dataclass(frozen=True)
class ThicknessGrid:
    """Uniform cells in the negative electrode, separator and positive electrode."""

    n_n: int
    n_s: int
    n_p: int
    L_n: float
    L_s: float
    L_p: float

    def __post_init__(self) -> None:
        for name in ("n_n", "n_s", "n_p"):
            if getattr(self, name) < 1:
                raise ValueError(f"ThicknessGrid.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def n(self) -> int:
        return self.n_n + self.n_s + self.n_p

    @property
    def dx_n(self) -> float:
        return self.L_n / self.n_n

    @property
    def dx_p(self) -> float:
        return self.L_p / self.n_p

    def dx(self, dtype=torch.float64) -> Tensor:
        return torch.cat([torch.full((self.n_n,), self.L_n / self.n_n, dtype=dtype),
                          torch.full((self.n_s,), self.L_s / self.n_s, dtype=dtype),
                          torch.full((self.n_p,), self.L_p / self.n_p, dtype=dtype)])

    def centres(self, dtype=torch.float64) -> Tensor:
        """[n] cell centres [m] from the negative current collector (PyBaMM's x)."""
        dx = self.dx(dtype)
        return torch.cumsum(dx, 0) - 0.5 * dx

    def x_n(self, dtype=torch.float64) -> Tensor:
        return self.centres(dtype)[:self.n_n]

    def x_p(self, dtype=torch.float64) -> Tensor:
        return self.centres(dtype)[self.n_n + self.n_s:]

    def domain_values(self, neg: float, sep: float, pos: float, dtype=torch.float64) -> Tensor:
        """[n] a per-domain constant laid out on the cells (porosity, tortuosity, ...)."""
        return torch.cat([torch.full((self.n_n,), neg, dtype=dtype),
                          torch.full((self.n_s,), sep, dtype=dtype),
                          torch.full((self.n_p,), pos, dtype=dtype)])


def interp_linear(x_new: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Piecewise-linear interpolation of y [..., n] given at increasing x [n] onto x_new [m];
    constant beyond the end points (FV centres do not reach the domain's ends)."""
    x_new = torch.as_tensor(x_new, dtype=y.dtype)
    if x.numel() == 1:
        return y[..., [0] * x_new.numel()]
    xc = x_new.clamp(float(x[0]), float(x[-1]))
    i = torch.searchsorted(x.contiguous(), xc.contiguous(), right=True).clamp(1, x.numel() - 1)
    x0, x1 = x[i - 1], x[i]
    w = ((xc - x0) / (x1 - x0)).to(y.dtype)
    return y[..., i - 1] * (1.0 - w) + y[..., i] * w
