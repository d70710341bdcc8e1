"""The pack explorer on a measured-only store (``packtwin ingest``) with an estimate store: the
estimates and their bands take the truth's place, nothing asks for a hidden variable, and the pack
summary names the weak, alarming and outlying cells planted in the estimates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

from packtwin import quantities, schema  # noqa: E402
from packtwin.app import summary as sm  # noqa: E402
from packtwin.app.layout import build_app  # noqa: E402
from packtwin.app.state import PRED, TRUE  # noqa: E402
from packtwin.data import ingest, store, synthetic  # noqa: E402
from tests.unit.test_app import frame, layer  # noqa: E402
from tests.unit.test_ingest import long_log  # noqa: E402

K = 2.0  # band factor written into the estimate store's attrs
REL_STD = 0.01
SEI_OUTLIER, ALARM_CELL, POSSIBLE_CELL = 2, 1, 3


def make_estimate_store(sim: xr.Dataset, measured: xr.Dataset, out) -> xr.Dataset:
    """A store shaped like ``packtwin estimate``'s on ``measured``: the simulated hidden variables
    as the mean (cell 2's SEI 30 % thicker, cells 1 and 3 with a lower plating margin), a
    ``<name>_std`` of 1 % of the value (20 mV for the margin) and the band's k in attrs."""
    names = list(quantities.ESTIMATED)
    keys = schema.param_keys_in(sim)
    src = sim[names + [schema.param_var(k) for k in keys]].isel(scenario=[0], snapshot=[0])
    valid = sim["valid"].values[0, 0].astype(bool)
    src = src.isel(time=np.flatnonzero(valid))
    src = src.drop_vars([c for c in src.coords if c not in src.dims and c not in
                         (schema.X_N, schema.X_P, schema.R_N, schema.R_P)])
    src = src.assign_coords({d: measured[d].values for d in
                             (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME)})
    ds = src.load().copy(deep=True)
    ds["sei_thickness_avg"][:, SEI_OUTLIER] *= 1.3
    ds["plating_margin"][:, ALARM_CELL] -= 0.12
    ds["plating_margin"][:, POSSIBLE_CELL] -= 0.06
    for name in list(ds.data_vars):
        std = np.abs(ds[name]) * REL_STD
        if name == "plating_margin":
            std = xr.full_like(ds[name], 0.02)
        ds[schema.std_var(name)] = std.astype(ds[name].dtype)
    ds = ds.assign_coords({c: measured[c] for c in measured.coords
                           if c not in ds.coords and set(measured[c].dims) <= set(ds.dims)})
    ds = schema.apply_attrs(ds)
    for name in ds.data_vars:
        if schema.std_base(str(name)):
            ds[name].attrs = schema.var_attrs(str(name))
    for e in quantities.ELECTRODES:
        ds[e.variable].attrs["c_max"] = float(sim[e.variable].attrs["c_max"])
    ds.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": "physics",
                "checkpoints": json.dumps(["a.ckpt", "b.ckpt"]), "input_store": "measured.zarr",
                "input_kind": "measured", "ensemble_size": 2, "embedding_fit": "{}",
                "uncertainty": json.dumps({"kind": "ensemble over seeds", "k": K})}
    assert schema.validate(ds, kind="estimate") == []
    ds.to_zarr(out, mode="w", **store.ZARR_KW)
    return ds


@pytest.fixture(scope="module")
def measured_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("app_measured")
    sim = synthetic.make_store(root / "sim.zarr", n_snapshots=1, n_time=24, seed=7, scenarios=[
        dict(ambient_temperature=20.0, charge_c_rate=0.5, discharge_c_rate=0.5, protocol="cccv")])
    sim = sim.load()
    log = root / "log.csv"
    long_log(sim).to_csv(log, index=False)
    ingest.ingest([log], root / "measured.zarr", topology="2s2p",
                  period_s=float(sim.attrs["period_s"]), ambient_temperature=20.0, cycle=1,
                  units={"voltage": "V", "current": "A", "temperature": "K"})
    measured = store.open_store(root / "measured.zarr", kind="measured")
    est = make_estimate_store(sim, measured, root / "est.zarr")
    return {"measured": root / "measured.zarr", "est": root / "est.zarr", "est_ds": est}


def test_measured_store_alone_shows_signals_and_says_what_is_missing(measured_pack):
    ex = build_app(measured_pack["measured"])
    assert ex.data is not None, ex.sources.errors
    assert ex.sources.measured and ex.sei is None  # no per-cycle summaries in a log
    assert "--estimates" in ex.data.notice
    assert "c_s error" not in ex.widgets["quantity"].options
    v = frame(ex.signals.dmaps["voltage"]).get(0).dimension_values(1)
    assert v.size == ex.data.times().size and np.isfinite(v).all()
    # Every view builds; hidden quantities are simply empty (NaN), not an error.
    assert np.isnan(frame(ex.overview.dmap).get(0).dimension_values("value")).all()
    assert ex.maps.sources == ()
    assert ex.params.table.object.empty
    ex.layout  # noqa: B018 (the page object exists)
    frame(ex.plating.dmap), frame(ex.summary.soc), frame(ex.summary.sei)


