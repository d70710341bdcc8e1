"""A store kept on a coarser x grid than the solver's: coordinates, attrs and the lithium kept."""

import json

import numpy as np
import pytest

from packtwin import schema
from packtwin.sim import config as cfgmod

pytest.importorskip("pybamm")


def test_store_on_a_coarser_x_grid_records_its_grid_and_error(tmp_path):
    import xarray as xr

    from packtwin.sim.generate import run

    cfg = cfgmod.GenerateConfig(
        scenarios=[cfgmod.Scenario(25.0, 3.0, 3.0, "cccv")],
        pack=cfgmod.PackConfig(1, 1),
        model=cfgmod.ModelConfig(var_pts={"x_n": 6, "x_s": 3, "x_p": 4, "r_n": 5, "r_p": 5},
                                 submesh={}, stored_r_points=None,
                                 stored_x_points={"x_n": 2, "x_s": 8, "x_p": 2}),
        variation=cfgmod.VariationConfig(parameters=[cfgmod.VariedParameter("neg_c_init", 0.01)]),
        protocol=cfgmod.ProtocolConfig(rest_s=60.0, cv_max_s=60.0), n_cycles=1)
    path = tmp_path / "coarse.zarr"
    counts = run(cfg, path, workers=1, quiet=True, log=lambda *_: None)
    assert counts["ok"] == 1
    ds = xr.open_zarr(path, consolidated=False)
    # x_s asks for more cells than the solver has: the solver's 3 are kept
    assert ds.sizes[schema.X_N] == 2 and ds.sizes[schema.X_P] == 2 and ds.sizes[schema.X] == 7
    x_n = ds[schema.X_N].values
    np.testing.assert_allclose(x_n[1], 3 * x_n[0])  # uniform cell centres from x = 0
    note = json.loads(ds.attrs["stored_grid"])
    assert note["stored_x_points"] == {"x_n": 2, "x_s": 3, "x_p": 2}
    assert note["solver_var_pts"]["x_n"] == 6 and "width-weighted mean" in note["x"]
    err = json.loads(ds.attrs["stored_grid_error"])["0"]
    assert err["c_s_n_at_solver_nodes_pct_c_max"] > 0 and np.isfinite(list(err.values())).all()
    # the x-averaged SEI is the mean of the stored (conservatively averaged) SEI field
    valid = ds["valid"].values[0, 0].astype(bool)
    sei = ds["sei_thickness"].values[0, 0, 0][valid]
    np.testing.assert_allclose(sei.mean(-1), ds["sei_thickness_avg"].values[0, 0, 0][valid],
                               rtol=1e-9)
