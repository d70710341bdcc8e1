"""Physical constants and the OKane2022 (LG M50, 5 Ah) cell parameters, as plain numbers.

Every value is SI (mol, m, s, A, V, K, J) and hard-coded, so ``packtwin.physics`` needs no PyBaMM at
run time; ``tests/unit/test_physics_constants.py`` compares each one with
``pybamm.ParameterValues("OKane2022")``.

Where OKane2022 gives a *function* rather than a number, the reference value and activation energy
are read from that function's source (PyBaMM 26.10,
``pybamm/input/parameters/lithium_ion/OKane2022.py``):

* negative diffusivity ``graphite_LGM50_diffusivity_Chen2020``:
  D = 3.3e-14 m2/s * exp(Ea/R (1/298.15 - 1/T)), Ea = 3.03e4 J/mol (no stoichiometry dependence);
* positive diffusivity ``nmc_LGM50_diffusivity_Chen2020``: D = 4e-15 m2/s, Ea = 2.5e4 J/mol;
* negative exchange current ``graphite_LGM50_electrolyte_exchange_current_density_Chen2020``:
  j0 = 6.48e-7 * exp(Ea/R (1/298.15 - 1/T)) * c_e^0.5 c_s^0.5 (c_max - c_s)^0.5 [A/m2],
  k_ref = 6.48e-7 A/m2 (m3/mol)^1.5, Ea = 3.5e4 J/mol;
* positive exchange current ``nmc_LGM50_electrolyte_exchange_current_density_Chen2020``:
  k_ref = 3.42e-6 A/m2 (m3/mol)^1.5, Ea = 1.78e4 J/mol.

The OCP entropic changes of both electrodes are 0 V/K in OKane2022, so the OCPs in
:mod:`packtwin.physics.ocp` have no temperature dependence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# PyBaMM's values (scipy CODATA 2018), so that residuals computed on PyBaMM output are exact.
F: float = 96485.33212331001  # Faraday constant [C/mol]
R_GAS: float = 8.31446261815324  # molar gas constant [J/(mol K)]
T_REF: float = 298.15  # reference temperature of every OKane2022 Arrhenius law [K]

NEGATIVE = "negative"
POSITIVE = "positive"


@dataclass(frozen=True)
class ElectrodeConstants:
    """One porous electrode made of identical spherical particles.

    Attributes (SI):
        domain: "negative" or "positive"; fixes the sign of the interfacial current for a given
            cell current (see :func:`packtwin.physics.conservation.mean_interfacial_current`).
        c_max: maximum lithium concentration in the particle [mol/m3].
        R: particle radius [m].
        L: electrode thickness [m].
        eps_s: active-material volume fraction [1].
        A: electrode (current-collector) area of the cell, height x width x electrodes in
            parallel [m2].
        D_ref: particle diffusivity at ``T_ref`` [m2/s].
        Ea_D: activation energy of the diffusivity [J/mol].
        k_ref: exchange-current prefactor at ``T_ref`` [A/m2 (m3/mol)^1.5]
            (j0 = k c_e^0.5 c_s^0.5 (c_max - c_s)^0.5).
        Ea_k: activation energy of the exchange current [J/mol].
        alpha: charge-transfer coefficient [1].
        c_init: initial particle concentration of the parameter set [mol/m3].
        T_ref: reference temperature of the Arrhenius laws [K].
    """

    domain: str
    c_max: float
    R: float
    L: float
    eps_s: float
    A: float
    D_ref: float
    Ea_D: float
    k_ref: float
    Ea_k: float
    alpha: float
    c_init: float
    T_ref: float = T_REF

    def __post_init__(self) -> None:
        if self.domain not in (NEGATIVE, POSITIVE):
            raise ValueError(f"ElectrodeConstants.domain must be {NEGATIVE!r} or {POSITIVE!r}, "
                             f"got {self.domain!r}")
        for name in ("c_max", "R", "L", "eps_s", "A", "D_ref", "k_ref"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ElectrodeConstants.{name} must be > 0, "
                                 f"got {getattr(self, name)!r}")

    @property
    def a(self) -> float:
        """Specific interfacial area a = 3 eps_s / R [1/m] (particle surface / electrode volume)."""
        return specific_interfacial_area(self.eps_s, self.R)

    @property
    def sign(self) -> float:
        """+1 for the negative electrode, -1 for the positive: j = sign * I / (a L A)."""
        return 1.0 if self.domain == NEGATIVE else -1.0

    @property
    def active_volume(self) -> float:
        """Volume of active material eps_s L A [m3]: lithium moles = c_avg * active_volume."""
        return self.eps_s * self.L * self.A


@dataclass(frozen=True)
class SEIConstants:
    """SEI parameters of the set (PyBaMM names in brackets).

    Attributes (SI):
        L_0: initial SEI thickness ["Initial SEI thickness [m]"] [m].
        D_sol: solvent diffusivity in the SEI ["SEI solvent diffusivity [m2.s-1]"] [m2/s].
        c_sol: bulk solvent concentration ["Bulk solvent concentration [mol.m-3]"] [mol/m3].
        V_bar: SEI partial molar volume ["SEI partial molar volume [m3.mol-1]"] [m3/mol].
        z: lithium moles per SEI mole ["Ratio of lithium moles to SEI moles"] [1].
        E: growth activation energy ["SEI growth activation energy [J.mol-1]"] [J/mol].
        resistivity: ["SEI resistivity [Ohm.m]"] [Ohm m].
        U: SEI open-circuit potential ["SEI open-circuit potential [V]"] [V].
        j0: reaction exchange current ["SEI reaction exchange current density [A.m-2]"] [A/m2].
        k: kinetic rate constant ["SEI kinetic rate constant [m.s-1]"] [m/s].
        T_ref: reference temperature of the Arrhenius factor [K].
    """

    L_0: float
    D_sol: float
    c_sol: float
    V_bar: float
    z: float
    E: float
    resistivity: float
    U: float
    j0: float
    k: float
    T_ref: float = T_REF


@dataclass(frozen=True)
class PlatingConstants:
    """Lithium-plating parameters of the set.

    Attributes (SI):
        k: plating kinetic rate constant [m/s] (j0_plating = F k c_e).
        alpha: plating transfer coefficient [1].
        V_bar_li: lithium-metal partial molar volume [m3/mol].
        c_0: initial plated lithium concentration [mol/m3].
    """

    k: float
    alpha: float
    V_bar_li: float
    c_0: float


@dataclass(frozen=True)
class CellConstants:
    """A whole cell: both electrodes, electrolyte, SEI and plating, limits.

    Attributes (SI):
        neg, pos: the electrodes.
        T_ref: reference temperature [K].
        nominal_capacity_ah: nominal capacity [A h].
        c_e_ref: initial (reference) electrolyte concentration [mol/m3].
        sei: SEI parameters.
        plating: lithium-plating parameters (optional: nothing here needs them yet).
        L_sep: separator thickness [m] (optional).
        v_min, v_max: voltage cut-offs [V] (optional).
        T_init: initial temperature [K].
    """

    neg: ElectrodeConstants
    pos: ElectrodeConstants
    T_ref: float
    nominal_capacity_ah: float
    c_e_ref: float
    sei: SEIConstants
    plating: PlatingConstants | None = None
    L_sep: float | None = None
    v_min: float | None = None
    v_max: float | None = None
    T_init: float = T_REF
    name: str = field(default="OKane2022")

    def electrode(self, domain: str) -> ElectrodeConstants:
        """The electrode of a domain name ("negative"/"positive", or "n"/"p")."""
        if domain in (NEGATIVE, "n"):
            return self.neg
        if domain in (POSITIVE, "p"):
            return self.pos
        raise ValueError(f"unknown electrode {domain!r}; expected 'negative' or 'positive'")


def specific_interfacial_area(eps_s, R):
    """a = 3 eps_s / R [1/m] for spheres of radius R [m] at active-material fraction eps_s [1].

    Works on floats and tensors alike (per-cell fractions/radii).
    """
    return 3.0 * eps_s / R


# LG M50 electrode area: height 0.065 m x width 1.58 m, one electrode pair in parallel.
_AREA = 0.065 * 1.58


def okane2022() -> CellConstants:
    """The OKane2022 parameter set (PyBaMM 26.10) as :class:`CellConstants`."""
    neg = ElectrodeConstants(
        domain=NEGATIVE, c_max=33133.0, R=5.86e-06, L=8.52e-05, eps_s=0.75, A=_AREA,
        D_ref=3.3e-14, Ea_D=3.03e4, k_ref=6.48e-7, Ea_k=35000.0, alpha=0.5, c_init=29866.0,
    )
    pos = ElectrodeConstants(
        domain=POSITIVE, c_max=63104.0, R=5.22e-06, L=7.56e-05, eps_s=0.665, A=_AREA,
        D_ref=4e-15, Ea_D=25000.0, k_ref=3.42e-6, Ea_k=17800.0, alpha=0.5, c_init=17038.0,
    )
    sei = SEIConstants(
        L_0=5e-09, D_sol=2.5e-22, c_sol=2636.0, V_bar=9.585e-05, z=1.0, E=38000.0,
        resistivity=200000.0, U=0.4, j0=1.5e-07, k=1e-12,
    )
    plating = PlatingConstants(k=1e-09, alpha=0.65, V_bar_li=1.3e-05, c_0=0.0)
    return CellConstants(
        neg=neg, pos=pos, T_ref=T_REF, nominal_capacity_ah=5.0, c_e_ref=1000.0, sei=sei,
        plating=plating, L_sep=1.2e-05, v_min=2.5, v_max=4.2, T_init=298.15,
    )