def test_estimates_and_bands_take_the_truths_place(measured_pack):
    ex = build_app(measured_pack["measured"], estimates=[measured_pack["est"]])
    assert ex.data is not None and not ex.sources.warnings, ex.sources.warnings
    est = measured_pack["est_ds"]
    d = ex.data
    assert d.sel.variant == "estimate" and ex.sources.bands == {"estimate": K}
    assert "no truth" in d.notice and f"± {K:.3g} std" in d.notice
    # Overview: the estimated SOC of every cell at the chosen time.
    ex.widgets["quantity"].value = "SOC"
    got = frame(ex.overview.dmap).get(0).dimension_values("value")
    np.testing.assert_allclose(got, est["soc"].values[0, :, 0, d.sel.time_index], rtol=1e-6)
    # Particle maps: the estimate beside its band k * std.
    assert ex.maps.sources == (PRED, "band")
    c_est = np.asarray(frame(ex.maps.at_time[PRED]).dimension_values(2, flat=False), float)
    band = np.asarray(frame(ex.maps.at_time["band"]).dimension_values(2, flat=False), float)
    np.testing.assert_allclose(band, K * REL_STD * np.abs(c_est), rtol=1e-4)
    # Plating: the selected cell's band around its estimate, every cell's estimate drawn.
    ex.widgets["cell"].value = ALARM_CELL
    pl = frame(ex.plating.dmap)
    m = est["plating_margin"].values[0, ALARM_CELL, 0]
    area = layer(pl, "twin band")
    np.testing.assert_allclose(area.dimension_values(1), m - K * 0.02, rtol=1e-5)
    np.testing.assert_allclose(area.dimension_values(2), m + K * 0.02, rtol=1e-5)
    np.testing.assert_allclose(layer(pl, "selected cell").dimension_values(1), m, rtol=1e-6)
    # Twin voltage with its band beside the measured voltage.
    vb = layer(frame(ex.signals.dmaps["voltage"]), "twin band")
    assert vb.dimension_values(1).size == d.times().size
    # Identified parameters: estimate and band, no truth column.
    table = ex.params.table.object
    assert "truth" not in table.columns and "estimate ±" in table.columns
    assert len(table) == len(schema.param_keys_in(est))


def test_pack_summary_names_the_planted_cells(measured_pack):
    ex = build_app(measured_pack["measured"], estimates=[measured_pack["est"]])
    d = ex.data
    alarms = d.plating_alarms().set_index("cell")
    assert alarms.status[ALARM_CELL] == sm.ALARM
    assert alarms.status[POSSIBLE_CELL] == sm.POSSIBLE  # only its band goes below 0 V
    assert (alarms.status.drop([ALARM_CELL, POSSIBLE_CELL]) == sm.OK).all()
    assert f"[{ALARM_CELL}]" in ex.summary.headline.object
    out = d.outliers()
    assert out.cell.tolist() == [SEI_OUTLIER] and out.quantity[0].startswith("SEI")
    weak = d.weakest_cells()
    sei_rank = weak[weak.criterion.str.startswith("SEI")]
    assert sei_rank.cell.iloc[0] == SEI_OUTLIER and np.isfinite(sei_rank.band.iloc[0])
    plating = weak[weak.criterion.str.startswith("Lowest plating")]
    assert plating.cell.tolist()[:2] == [ALARM_CELL, POSSIBLE_CELL]
    # SOC spread: the band over the cells and the selected cell's estimate band.
    ov = frame(ex.summary.soc)
    est = measured_pack["est_ds"]["soc"].values[0, :, 0]
    np.testing.assert_allclose(layer(ov, "pack min–max").dimension_values(1), est.min(0),
                               rtol=1e-6)
    sb = layer(ov, "selected cell band")
    np.testing.assert_allclose(sb.dimension_values(2) - sb.dimension_values(1),
                               2 * K * REL_STD * np.abs(est[d.sel.cell]), rtol=1e-4)
    sei = frame(ex.summary.sei)
    assert layer(sei, "outlier (|robust z| > 3.5)").dimension_values(0).tolist() == [SEI_OUTLIER]
    # Tables follow the selection (a time change re-ranks SOC).
    assert "rank" in ex.summary.weakest.object.columns
    assert ex.summary.alarms.object.cell.tolist()[:2] == [ALARM_CELL, POSSIBLE_CELL]


