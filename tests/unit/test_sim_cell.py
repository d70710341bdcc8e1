"""The PyBaMM cell wrapper: every schema PyBaMM name exists in the built model; inputs map right."""

import numpy as np
import pytest

from packtwin import schema

pybamm = pytest.importorskip("pybamm")


@pytest.fixture(scope="module")
def cell(tiny_cell):
    return tiny_cell


def test_every_schema_pybamm_name_is_in_the_built_model(cell):
    names = {v.pybamm for v in schema.VARIABLES.values() if v.pybamm}
    for name in names:
        assert cell.model.get_processed_variable(name) is not None, name


def test_grids_and_radial_normalisation(cell):
    assert len(cell.x_n) == 3 and len(cell.x) == 8 and len(cell.r_n) == 4
    # r / R of the cell's own (varied) radius: cell centres inside (0, 1)
    assert 0.0 < cell.r_n.min() and cell.r_n.max() < 1.0
    assert cell.c_max_n == pytest.approx(33133.0) and cell.capacity_ah == pytest.approx(5.0)


def test_function_parameters_vary_through_a_multiplier(cell):
    from packtwin.sim.cell import nominal_values, scale_input

    nom = nominal_values(cell.model_cfg, ["neg_c_init", "neg_j0"])
    ins = cell.inputs({"neg_c_init": 29000.0, "neg_j0": 1.1 * nom["neg_j0"], "neg_radius": 6e-6},
                      nom, current=2.0, ambient_k=290.0)
    assert ins[scale_input("neg_j0")] == pytest.approx(1.1)
    assert ins[schema.PARAMETERS["neg_c_init"].pybamm] == 29000.0
    assert ins["Ambient temperature [K]"] == ins["Initial temperature [K]"] == 290.0


def test_one_step_reads_every_output(cell):
    from packtwin.sim.cell import nominal_values

    nom = nominal_values(cell.model_cfg, ["neg_c_init", "neg_j0"])
    ins = cell.inputs({"neg_c_init": nom["neg_c_init"], "neg_j0": nom["neg_j0"]}, nom, 5.0, 298.15)
    sol = cell.step(None, ins, 60.0)
    out = cell.read(sol, ins)
    assert 3.0 < out["voltage"][0] < 4.2
    assert out["c_s_n"].size == 3 * 4 and out["c_e"].size == 8
    np.testing.assert_allclose(out["voltage"][0], sol["Voltage [V]"].entries[-1], atol=1e-12)
    x0, x100 = cell.stoichiometry_limits({"neg_c_init": nom["neg_c_init"]})
    assert 0.0 < x0 < x100 < 1.0


def test_submesh_side_per_domain_and_bad_side():
    from types import SimpleNamespace

    from packtwin.sim.cell import submesh_types

    model = SimpleNamespace(default_submesh_types={"negative electrode": "uniform",
                                                   "positive electrode": "uniform"})
    types = submesh_types(model, {"x_n": {"type": "exponential", "side": "left"},
                                  "x_p": {"type": "exponential", "side": "right", "stretch": 1.5}})
    assert types["negative electrode"].submesh_params == {"side": "left"}
    assert types["positive electrode"].submesh_params == {"side": "right", "stretch": 1.5}
    with pytest.raises(ValueError, match=r"model.submesh\['x_p'\].*side one of"):
        submesh_types(model, {"x_p": {"type": "exponential", "side": "collector"}})
    with pytest.raises(ValueError, match="model.submesh key 'x_q' unknown"):
        submesh_types(model, {"x_q": {"type": "exponential"}})
