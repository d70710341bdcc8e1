"""Per-cell physical parameters of the reduced electrochemical core, and the fixed cell design.

:class:`CoreParams` holds one tensor [B] per parameter that differs from cell to cell: exactly the
quantities the generator draws (``packtwin.schema.PARAMETERS``: lithium inventory, active
fractions, particle radii, diffusivities, exchange currents, contact resistance, SEI rate) plus
the SEI thickness that sets the film resistance. :class:`CellDesign` holds what every cell shares
(thicknesses, porosities, conductivities, c_max, activation energies: OKane2022).

Truth tables store function-valued parameters at a reference state (``packtwin.sim.cell``:
c_e = 1000 mol/m3, stoichiometry 0.5, 298.15 K, times the cell's multiplier); :meth:`from_truth`
maps them back to the core's prefactors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from packtwin.physics.constants import CellConstants, okane2022

# packtwin.sim.config's nominal override: OKane2022 itself has no contact resistance.
NOMINAL_CONTACT_RESISTANCE = 0.005  # Ohm
# Reference state of the truth table's function-valued parameters (packtwin.sim.cell).
REF_C_E, REF_STO = 1000.0, 0.5


@dataclass(frozen=True)
class CellDesign:
    """What every cell of a pack shares (OKane2022, SI units)."""

    constants: CellConstants
    eps_e_n: float = 0.25  # porosities
    eps_e_s: float = 0.47
    eps_e_p: float = 0.335
    brug: float = 1.5  # Bruggeman exponent, electrolyte and electrode, all domains
    sigma_n: float = 215.0  # solid conductivities [S/m]
    sigma_p: float = 0.18
    c_p_init: float = 17038.0  # initial positive concentration [mol/m3] (not varied)

    @property
    def c_e0(self) -> float:
        return self.constants.c_e_ref

    @property
    def L_s(self) -> float:
        return float(self.constants.L_sep)

    @property
    def area(self) -> float:
        return self.constants.neg.A

    def sigma_eff(self, domain: str) -> float:
        """Effective solid conductivity sigma (1 - porosity)^b [S/m] (PyBaMM's Bruggeman)."""
        if domain == "n":
            return self.sigma_n * (1.0 - self.eps_e_n) ** self.brug
        return self.sigma_p * (1.0 - self.eps_e_p) ** self.brug


def okane2022_design() -> CellDesign:
    return CellDesign(constants=okane2022())


@dataclass
class CoreParams:
    """Per-cell parameters, each a tensor [B] (SI units).

    Attributes:
        c_n_init: negative particle concentration at the start, at rest [mol/m3]: with
            ``c_p_init`` of the design it fixes the cell's lithium inventory.
        eps_s_n, eps_s_p: active-material volume fractions [1].
        R_n, R_p: particle radii [m].
        D_n, D_p: particle diffusivities at T_ref [m2/s] (Arrhenius in T).
        k_n, k_p: exchange-current prefactors at T_ref [A/m2 (m3/mol)^1.5]
            (j0 = k c_e^0.5 c_s^0.5 (c_max - c_s)^0.5).
        R_contact: contact resistance [Ohm].
        L_sei: SEI thickness [m] (film resistance rho_sei L_sei per unit particle area).
        D_sol: SEI solvent diffusivity [m2/s] (SEI growth rate).
    """

    c_n_init: Tensor
    eps_s_n: Tensor
    eps_s_p: Tensor
    R_n: Tensor
    R_p: Tensor
    D_n: Tensor
    D_p: Tensor
    k_n: Tensor
    k_p: Tensor
    R_contact: Tensor
    L_sei: Tensor
    D_sol: Tensor

    @property
    def n_cells(self) -> int:
        return int(self.c_n_init.shape[0])

    def names(self) -> list[str]:
        return [f.name for f in fields(self)]

    def to(self, dtype: torch.dtype) -> "CoreParams":
        return CoreParams(**{n: getattr(self, n).to(dtype) for n in self.names()})

    @classmethod
    def nominal(cls, n_cells: int, design: CellDesign | None = None,
                dtype: torch.dtype = torch.float64) -> "CoreParams":
        """OKane2022 values (with the generator's contact resistance) for ``n_cells`` cells."""
        c = (design or okane2022_design()).constants
        vals = dict(c_n_init=c.neg.c_init, eps_s_n=c.neg.eps_s, eps_s_p=c.pos.eps_s,
                    R_n=c.neg.R, R_p=c.pos.R, D_n=c.neg.D_ref, D_p=c.pos.D_ref, k_n=c.neg.k_ref,
                    k_p=c.pos.k_ref, R_contact=NOMINAL_CONTACT_RESISTANCE, L_sei=c.sei.L_0,
                    D_sol=c.sei.D_sol)
        return cls(**{k: torch.full((n_cells,), float(v), dtype=dtype) for k, v in vals.items()})

    @classmethod
    def from_truth(cls, values: Mapping[str, "np.ndarray | float"], n_cells: int | None = None,
                   design: CellDesign | None = None,
                   dtype: torch.dtype = torch.float64) -> "CoreParams":
        """Parameters from a truth table: ``{key: [B] values}`` keyed like
        ``packtwin.schema.PARAMETERS`` (a store's ``param_<key>`` variables, prefix stripped or
        not); keys not given keep their nominal value.

        Raises:
            ValueError: an unknown key, a length that differs between keys, or a non-positive or
                non-finite value (named).
        """
        design = design or okane2022_design()
        c = design.constants
        vals = {k[len("param_"):] if k.startswith("param_") else k: np.atleast_1d(
            np.asarray(v, dtype=np.float64)) for k, v in values.items()}
        unknown = sorted(set(vals) - set(_TRUTH_MAP))
        if unknown:
            raise ValueError(f"CoreParams.from_truth: unknown parameter keys {unknown}; "
                             f"expected some of {sorted(_TRUTH_MAP)}")
        lengths = {k: v.size for k, v in vals.items()}
        if n_cells is None:
            n_cells = max(lengths.values(), default=1)
        for k, v in vals.items():
            if v.size not in (1, n_cells):
                raise ValueError(f"CoreParams.from_truth: {k!r} has {v.size} values, expected "
                                 f"{n_cells} (one per cell) or 1")
            if not np.all(np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"CoreParams.from_truth: {k!r} must be finite and > 0, "
                                 f"found {v.tolist()}")
        out = cls.nominal(n_cells, design, dtype)
        j0_ref_scale = _j0_ref_scale(c)
        for key, v in vals.items():
            field_name, kind = _TRUTH_MAP[key]
            if kind == "unused":
                continue
            v = np.broadcast_to(v, (n_cells,))
            if kind == "j0_n":
                v = v / j0_ref_scale["n"]
            elif kind == "j0_p":
                v = v / j0_ref_scale["p"]
            setattr(out, field_name, torch.as_tensor(np.array(v), dtype=dtype))
        return out


def _j0_ref_scale(c: CellConstants) -> dict[str, float]:
    """Exchange current at the truth table's reference state per unit prefactor k, by electrode."""
    s = math.sqrt(REF_C_E) * math.sqrt(REF_STO * (1 - REF_STO))
    return {"n": s * c.neg.c_max, "p": s * c.pos.c_max}


def truth_values(params: CoreParams, fields_: tuple[str, ...],
                 design: CellDesign | None = None) -> dict[str, np.ndarray]:
    """The truth-table form (``{key: [B] values}``, :meth:`CoreParams.from_truth`'s inverse) of
    the given :class:`CoreParams` fields, e.g. to score identified parameters against a store's
    table."""
    scale = _j0_ref_scale((design or okane2022_design()).constants)
    out = {}
    for key, (name, kind) in _TRUTH_MAP.items():
        if name not in fields_:
            continue
        v = getattr(params, name).detach().cpu().numpy().astype(np.float64)
        out[key] = v * scale["n"] if kind == "j0_n" else v * scale["p"] if kind == "j0_p" else v
    return out


def truth_table(ds) -> dict[str, np.ndarray]:
    """The ``param_*`` variables of a truth store (an xarray Dataset or any mapping of arrays),
    as ``{key: [cell] values}`` for :meth:`CoreParams.from_truth`.

    Raises:
        ValueError: the dataset has no ``param_*`` variable.
    """
    names = [n for n in getattr(ds, "data_vars", ds) if str(n).startswith("param_")]
    if not names:
        raise ValueError("truth_table: no 'param_*' variables in the dataset; a truth store "
                         "written by 'packtwin generate' has one per varied parameter")
    return {str(n)[len("param_"):]: np.asarray(ds[n]) for n in names}


# truth-table key -> (CoreParams field, conversion)
_TRUTH_MAP: dict[str, tuple[str, str]] = {
    "neg_c_init": ("c_n_init", "same"),
    "neg_am_fraction": ("eps_s_n", "same"),
    "pos_am_fraction": ("eps_s_p", "same"),
    "neg_radius": ("R_n", "same"),
    "pos_radius": ("R_p", "same"),
    # OKane2022's diffusivities do not depend on stoichiometry: the reference value is D(T_ref).
    "neg_diffusivity": ("D_n", "same"),
    "pos_diffusivity": ("D_p", "same"),
    "neg_j0": ("k_n", "j0_n"),
    "pos_j0": ("k_p", "j0_p"),
    "contact_resistance": ("R_contact", "same"),
    "sei_solvent_diffusivity": ("D_sol", "same"),
    # Only the reaction-limited SEI model uses it; the generator's is solvent-diffusion limited.
    "sei_rate_constant": ("", "unused"),
}