def test_estimate_store_given_as_predictions_keeps_its_band(measured_pack):
    ex = build_app(measured_pack["measured"], [measured_pack["est"]])
    assert not ex.sources.warnings, ex.sources.warnings
    assert ex.data.sel.variant == "estimate" and ex.sources.bands == {"estimate": K}


def test_estimate_store_on_another_pack_is_a_warning_not_a_crash(measured_pack, tmp_path):
    other = measured_pack["est_ds"].isel(time=slice(0, 5))
    other.to_zarr(tmp_path / "short.zarr", mode="w", **store.ZARR_KW)
    ex = build_app(measured_pack["measured"], estimates=[tmp_path / "short.zarr"])
    assert ex.data is not None and ex.data.sel.variant is None
    assert any("Estimates not shown" in w and "'time'" in w for w in ex.sources.warnings)


def test_summary_reads_the_truth_where_the_store_has_it(synthetic_store):
    ex = build_app(synthetic_store)
    d = ex.data
    truth = store.open_store(synthetic_store)
    cap = truth["capacity"].sel(scenario=d.sel.scenario, cycle=d.snapshot_cycle()).values
    weak = d.weakest_cells(n=4)
    by_cap = weak[weak.criterion == "Discharge capacity of the cycle"]
    assert by_cap.cell.tolist() == np.argsort(cap).tolist() and by_cap.band.isna().all()
    assert (d.plating_alarms().status == sm.OK).all()  # 1C: margin stays at +50 mV
    ex.widgets["c_rate"].value = "2C charge / 2C discharge"  # pulses to 3C: margin -50 mV
    assert (d.plating_alarms().status == sm.ALARM).all()
    assert "4 cell(s)" in ex.summary.headline.object


# ------------------------------------------------------------------ the pack over life
FAST_SEI, FAST_FADE = 1, 3


@pytest.fixture(scope="module")
def life_pack(tmp_path_factory):
    """A 30-cycle synthetic store with 3 snapshots (cell 3's capacity fading 3x faster) and a
    per-cycle life estimate store (``sei_thickness_est``, ``capacity_est``) of its cells."""
    root = tmp_path_factory.mktemp("app_life")
    ds = synthetic.make_store(root / "life.zarr", n_cycles=30, n_snapshots=3, n_time=16, seed=3,
                              scenarios=[dict(ambient_temperature=25.0, charge_c_rate=1.0,
                                              discharge_c_rate=1.0, protocol="cccv")]).load()
    cyc = ds["cycle"].values
    cap = ds["capacity"].values.copy()
    cap[0, FAST_FADE] = cap[0, FAST_FADE, 0] * (1 - 0.003 * (cyc - cyc[0]))
    sei = ds["sei_thickness_end"].values.copy()
    sei[0, FAST_SEI] = 5.0 + 4.0 * np.sqrt(cyc)  # twice the others' growth
    ds["capacity"].values[:], ds["sei_thickness_end"].values[:] = cap, sei
    ds[["capacity", "sei_thickness_end"]].chunk({"scenario": 1, "cell": 1}).to_zarr(
        root / "life.zarr", mode="r+", **store.ZARR_KW)
    est = xr.Dataset({"sei_thickness_est": (schema.SUMMARY_DIMS, sei * 1.02),
                      "capacity_est": (schema.SUMMARY_DIMS, cap * 0.99)},
                     coords={d: ds[d] for d in schema.SUMMARY_DIMS})
    est = schema.apply_attrs(est)
    est.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": "life"}
    est.to_zarr(root / "life_est.zarr", mode="w", **store.ZARR_KW)
    return {"truth": root / "life.zarr", "est": root / "life_est.zarr", "sei": sei, "cap": cap,
            "cycles": cyc}


