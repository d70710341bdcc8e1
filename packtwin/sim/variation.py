"""Seeded cell-to-cell parameter draws: relative deviates from a declarative spec (pure numpy)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.special import ndtr


def relative_draws(spreads: Sequence[float], distributions: Sequence[str], n_cells: int,
                   seed: int, correlation: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Multipliers (n_cells, n_params) with mean 1 and std ``spreads`` for each distribution.

    Correlation is imposed on the underlying standard normals (a Gaussian copula), so it holds
    exactly for 'normal' and approximately for the others.
    """
    k = len(spreads)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_cells, k))
    if correlation is not None and k:
        # eigen-decomposition rather than Cholesky: accepts semi-definite matrices (rho = 1)
        w, v = np.linalg.eigh(np.asarray(correlation, dtype=float))
        z = z @ (v * np.sqrt(np.clip(w, 0.0, None))).T
    out = np.empty_like(z)
    for j, (s, dist) in enumerate(zip(spreads, distributions)):
        if dist == "normal":
            out[:, j] = 1.0 + s * z[:, j]
        elif dist == "lognormal":
            sigma = math.sqrt(math.log1p(s * s))  # so that std / mean = s
            out[:, j] = np.exp(sigma * z[:, j] - 0.5 * sigma * sigma)
        elif dist == "uniform":
            out[:, j] = 1.0 + s * math.sqrt(3.0) * (2.0 * ndtr(z[:, j]) - 1.0)
        else:
            raise ValueError(f"unknown distribution {dist!r}; expected normal, lognormal, uniform")
    return out
