"""Checkpoints of a running scenario without PyBaMM: the stepper's adaptive state, the checkpoint
file, and the rows a checkpoint writes into the store (the PyBaMM resume is in
tests/integration/test_generate_resume.py)."""

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from packtwin import schema
from packtwin.data import store
from packtwin.sim import checkpoint
from packtwin.sim.pack import PackStepper
from tests.unit.test_sim_pack import AnalyticCells


def _advance(st: PackStepper, n: int) -> list[tuple]:
    """n coupling steps of a discharge at 8 A then a rest: what each step did."""
    out = []
    for k in range(n):
        res = st.advance(60.0, 64, 8.0 if k < n - 3 else 0.0, 2.5, 4.2)
        out.append((res.i_pack, res.n_periods, res.cell_currents.tobytes(),
                    res.samples().tobytes(), res.iterations))
    return out


def _stepper(cells) -> PackStepper:
    return PackStepper(2, 2, cells.step, voltage_tol=1e-4, max_iterations=20, max_periods=8)


def test_restored_stepper_takes_exactly_the_steps_of_the_uninterrupted_one():
    cells = AnalyticCells(q0=[0.0, 0.3, 0.1, 0.2], r0=[0.03, 0.02, 0.035, 0.025])
    ref = _stepper(cells)
    _advance(ref, 6)
    state, sols = ref.state(), list(ref.solutions)
    assert ref.m > 1 and ref.drift is not None  # long steps and a drift: state that matters
    state = json.loads(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                   for k, v in state.items()}))  # through JSON, as saved
    state = {k: np.array(v) if isinstance(v, list) else v for k, v in state.items()}
    expected = _advance(ref, 8)

    resumed = _stepper(cells)
    resumed.restore(state)
    resumed.solutions = sols
    assert _advance(resumed, 8) == expected
    # without the adaptive state (cells' states alone) the steps differ: the state is needed
    fresh = _stepper(cells)
    fresh.solutions = sols
    assert _advance(fresh, 8) != expected


def test_stepper_state_of_another_pack_is_refused():
    st = _stepper(AnalyticCells(q0=[0.0] * 4, r0=[0.03] * 4))
    other = PackStepper(1, 2, st.step_cell, 1e-4, 20)
    with pytest.raises(ValueError, match="for 4 cells, this pack has 2"):
        other.restore(st.state())
    with pytest.raises(ValueError, match=r"lacks \['drift'\]"):
        st.restore({k: v for k, v in st.state().items() if k != "drift"})


def test_checkpoint_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "s.zarr"
    xr.Dataset({"a": (("x",), np.arange(3.0))}).to_zarr(path, **store.ZARR_KW)
    y = np.random.default_rng(0).standard_normal(7)
    meta = {"x": 0.1 + 0.2, "none": None, "nan": float("nan"), "flag": np.bool_(True),
            "generator_config": json.dumps({"seed": 0, "n_cycles": 5})}
    size = checkpoint.save(path, 1, 3, {"y_0": y}, meta)
    f = checkpoint.file_for(path, 1)
    assert f.stat().st_size == size and not list(f.parent.glob(".*tmp*"))
    got = checkpoint.load(path, 1, {"generator_config": meta["generator_config"]})
    assert got["cycle"] == 3 and got["arrays"]["y_0"].tobytes() == y.tobytes()
    assert got["meta"]["x"] == 0.1 + 0.2 and got["meta"]["none"] is None
    assert np.isnan(got["meta"]["nan"]) and got["meta"]["flag"] is True
    assert checkpoint.load(path, 0) is None
    # the store still opens without warnings, with the checkpoints group beside its arrays
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(xr.open_zarr(path, consolidated=False).data_vars) == ["a"]
    with pytest.raises(checkpoint.CheckpointError, match=r"different generator_config "
                       r"\(differs in \['seed'\]\).*scenario-1.npz.*rerun scenario 1"):
        checkpoint.load(path, 1, {"generator_config": json.dumps({"seed": 1, "n_cycles": 5})})
    with pytest.raises(checkpoint.CheckpointError, match="pybamm_version.*expected '9', found None"):
        checkpoint.load(path, 1, {"pybamm_version": "9"})
    f.write_bytes(f.read_bytes()[:50])  # damaged (never by a kill: the file is renamed in place)
    with pytest.raises(checkpoint.CheckpointError, match="scenario-1.npz.*cannot be read"):
        checkpoint.load(path, 1)
    checkpoint.remove(path, 1)
    assert checkpoint.load(path, 1) is None


def _template_store(path, n_cycles=4):
    grid = schema.Grid(
        scenarios=[{"ambient_temperature": 25.0, "charge_c_rate": 1.0, "discharge_c_rate": 1.0,
                    "protocol": "cccv"}] * 2,
        n_series=1, n_parallel=2, snapshot_cycles=[1, 3], n_cycles=n_cycles, n_time=5,
        period_s=60.0, x_n=np.linspace(0, 1, 3), x_p=np.linspace(2, 3, 3),
        x=np.linspace(0, 3, 8), r_n=np.linspace(0, 1, 4), r_p=np.linspace(0, 1, 4),
        param_keys=[], life_vars=["life_voltage", "checkup"])
    store.create_store(path, schema.template(grid))
    return xr.open_zarr(path, consolidated=False)