def test_life_views_mark_the_fastest_cells_and_follow_the_snapshot(life_pack):
    ex = build_app(life_pack["truth"], [life_pack["est"]])
    assert ex.data is not None and not ex.sources.warnings, ex.sources.warnings
    d = ex.data
    assert d.sel.variant == "life" and ex.sei is not None and ex.fade is not None
    sei = frame(ex.sei.dmap)
    np.testing.assert_allclose(layer(sei, "fastest cell").dimension_values(1),
                               life_pack["sei"][0, FAST_SEI])
    assert f"fastest: cell {FAST_SEI}" in sei.opts.get().kwargs["title"]
    # The twin's per-cycle estimate of the selected cell beside the truth.
    ex.widgets["cell"].value = 2
    np.testing.assert_allclose(layer(frame(ex.sei.dmap), "twin over life").dimension_values(1),
                               1.02 * life_pack["sei"][0, 2], rtol=1e-6)
    fade = frame(ex.fade.dmap)
    cap = life_pack["cap"][0]
    np.testing.assert_allclose(layer(fade, "fastest cell").dimension_values(1),
                               100 * cap[FAST_FADE] / cap[FAST_FADE, 0], rtol=1e-6)
    np.testing.assert_allclose(layer(fade, "selected cell").dimension_values(1),
                               100 * cap[2] / cap[2, 0], rtol=1e-6)
    assert f"fastest: cell {FAST_FADE}" in fade.opts.get().kwargs["title"]
    # The player steps the snapshot: the cycle marker and the fields follow it.
    player = ex.widgets["snapshot_player"]
    assert len(player.options) == 3
    before = frame(ex.overview.dmap).get(0).dimension_values("value")
    player.value = list(player.options.values())[-1]
    last = int(d.truth["snapshot_cycle"].values[-1])
    assert d.snapshot_cycle() == last
    vline = [el for el in frame(ex.fade.dmap) if type(el).__name__ == "VLine"][0]
    assert vline.data == last
    assert not np.allclose(frame(ex.overview.dmap).get(0).dimension_values("value"), before)


def test_life_estimates_alone_draw_the_pack_over_life(life_pack, measured_pack):
    """A measured log has no per-cycle truth: with a twin's per-cycle estimates of its cells
    the pack over life is the estimate's; without them there is no life view."""
    alone = build_app(measured_pack["measured"], estimates=[measured_pack["est"]])
    assert alone.sei is None and alone.fade is None
    ex = build_app(measured_pack["measured"], [life_pack["est"]])
    assert ex.data is not None and not ex.sources.warnings, ex.sources.warnings
    sei = frame(ex.sei.dmap)
    assert "(estimated)" in sei.opts.get().kwargs["title"]
    np.testing.assert_allclose(layer(sei, "fastest cell").dimension_values(1),
                               1.02 * life_pack["sei"][0, FAST_SEI], rtol=1e-6)
    assert layer(sei, "cells").dimension_values(1).size == 4 * (life_pack["cycles"].size + 1)
    fade = frame(ex.fade.dmap)
    assert f"fastest: cell {FAST_FADE}" in fade.opts.get().kwargs["title"]


def test_estimates_on_a_simulated_store_sit_beside_the_truth(synthetic_store, tmp_path):
    """On a simulated store the truth stays (c_s true/error maps, truth in the parameter table)
    and the estimate brings its band; an estimate of one checkpoint (no spread) has none."""
    truth = store.open_store(synthetic_store).load()
    names = list(quantities.ESTIMATED) + [schema.param_var(k) for k in schema.param_keys_in(truth)]
    ds = truth[names]
    for name in names:
        ds[schema.std_var(name)] = (0.01 * np.abs(ds[name])).astype(ds[name].dtype)
    ds = schema.apply_attrs(ds)
    for name in ds.data_vars:
        if schema.std_base(str(name)):
            ds[name].attrs = schema.var_attrs(str(name))
    ds.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": "physics", "checkpoints": "[]",
                "input_store": str(synthetic_store), "input_kind": "simulated",
                "ensemble_size": 2, "embedding_fit": "{}",
                "uncertainty": json.dumps({"kind": "ensemble over seeds", "k": K})}
    ds.to_zarr(tmp_path / "est.zarr", mode="w", **store.ZARR_KW)
    ex = build_app(synthetic_store, estimates=[tmp_path / "est.zarr"])
    assert ex.data is not None and not ex.sources.warnings, ex.sources.warnings
    assert ex.maps.sources == (PRED, TRUE, "error")
    table = ex.params.table.object
    assert {"truth", "estimate", "estimate ±", "estimate error [%]"} <= set(table.columns)
    d = ex.data
    m = truth["plating_margin"].isel(scenario=0, snapshot=0, cell=0).values
    m = m[truth["valid"].isel(scenario=0, snapshot=0).values.astype(bool)]
    area = layer(frame(ex.plating.dmap), "twin band")
    np.testing.assert_allclose(area.dimension_values(2) - area.dimension_values(1),
                               2 * K * 0.01 * np.abs(m), rtol=1e-4)
    assert "Lowest plating margin in the cycle" in set(d.weakest_cells().criterion)

    one = ds.drop_vars([n for n in ds.data_vars if schema.std_base(str(n))])
    one.attrs["uncertainty"] = json.dumps({"kind": "none"})
    one.to_zarr(tmp_path / "one.zarr", mode="w", **store.ZARR_KW)
    ex1 = build_app(synthetic_store, estimates=[tmp_path / "one.zarr"])
    assert any("no band" in w for w in ex1.sources.warnings)
    assert ex1.data.sel.variant == "estimate" and not ex1.sources.bands
    assert layer(frame(ex1.plating.dmap), "twin band").dimension_values(1).size == 0
