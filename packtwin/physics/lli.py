"""Loss of lithium inventory (LLI) as PyBaMM defines it: the one definition of the twin and reports.

PyBaMM 26 (``BaseModel._set_lithium_ion_summary_variables`` in
``pybamm/models/full_battery_models/lithium_ion/base_lithium_ion_model.py``):

    "Loss of lithium inventory [%]" = (1 - n_Li_particles / n_Li_particles_init) * 100

with n_Li_particles the lithium in both electrodes' particles (the electrolyte's is left out;
``..., including electrolyte [%]`` is the other variable). Lithium that leaves the particles for a
side reaction counts, whatever it became: the SEI's (``Loss of lithium to negative SEI [mol]``),
dead lithium, and lithium still plated (PyBaMM's ``Loss of lithium to negative lithium plating
[mol]`` = (c_plated + c_dead) L_n L_y L_z with c the volume-averaged concentrations per electrode
volume [mol/m3]). The store's ``plated_lithium_end`` is PyBaMM's "X-averaged negative lithium
plating concentration [mol.m-3]" (reversibly plated lithium only; equal to the volume average
in a 1D cell), so the lithium still plated at a cycle's end is that times L_n A.
"""

from __future__ import annotations

import numpy as np

from packtwin.physics.constants import CellConstants, okane2022


def particle_inventory_mol(cell: CellConstants | None = None) -> float:
    """PyBaMM's ``n_Li_particles_init`` [mol]: the fresh cell's lithium in both electrodes'
    particles (default: OKane2022)."""
    c = cell or okane2022()
    return c.neg.c_init * c.neg.active_volume + c.pos.c_init * c.pos.active_volume


def plated_mol(plated_mol_m3, cell: CellConstants | None = None) -> np.ndarray:
    """Lithium [mol] held by an x-averaged plated-lithium concentration [mol/m3 of negative
    electrode] (PyBaMM: c L_n L_y L_z)."""
    c = cell or okane2022()
    return np.asarray(plated_mol_m3, dtype=float) * c.neg.L * c.neg.A


def lli_points(lost_mol, cell: CellConstants | None = None) -> np.ndarray:
    """Lithium lost from the particles [mol] as PyBaMM's LLI [% of the fresh inventory]."""
    return 100.0 * np.asarray(lost_mol, dtype=float) / particle_inventory_mol(cell)


def plated_points(plated_mol_m3, cell: CellConstants | None = None) -> np.ndarray:
    """The LLI [percentage points] of the lithium still plated (x-averaged [mol/m3])."""
    return lli_points(plated_mol(plated_mol_m3, cell), cell)


def with_plated(lli_pct, plated_mol_m3, cell: CellConstants | None = None) -> np.ndarray:
    """LLI [%] of the lithium lost to SEI and dead lithium (``lli_pct``) plus the lithium still
    plated at that moment: PyBaMM's "Loss of lithium inventory [%]". NaN plated lithium (no
    estimate for that cycle) leaves ``lli_pct`` as it is."""
    extra = plated_points(plated_mol_m3, cell)
    return np.asarray(lli_pct, dtype=float) + np.where(np.isfinite(extra), extra, 0.0)