def _result(ds, rng) -> dict:
    n_cells, n_cycles = ds.sizes[schema.CELL], ds.sizes[schema.CYCLE]
    res = {"scenario": 1, "snapshots": {}, "life": {},
           "summary": {n: rng.random((n_cells, n_cycles)) for n, v in schema.VARIABLES.items()
                       if v.kind == "summary"}}
    res["life"]["life_voltage"] = rng.random((n_cells, n_cycles, ds.sizes[schema.TIME]))
    res["life"]["checkup"] = rng.random((n_cells, n_cycles))
    for si in range(2):
        snap = ds.isel({schema.SCENARIO: 0, schema.SNAPSHOT: si})
        res["snapshots"][si] = {
            "valid": np.ones(ds.sizes[schema.TIME], "uint8"),
            "pack": {n: rng.random(snap[n].shape) for n in ("pack_voltage", "pack_current")},
            "fields": {n: rng.random(snap[n].shape) for n, v in schema.VARIABLES.items()
                       if v.dims[:4] == schema.T4}}
    return res


def _empty(res) -> dict:
    return {"scenario": res["scenario"], "snapshots": {},
            "summary": {n: np.full_like(a, np.nan) for n, a in res["summary"].items()},
            "life": {n: np.full_like(a, np.nan) for n, a in res["life"].items()}}


def test_checkpoint_rows_go_into_the_store_and_come_back(tmp_path):
    path = tmp_path / "s.zarr"
    ds = _template_store(path)
    res = _result(ds, np.random.default_rng(0))
    arrays = checkpoint.write_rows(path, res, 0, 2, [1, 3])  # cycles 1-2, snapshot 0 (cycle 1)
    # the next checkpoint of the same run reuses the opened arrays (scenario.py does)
    checkpoint.write_rows(path, res, 2, 3, [1, 3], arrays=arrays)  # cycle 3 and snapshot 1
    one = xr.open_zarr(path, consolidated=False).isel({schema.SCENARIO: 1}).load()
    f32 = lambda a: np.asarray(a).astype("float32")  # noqa: E731 (the store's dtype)
    np.testing.assert_array_equal(one["capacity"].values[:, :3], f32(res["summary"]["capacity"])[:, :3])
    assert np.isnan(one["capacity"].values[:, 3]).all()  # not finished: never written
    np.testing.assert_array_equal(one["life_voltage"].values[:, :3],
                                  f32(res["life"]["life_voltage"])[:, :3])
    np.testing.assert_array_equal(one["c_s_n"].values[:, 1], f32(res["snapshots"][1]["fields"]["c_s_n"]))
    assert np.isnan(one["status"].values)  # still running
    assert np.isnan(xr.open_zarr(path, consolidated=False)["capacity"].values[0]).all()

    back = _empty(res)
    checkpoint.read_rows(path, back, 3, [1, 3])
    for name, arr in res["summary"].items():
        np.testing.assert_array_equal(back["summary"][name][:, :3], f32(arr)[:, :3])
        assert np.isnan(back["summary"][name][:, 3]).all()
    np.testing.assert_array_equal(back["life"]["checkup"][:, :3], f32(res["life"]["checkup"])[:, :3])
    assert sorted(back["snapshots"]) == [0, 1]
    for si, snap in res["snapshots"].items():
        for name, val in {**snap["fields"], **snap["pack"]}.items():
            got = back["snapshots"][si]["fields" if name in snap["fields"] else "pack"][name]
            np.testing.assert_array_equal(got, f32(val), err_msg=name)
    back = _empty(res)
    checkpoint.read_rows(path, back, 2, [1, 3])  # snapshot 1 (cycle 3) is after cycle 2
    assert sorted(back["snapshots"]) == [0]


def test_a_checkpoint_rewrites_a_few_cycles_of_the_per_cycle_series_not_the_whole_life(tmp_path):
    """The store's chunks decide a checkpoint's cost (a chunk is rewritten whole): per-cycle
    series hold CYCLE_CHUNK cycles of every cell of a scenario per chunk (at 1000 cycles one chunk
    per cell over all cycles cost 384 CPU-ms a checkpoint, now 70: scripts/bench_checkpoint.py
    --rows-at-scale); snapshot fields stay one cell per chunk."""
    n = schema.CYCLE_CHUNK * 2 + 3
    ds = _template_store(tmp_path / "s.zarr", n_cycles=n)
    import zarr

    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert g["life_voltage"].chunks == (1, 2, schema.CYCLE_CHUNK, ds.sizes[schema.TIME])
    assert g["capacity"].chunks == (1, 2, n)  # per-cycle summaries: a few bytes a cycle
    assert g["checkup"].chunks == (1, 2, n)
    assert g["c_s_n"].chunks[:3] == (1, 1, 1)  # scenario, cell, snapshot
    res = _result(ds, np.random.default_rng(1))
    arrays = checkpoint.write_rows(tmp_path / "s.zarr", res, 0, schema.CYCLE_CHUNK + 1, [1, 3])
    checkpoint.write_rows(tmp_path / "s.zarr", res, schema.CYCLE_CHUNK + 1, n, [1, 3],
                          arrays=arrays)  # across a chunk boundary
    one = xr.open_zarr(tmp_path / "s.zarr", consolidated=False).isel({schema.SCENARIO: 1})
    np.testing.assert_array_equal(one["life_voltage"].values,
                                  res["life"]["life_voltage"].astype("float32"))
