import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.data import store


def test_synthetic_store_round_trip_is_valid(synthetic_store):
    ds = store.open_store(synthetic_store)
    assert schema.validate(ds) == []
    assert ds["c_s_n"].attrs["units"] == "mol/m3"
    assert ds["sei_thickness"].attrs["pybamm_name"] == schema.VARIABLES["sei_thickness"].pybamm
    # integer-coded protocol keeps CF flags
    assert ds["protocol"].attrs["flag_meanings"].split() == list(schema.PROTOCOLS)
    loaded = ds.load()
    assert schema.check_bounds(loaded) == []
    again = xr.open_zarr(synthetic_store, consolidated=False)
    xr.testing.assert_identical(again.load(), loaded)


def test_validate_lists_every_problem(synthetic_store):
    ds = store.open_store(synthetic_store).load()
    bad = ds.drop_vars("voltage")
    bad["c_s_p"].attrs["units"] = "mol/l"
    del bad.attrs["seed"]
    problems = schema.validate(bad)
    assert any("'voltage' is missing" in p for p in problems)
    assert any("'c_s_p' has units 'mol/l'" in p for p in problems)
    assert any("'seed' is missing" in p for p in problems)
    with pytest.raises(schema.SchemaError, match="my.zarr"):
        schema.check(bad, source="my.zarr")


def test_a_store_made_before_the_instant_current_validates_and_observers_fall_back(
        synthetic_store):
    # stores written before schema.ADDED_INSTANT lack current_end: still valid, and the
    # observers read the voltage at the period's mean current, as they did then
    from packtwin.eval.observer_predict import _measurements

    ds = store.open_store(synthetic_store).load()
    old = ds.drop_vars("current_end")
    assert schema.validate(old) == []
    assert schema.instant_current(ds) == "current_end"
    assert schema.instant_current(old) == "current"
    t = old.isel(scenario=[0])
    valid = np.broadcast_to((t["valid"].transpose("scenario", "snapshot", "time").values > 0)
                            [:, None], (1, t.sizes["cell"], t.sizes["snapshot"], t.sizes["time"]))
    meas = _measurements(t, valid, "old.zarr")
    np.testing.assert_array_equal(meas["current_end"], meas["current"])
    bad = ds.copy()
    bad["current_end"] = bad["current_end"] * np.nan
    with pytest.raises(Exception, match="'current_end' values inside valid samples"):
        _measurements(bad.isel(scenario=[0]), valid, "bad.zarr")


def test_wrong_schema_version_and_missing_store(tmp_path, synthetic_store):
    ds = store.open_store(synthetic_store).load()
    ds.attrs["schema_version"] = "9.0"
    assert any("schema_version" in p for p in schema.validate(ds))
    with pytest.raises(store.StoreError, match="does not exist"):
        store.open_store(tmp_path / "nope.zarr")
    (tmp_path / "junk.zarr").write_text("not a store")
    with pytest.raises(store.StoreError, match="junk.zarr"):
        store.open_store(tmp_path / "junk.zarr")


def test_every_variable_has_units_and_known_dims():
    for name, v in schema.VARIABLES.items():
        assert v.units, name
        assert set(v.dims) <= set(schema.DIMS), name
    for key in schema.PARAMETERS:
        assert schema.var_attrs(schema.param_var(key))["pybamm_name"].endswith(("]", "fraction"))
    with pytest.raises(KeyError, match="unknown parameter"):
        schema.param_var("nope")


def test_import_packtwin_is_light():
    import subprocess
    import sys

    code = ("import sys, packtwin, packtwin.schema, packtwin.cli; "
            "print(any(m in sys.modules for m in ('pybamm', 'panel', 'holoviews')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_usage_and_unknown_command(capsys):
    from packtwin import cli

    assert cli.main([]) == 0
    assert "generate" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_cell_count_is_checked_against_the_pack_shape(synthetic_store):
    from packtwin.data import store

    ds = store.open_store(synthetic_store)
    assert schema.n_cells(ds) == ds.sizes[schema.CELL] == 4
    assert schema.pack_shape(ds) == (2, 2)
    ds.attrs["n_parallel"] = 3
    with pytest.raises(schema.SchemaError, match=r"n_series=2 x n_parallel=3 = 6 cells, but "
                                                 r"dimension 'cell' has 4"):
        schema.n_cells(ds)
