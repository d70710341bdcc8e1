"""scripts/diag_life_lli.py: the split of the life twin's LLI error into its plated part and the
rest, on a store and an estimate made by code."""

import numpy as np
import xarray as xr

from packtwin.eval.life_evaluate import LifeSplit
from packtwin.physics.lli import plated_points


def _store_and_estimate(plated_offset: float, rest_offset: float):
    cycles = np.arange(1, 21)
    shape = (1, 2, cycles.size)
    dims = ("scenario", "cell", "cycle")
    lli = np.broadcast_to(0.01 * np.sqrt(cycles), shape).copy()
    plated = np.full(shape, 50.0)
    ds = xr.Dataset({"lli": (dims, lli), "plated_lithium_end": (dims, plated),
                     "sei_thickness_end": (dims, np.broadcast_to(5 + np.sqrt(cycles), shape).copy()),
                     "capacity": (dims, np.full(shape, 5.0))}, coords={"cycle": cycles})
    # the estimate: the true LLI with its plated part off by plated_offset [mol/m3] and the
    # rest (SEI and dead lithium) off by rest_offset [points]
    est_plated = plated + plated_offset
    live = xr.Dataset({"lli_est": (dims, lli + rest_offset + plated_points(est_plated)
                                   - plated_points(plated)),
                       "plated_lithium_end_est": (dims, est_plated)}, coords={"cycle": cycles})
    return ds, live, LifeSplit([0], [0, 1], cycles > 10)


def test_the_plated_part_is_split_off(load_script):
    mod = load_script("diag_life_lli")
    ds, live, split = _store_and_estimate(plated_offset=10.0, rest_offset=0.0)
    row = mod.decompose(ds, live, split, upto=10)
    step = float(plated_points(10.0))
    assert row["runs"] == 2 and row["cycles"] == 10
    assert row["plated_part_mae"] == np.float64(row["plated_part_mean_error"])
    np.testing.assert_allclose([row["twin_lli_mae"], row["plated_part_mae"]], step, rtol=1e-9)
    assert row["twin_lli_mae_with_true_plated"] < 1e-12
    assert row["sqrt_fit_lli_mae"] < 1e-12  # the truth is a + b sqrt(cycle): the fit is exact


def test_an_error_outside_the_plated_part_stays(load_script):
    mod = load_script("diag_life_lli")
    ds, live, split = _store_and_estimate(plated_offset=0.0, rest_offset=-0.02)
    row = mod.decompose(ds, live, split, upto=10)
    assert row["plated_part_mae"] == 0.0
    np.testing.assert_allclose([row["twin_lli_mae"], row["twin_lli_mae_with_true_plated"]], 0.02,
                               rtol=1e-9)
    np.testing.assert_allclose(row["twin_lli_mean_error"], -0.02, rtol=1e-9)
