"""The stored x grid: solver cells averaged onto coarser uniform cells keep each domain's
integral (an electrode's lithium, the x-averaged SEI) and the store's coordinates follow it."""

import numpy as np
import pytest

from packtwin.sim import config as cfgmod
from packtwin.sim.stored_grid import cell_average, x_map


def test_cell_average_keeps_the_integral_on_meshes_that_do_not_nest():
    fine = np.concatenate([[0.0], np.cumsum(np.geomspace(1.0, 3.0, 11))])
    fine /= fine[-1]  # an exponential-like mesh, cells growing to the right
    coarse = np.linspace(0.0, 1.0, 5)
    c = np.cos(4.0 * 0.5 * (fine[1:] + fine[:-1]))
    w = cell_average(fine, coarse)
    assert np.allclose(w.sum(1), 1.0)  # a mean: constants pass through
    assert (w @ c * np.diff(coarse)).sum() == pytest.approx((c * np.diff(fine)).sum(), abs=1e-14)


def test_nested_uniform_cells_are_the_mean_of_their_solver_cells():
    edges = np.linspace(0.0, 6.0, 7)
    m = x_map(0.5 * (edges[1:] + edges[:-1]), edges, 2)
    np.testing.assert_allclose(m.nodes, [1.5, 4.5])
    np.testing.assert_allclose(m.to_stored @ np.arange(6.0), [1.0, 4.0])
    same = x_map(m.solver_nodes, edges, 6)  # no coarser: stored on the solver's own cells
    assert not same.coarsened and np.array_equal(same.nodes, m.solver_nodes)


@pytest.fixture(scope="module")
def stepped():
    pytest.importorskip("pybamm")
    from packtwin.sim.cell import CellModel, nominal_values

    mc = cfgmod.ModelConfig(var_pts={"x_n": 9, "x_s": 3, "x_p": 6, "r_n": 4, "r_p": 4},
                            submesh={}, stored_r_points=None,
                            stored_x_points={"x_n": 3, "x_p": 3, "x_s": None})
    radii = nominal_values(mc, ["neg_radius", "pos_radius"])
    cell = CellModel(mc, (), (radii["neg_radius"], radii["pos_radius"]))
    ins = cell.inputs({}, {}, 25.0, 298.15)  # 5C: steep profiles through the thickness
    sol = cell.step(None, ins, 60.0)
    return cell, cell.read(sol, ins)


def test_stored_fields_are_on_the_coarse_grid_and_keep_the_lithium(stepped):
    from packtwin.sim.cell import SOLVER_PREFIX

    cell, out = stepped
    assert len(cell.x_n) == 3 and len(cell.x_p) == 3 and len(cell.x) == 3 + 3 + 3
    L_n = cell.grid.maps["x_n"].edges[-1]
    np.testing.assert_allclose(cell.x_n, L_n * np.array([1, 3, 5]) / 6)
    c_n = out["c_s_n"].reshape(3, 4)
    solver = out[SOLVER_PREFIX + "c_s_n"].reshape(9, 4)
    # uniform cells on both sides: the electrode mean is the plain mean, node by node in r
    np.testing.assert_allclose(c_n.mean(0), solver.mean(0), rtol=1e-12)
    assert np.abs(c_n - solver[1::3]).max() > 0  # a real profile was averaged, not copied
    # PyBaMM's own x-averaged SEI thickness is the mean of the stored one
    assert out["sei_thickness"].mean() == pytest.approx(float(out["sei_thickness_avg"][0]),
                                                        rel=1e-10, abs=0)
    assert out["c_e"].size == 9
    np.testing.assert_allclose(out["c_e"][3:6], out[SOLVER_PREFIX + "c_e"][9:12])  # separator
    err = cell.stored_grid_errors(out)
    assert set(err) == {f"{n}_at_{w}_nodes" for n in ("c_s_n", "c_s_p", "c_e", "sei_thickness")
                        for w in ("stored", "solver")}
    assert all(np.isfinite(v) and v >= 0 for v in err.values())
    # real through-thickness profiles lose something on the coarse grid
    for name in ("c_s_n_at_stored_nodes", "c_s_n_at_solver_nodes", "c_s_p_at_solver_nodes",
                 "c_e_at_stored_nodes", "c_e_at_solver_nodes"):
        assert err[name] > 1.0, name  # [mol/m3]
    # x_p: 6 uniform solver cells into 3 stored ones: each stored node is the midpoint of two
    # solver nodes, where the two cells' mean IS the linear interpolation, so the error there is
    # zero up to rounding (it was exactly 0.0 or a rounding residue, by package version)
    assert err["c_s_p_at_stored_nodes"] <= 1e-9 * float(out["c_s_p"].max())


def test_stored_x_points_are_validated():
    cfg = cfgmod.GenerateConfig()
    cfg.model.stored_x_points = {"x_n": 1, "xp": 8}
    with pytest.raises(cfgmod.ConfigError) as exc:
        cfgmod.validate(cfg)
    msg = str(exc.value)
    assert "model.stored_x_points.x_n must be an integer >= 2" in msg
    assert "model.stored_x_points key 'xp' unknown (did you mean 'x_p'?)" in msg


def test_store_estimate_follows_the_stored_grid():
    from packtwin.sim import budget
    from packtwin.sim.stored_grid import stored_sizes

    cfg = cfgmod.GenerateConfig()
    sizes = stored_sizes(cfg.model)
    assert sizes == {"x_n": 16, "x_s": 8, "x_p": 16, "r_n": 10, "r_p": 10}
    coarse = budget.estimate(cfg).store_bytes
    cfg.model.stored_x_points = None
    assert stored_sizes(cfg.model)["x_n"] == cfg.model.var_pts["x_n"]
    assert budget.estimate(cfg).store_bytes > 1.5 * coarse


def test_a_store_made_before_the_stored_x_grid_resumes_only_where_nothing_changes():
    from packtwin.sim.generate import upgrade_stored_config

    cfg = cfgmod.GenerateConfig()
    cfg.model.var_pts.update({"x_n": 16, "x_s": 8, "x_p": 16})  # the demo: stored = solver's
    old = cfgmod.to_dict(cfg)
    del old["model"]["stored_x_points"]
    assert upgrade_stored_config(old, cfg) == cfgmod.to_dict(cfg)
    cfg.model.var_pts["x_n"] = 48  # now the store would hold 16 cells of 48: not the old data
    old["model"]["var_pts"]["x_n"] = 48
    assert upgrade_stored_config(old, cfg) != cfgmod.to_dict(cfg)
