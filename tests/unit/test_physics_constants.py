"""Every hard-coded OKane2022 number equals PyBaMM's parameter set (functions evaluated)."""

import dataclasses
import math

import numpy as np
import pytest

pybamm = pytest.importorskip("pybamm")

from packtwin.physics.constants import (F, R_GAS, ElectrodeConstants, okane2022,  # noqa: E402
                                        specific_interfacial_area)
from packtwin.physics.diffusion import arrhenius  # noqa: E402


@pytest.fixture(scope="module")
def pv():
    return pybamm.ParameterValues("OKane2022")


def _call(f, *args):
    return float(np.asarray(f(*[pybamm.Scalar(a) for a in args]).evaluate()).ravel()[0])


def test_physical_constants_equal_pybamm():
    assert F == pybamm.constants.F.value
    assert R_GAS == pybamm.constants.R.value


SCALARS = {
    "T_ref": "Reference temperature [K]", "nominal_capacity_ah": "Nominal cell capacity [A.h]",
    "c_e_ref": "Initial concentration in electrolyte [mol.m-3]",
    "L_sep": "Separator thickness [m]", "v_min": "Lower voltage cut-off [V]",
    "v_max": "Upper voltage cut-off [V]", "T_init": "Initial temperature [K]",
}
ELECTRODE = {
    "c_max": "Maximum concentration in {d} electrode [mol.m-3]", "R": "{D} particle radius [m]",
    "L": "{D} electrode thickness [m]", "eps_s": "{D} electrode active material volume fraction",
    "alpha": "{D} electrode charge transfer coefficient",
    "c_init": "Initial concentration in {d} electrode [mol.m-3]",
}
SEI = {
    "L_0": "Initial SEI thickness [m]", "D_sol": "SEI solvent diffusivity [m2.s-1]",
    "c_sol": "Bulk solvent concentration [mol.m-3]", "V_bar": "SEI partial molar volume [m3.mol-1]",
    "z": "Ratio of lithium moles to SEI moles", "E": "SEI growth activation energy [J.mol-1]",
    "resistivity": "SEI resistivity [Ohm.m]", "U": "SEI open-circuit potential [V]",
    "j0": "SEI reaction exchange current density [A.m-2]", "k": "SEI kinetic rate constant [m.s-1]",
}
PLATING = {
    "k": "Lithium plating kinetic rate constant [m.s-1]",
    "alpha": "Lithium plating transfer coefficient",
    "V_bar_li": "Lithium metal partial molar volume [m3.mol-1]",
    "c_0": "Initial plated lithium concentration [mol.m-3]",
}


def test_scalars_equal_pybamm(pv):
    c = okane2022()
    checked = []
    for attr, name in SCALARS.items():
        assert getattr(c, attr) == pv[name], (attr, name)
        checked.append(attr)
    for attr, name in SEI.items():
        assert getattr(c.sei, attr) == pv[name], (attr, name)
    for attr, name in PLATING.items():
        assert getattr(c.plating, attr) == pv[name], (attr, name)
    assert c.sei.T_ref == pv["Reference temperature [K]"]
    # Nothing in the SEI/plating dataclasses escaped the comparison.
    assert {f.name for f in dataclasses.fields(c.sei)} == set(SEI) | {"T_ref"}
    assert {f.name for f in dataclasses.fields(c.plating)} == set(PLATING)


@pytest.mark.parametrize("domain", ["negative", "positive"])
def test_electrode_numbers_equal_pybamm(pv, domain):
    e: ElectrodeConstants = okane2022().electrode(domain)
    D, d = domain.capitalize(), domain
    for attr, name in ELECTRODE.items():
        assert getattr(e, attr) == pv[name.format(D=D, d=d)], (attr, name)
    area = (pv["Electrode height [m]"] * pv["Electrode width [m]"]
            * pv["Number of electrodes connected in parallel to make a cell"])
    assert math.isclose(e.A, area, rel_tol=1e-15)
    assert e.T_ref == pv["Reference temperature [K]"]
    assert math.isclose(e.a, 3 * e.eps_s / e.R) and e.a == specific_interfacial_area(e.eps_s, e.R)


@pytest.mark.parametrize("domain", ["negative", "positive"])
def test_electrode_functions_equal_pybamm(pv, domain):
    """Diffusivity and exchange-current functions: reference value at T_ref and Arrhenius energy."""
    e = okane2022().electrode(domain)
    D_fun = pv[f"{domain.capitalize()} particle diffusivity [m2.s-1]"]
    j0_fun = pv[f"{domain.capitalize()} electrode exchange-current density [A.m-2]"]
    for T in (263.15, 298.15, 318.15, 333.15):
        assert math.isclose(_call(D_fun, 0.5, T), arrhenius(e.D_ref, e.Ea_D, T), rel_tol=1e-12)
        # j0 = k c_e^0.5 c_s^0.5 (c_max - c_s)^0.5 with c_e = c_s = 1, c_max = 2 isolates k(T).
        assert math.isclose(_call(j0_fun, 1.0, 1.0, 2.0, T), arrhenius(e.k_ref, e.Ea_k, T),
                            rel_tol=1e-12)
    # The diffusivity has no stoichiometry dependence in OKane2022 (what a constant D_ref assumes).
    assert _call(D_fun, 0.1, 298.15) == _call(D_fun, 0.9, 298.15)


def test_entropic_terms_are_zero(pv):
    # ocp.py has no temperature dependence because of this.
    assert pv["Negative electrode OCP entropic change [V.K-1]"] == 0.0
    assert pv["Positive electrode OCP entropic change [V.K-1]"] == 0.0


def test_bad_electrode_constants_raise():
    e = okane2022().neg
    with pytest.raises(ValueError, match="domain"):
        dataclasses.replace(e, domain="anode")
    with pytest.raises(ValueError, match="R must be > 0"):
        dataclasses.replace(e, R=0.0)
    with pytest.raises(ValueError, match="unknown electrode"):
        okane2022().electrode("separator")
