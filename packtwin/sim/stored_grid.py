"""The grid the store keeps, separate from the solver's mesh.

Through the thickness the solver's finite volumes are averaged onto coarser uniform cells
(``ModelConfig.stored_x_points``): each stored value is the width-weighted mean of the solver's
cells it overlaps, so the x-integral of every field is kept exactly: the electrode's average
lithium (of each stored radial node, and so of the particle average the radial weights make of
them), the electrolyte's lithium per domain and the x-averaged SEI thickness. Point values at the
coarse centres would not keep it (they differ from the cell means by the field's curvature).
Radially the store keeps point values by linear interpolation (``ModelConfig.stored_r_points``;
see data/README.md for why), so the two grids are built here side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packtwin import schema

X_DOMAINS = ("x_n", "x_s", "x_p")


def stored_sizes(model_cfg) -> dict[str, int]:
    """Points of each stored dimension (x_n, x_s, x_p, r_n, r_p) of a ModelConfig, without
    building the model (the store-size estimate)."""
    vp = model_cfg.var_pts
    n_x = model_cfg.stored_x_points or {}
    out = {k: min(int(vp.get(k, 0)), int(n_x.get(k) or vp.get(k, 0))) for k in X_DOMAINS}
    n_r = model_cfg.stored_r_points
    out.update({k: int(vp.get(k, 0)) if n_r is None else int(n_r) for k in ("r_n", "r_p")})
    return out


def stored_radial_grid(n: int) -> np.ndarray:
    """Uniform cell centres r/R = (i + 1/2) / n: the stored radial grid of ModelConfig.stored_r_points."""
    if int(n) < 2:
        raise ValueError(f"model.stored_r_points must be >= 2 (or None for the solver's nodes), "
                         f"found {n}")
    return (np.arange(int(n)) + 0.5) / int(n)


def linear_interpolation(r_from: np.ndarray, r_to: np.ndarray) -> np.ndarray:
    """Matrix W with ``W @ c(r_from) = c(r_to)`` by linear interpolation (held flat beyond the
    outermost nodes: the profile has zero slope at a particle's centre)."""
    eye = np.eye(len(r_from))
    return np.stack([np.interp(r_to, r_from, eye[j]) for j in range(len(r_from))], axis=1)


def linear_extrapolation(x_from: np.ndarray, x_to: np.ndarray) -> np.ndarray:
    """Like :func:`linear_interpolation`, but continued linearly beyond the outermost nodes (a
    coarse cell centre is half a cell from the domain's edge, where x profiles are steepest)."""
    from scipy.interpolate import interp1d

    return interp1d(x_from, np.eye(len(x_from)), axis=0, fill_value="extrapolate")(x_to)


def cell_average(edges_from: np.ndarray, edges_to: np.ndarray) -> np.ndarray:
    """Matrix W (n_to, n_from) with ``W @ c`` the width-weighted mean of the ``edges_from`` cells
    over each ``edges_to`` cell (both meshes cover the same interval): the conservative remap,
    ``sum(W @ c * diff(edges_to)) == sum(c * diff(edges_from))``."""
    lo = np.maximum(edges_to[:-1, None], edges_from[None, :-1])
    hi = np.minimum(edges_to[1:, None], edges_from[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(edges_to)[:, None]


@dataclass(frozen=True)
class XMap:
    """One x domain: the solver's cells -> the stored ones (identity when not coarsened)."""

    solver_nodes: np.ndarray
    solver_edges: np.ndarray
    nodes: np.ndarray  # stored
    edges: np.ndarray
    to_stored: np.ndarray  # cell_average, (n stored, n solver)
    to_solver: np.ndarray  # stored values linearly interpolated (extrapolated) to the solver's nodes

    @property
    def coarsened(self) -> bool:
        return len(self.nodes) < len(self.solver_nodes)


def x_map(solver_nodes: np.ndarray, solver_edges: np.ndarray, n_store: int | None) -> XMap:
    """Stored cells of one domain: ``n_store`` uniform cells when the solver has more, else the
    solver's own cells (a finer stored grid would invent data)."""
    nodes, edges = np.asarray(solver_nodes, float), np.asarray(solver_edges, float)
    if n_store is None or int(n_store) >= len(nodes):
        eye = np.eye(len(nodes))
        return XMap(nodes, edges, nodes, edges, eye, eye)
    e = np.linspace(edges[0], edges[-1], int(n_store) + 1)
    c = 0.5 * (e[:-1] + e[1:])
    return XMap(nodes, edges, c, e, cell_average(edges, e), linear_extrapolation(c, nodes))


def block(maps, attr: str) -> np.ndarray:
    """Block-diagonal matrix of ``attr`` over consecutive domains (c_e spans all three)."""
    mats = [getattr(m, attr) for m in maps]
    out = np.zeros((sum(m.shape[0] for m in mats), sum(m.shape[1] for m in mats)))
    i = j = 0
    for m in mats:
        out[i:i + m.shape[0], j:j + m.shape[1]] = m
        i, j = i + m.shape[0], j + m.shape[1]
    return out


def x_dim(name: str) -> str | None:
    """The x dimension (x_n, x_p or x) of a schema variable, or None."""
    return next((d for d in schema.VARIABLES[name].dims if d in (schema.X_N, schema.X_P, schema.X)),
                None)


class StoredGrid:
    """Maps a cell model's x-resolved outputs (PyBaMM order: x rows, then r) to the stored grid.

    ``maps``: XMap per domain (x_n, x_s, x_p). Methods take an x dimension (x_n, x_p, or x for
    all three domains) or a schema variable's name.
    """

    def __init__(self, maps: dict[str, XMap]):
        self.maps = maps
        self.x = np.concatenate([maps[d].nodes for d in X_DOMAINS])
        self._dims = {dim: self.domains(dim) for dim in (schema.X_N, schema.X_P, schema.X)}
        # x dimension -> (to stored, back to the solver's nodes), where it is coarsened
        self._mats = {dim: (block(ms, "to_stored"), block(ms, "to_solver"))
                      for dim, ms in self._dims.items() if any(m.coarsened for m in ms)}

    def domains(self, dim: str) -> list[XMap]:
        return [self.maps[d] for d in X_DOMAINS] if dim == schema.X else [self.maps[dim]]

    def _dim(self, name_or_dim: str) -> str:
        return name_or_dim if name_or_dim in self._dims else x_dim(name_or_dim)

    @property
    def coarsened(self) -> bool:
        return bool(self._mats)

    def names(self) -> list[str]:
        """Schema variables stored on a coarsened x grid."""
        return [n for n in schema.VARIABLES if x_dim(n) in self._mats]

    def restrict(self, name: str, values: np.ndarray) -> np.ndarray:
        """Flat solver-mesh values -> flat stored values (unchanged if not coarsened)."""
        dim = self._dim(name)
        if dim not in self._mats:
            return values
        w = self._mats[dim][0]
        return (w @ values.reshape(w.shape[1], -1)).ravel()

    def errors(self, name: str, solver: np.ndarray, stored: np.ndarray) -> tuple[float, float]:
        """(at the stored nodes: |stored value - solver field linearly interpolated there|,
        at the solver's nodes: |stored field linearly interpolated there - solver value|, linear
        extrapolation beyond the outermost stored nodes), largest over the field, in its units."""
        dim = self._dim(name)
        w, back = self._mats[dim]
        s = solver.reshape(w.shape[1], -1)
        c = stored.reshape(w.shape[0], -1)
        point = []
        i = 0
        for m in self._dims[dim]:
            seg = s[i:i + len(m.solver_nodes)]
            point.append(np.stack([np.interp(m.nodes, m.solver_nodes, col) for col in seg.T], 1))
            i += len(m.solver_nodes)
        return float(np.max(np.abs(c - np.vstack(point)))), float(np.max(np.abs(back @ c - s)))

    def integral_change(self, name: str, solver: np.ndarray, stored: np.ndarray) -> float:
        """Largest |mean over a domain on the stored grid - on the solver's| (each domain, each
        trailing column: every stored r node), in the field's units: round-off by design."""
        dim = self._dim(name)
        w = self._mats[dim][0]
        s, c = solver.reshape(w.shape[1], -1), stored.reshape(w.shape[0], -1)
        worst, i, j = 0.0, 0, 0
        for m in self._dims[dim]:
            ns, nc = len(m.solver_nodes), len(m.nodes)
            a = (s[i:i + ns] * np.diff(m.solver_edges)[:, None]).sum(0)
            b = (c[j:j + nc] * np.diff(m.edges)[:, None]).sum(0)
            worst = max(worst, float(np.max(np.abs(a - b))) / float(m.edges[-1] - m.edges[0]))
            i, j = i + ns, j + nc
        return worst
