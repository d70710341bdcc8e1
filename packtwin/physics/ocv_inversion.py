"""Open-circuit voltage along the fresh cell's stoichiometry line, and its inversion.

A cell at rest shows its open-circuit voltage OCV = U_p(sto_p) - U_n(sto_n). With the lithium
inventory of the fresh cell conserved (c_n V_n + c_p V_p = n_li, V = active volume) the two
stoichiometries lie on a line, so one voltage fixes both: solve U_p(sto_p(sto_n)) - U_n(sto_n) = V0
for sto_n (the OCV rises monotonically with sto_n on the line). Used by the trivial baseline and by
the physics twin's initial state (each cycle starts after a rest). Under load V0 also holds the
overpotential, and ageing (lost lithium) moves the line: both are errors of this estimate that a
caller corrects or accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from packtwin.physics import ocp
from packtwin.physics.constants import CellConstants


@dataclass(frozen=True)
class StoichiometryLine:
    """Fresh-cell lithium inventory: sto_p = (n_li - sto_n c_max_n V_n) / (c_max_p V_p)."""

    n_li: float  # [mol]
    cap_n: float  # c_max_n * active volume [mol]
    cap_p: float

    @classmethod
    def of(cls, const: CellConstants) -> "StoichiometryLine":
        n, p = const.neg, const.pos
        return cls(n.c_init * n.active_volume + p.c_init * p.active_volume,
                   n.c_max * n.active_volume, p.c_max * p.active_volume)

    def sto_p(self, sto_n):
        return (self.n_li - sto_n * self.cap_n) / self.cap_p

    def bounds(self) -> tuple[float, float]:
        """sto_n range on which both stoichiometries lie in [0, 1]."""
        lo = max(0.0, (self.n_li - self.cap_p) / self.cap_n)
        hi = min(1.0, self.n_li / self.cap_n)
        return lo, hi


def ocv(sto_n: Tensor, line: StoichiometryLine) -> Tensor:
    """Open-circuit voltage [V] at negative stoichiometry ``sto_n`` on the line."""
    return ocp.ocp_positive(line.sto_p(sto_n)) - ocp.ocp_negative(sto_n)


@torch.no_grad()
def invert_ocv(voltage: Tensor, line: StoichiometryLine, iters: int = 60) -> Tensor:
    """sto_n with ocv(sto_n) = voltage, any shape, in float64 (bisection; OCV rises with sto_n).
    The line's fields may be floats or per-cell tensors broadcastable to ``voltage``.

    Clamped to just inside the line's ends when the voltage lies outside the OCV range (the OCP
    fits are steep and extrapolated at 0 and 1). Not differentiable: a measured voltage is data.
    """
    v = torch.as_tensor(voltage).to(torch.float64)
    # the line's ends; its fields may be per-cell tensors broadcasting with ``voltage``
    lo = torch.clamp(torch.as_tensor((line.n_li - line.cap_p) / line.cap_n, dtype=torch.float64),
                     min=0.0).expand_as(v) + 1e-4
    hi = torch.clamp(torch.as_tensor(line.n_li / line.cap_n, dtype=torch.float64),
                     max=1.0).expand_as(v) - 1e-4
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = ocv(mid, line) > v
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


def soc_window(const: CellConstants, line: StoichiometryLine) -> tuple[float, float]:
    """Negative stoichiometries at 0 % and 100 % SOC: where the OCV meets the voltage limits."""
    if const.v_min is None or const.v_max is None:
        raise ValueError(f"soc_window: constants {const.name!r} lack voltage limits "
                         f"(v_min={const.v_min}, v_max={const.v_max})")
    s0, s100 = invert_ocv(torch.tensor([const.v_min, const.v_max]), line).tolist()
    return float(s0), float(s100)
