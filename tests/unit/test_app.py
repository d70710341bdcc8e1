"""The pack explorer without a browser: each widget changes the data behind the plots it affects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

from packtwin import quantities, schema  # noqa: E402
from packtwin.app.layout import build_app  # noqa: E402
from packtwin.app.state import PRED, TRUE  # noqa: E402

HIDDEN_PREDICTED = list(quantities.ESTIMATED)


def make_prediction_store(truth_path: Path, out: Path, variant: str, rel_noise: float, seed: int,
                          isel: dict | None = None) -> Path:
    """A store shaped like ``packtwin predict``'s output: the truth's hidden variables and voltage
    scaled by a per-cell relative error, and perturbed per-cell parameters."""
    from packtwin.data import store

    truth = store.open_store(truth_path)
    rng = np.random.default_rng(seed)
    keys = schema.param_keys_in(truth)
    ds = truth[HIDDEN_PREDICTED + [schema.param_var(k) for k in keys]].load()
    for name in HIDDEN_PREDICTED + [schema.param_var(k) for k in keys]:
        bias = 1 + rel_noise * rng.standard_normal(ds.sizes[schema.CELL])
        ds[name] = ds[name] * xr.DataArray(bias, dims=schema.CELL)
    if isel:
        ds = ds.isel(isel)
    ds = schema.apply_attrs(ds)
    ds.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": variant}
    ds.to_zarr(out, mode="w", **store.ZARR_KW)
    return out


@pytest.fixture(scope="module")
def stores(synthetic_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("app_preds")
    return {
        "truth": synthetic_store,
        "physics": make_prediction_store(synthetic_store, root / "phys.zarr", "physics", 0.01, 1),
        "data_only": make_prediction_store(synthetic_store, root / "data.zarr", "data_only", 0.04, 2),
        "subset": make_prediction_store(synthetic_store, root / "sub.zarr", "physics", 0.01, 3,
                                        isel={schema.CELL: [0, 1], schema.SCENARIO: [0, 1]}),
    }


@pytest.fixture
def app(stores):
    ex = build_app(stores["truth"], [stores["physics"], stores["data_only"]])
    assert ex.data is not None, ex.sources.errors
    return ex


def frame(dmap):
    """The element a DynamicMap shows for the current selection."""
    return dmap[()]


def layer(overlay, label: str):
    hits = [el for el in overlay if el.label == label]
    assert hits, f"no layer {label!r} in {[el.label for el in overlay]}"
    return hits[0]


def z(qmesh) -> np.ndarray:
    return np.asarray(qmesh.dimension_values(2, flat=False), dtype=float)


# ------------------------------------------------------------------ bad input
def test_missing_store_shows_message_in_page(tmp_path):
    ex = build_app(tmp_path / "nope.zarr")
    assert ex.data is None
    text = " ".join(a.object for a in ex.messages)
    assert "nope.zarr" in text and "does not exist" in text
    tmpl = ex.template()  # the served page holds the message, not a traceback
    assert any("does not exist" in getattr(o, "object", "") for col in tmpl.main for o in col)


def test_invalid_store_shows_schema_problems(synthetic_store, tmp_path):
    from packtwin.data import store

    bad = store.open_store(synthetic_store).load().drop_vars("voltage")
    bad["c_s_n"].attrs["units"] = "mol/l"
    bad.to_zarr(tmp_path / "bad.zarr", **store.ZARR_KW)
    ex = build_app(tmp_path / "bad.zarr")
    text = " ".join(a.object for a in ex.messages)
    assert ex.data is None
    assert "'voltage' is missing" in text and "'c_s_n' has units 'mol/l'" in text
    not_zarr = tmp_path / "plain_dir"
    not_zarr.mkdir()
    assert "cannot be opened" in " ".join(a.object for a in build_app(not_zarr).messages)


def test_bad_prediction_store_warns_but_truth_still_shown(stores, tmp_path):
    wrong = xr.open_zarr(stores["physics"], consolidated=False).load()
    wrong = wrong.isel({schema.R_N: slice(0, 3)})  # another radial grid: not comparable
    wrong.to_zarr(tmp_path / "wrong.zarr", consolidated=False, zarr_format=3)
    ex = build_app(stores["truth"], [tmp_path / "wrong.zarr", tmp_path / "absent.zarr"])
    assert ex.data is not None and ex.data.sel.variant is None
    text = " ".join(a.object for a in ex.messages)
    assert "'r_n' differs" in text and "absent.zarr" in text
    assert list(ex.maps.sources) == [TRUE]  # no empty prediction columns without a twin


# ------------------------------------------------------------------ bounds follow the store
def test_widget_bounds_follow_the_store(app, stores):
    truth = xr.open_zarr(stores["truth"], consolidated=False)
    w = app.widgets
    assert list(w["cell"].options.values()) == truth[schema.CELL].values.tolist()
    assert list(w["snapshot"].options) == [f"cycle {c}" for c in truth["snapshot_cycle"].values]
    assert sorted(w["ambient"].options.values()) == sorted(set(truth["ambient_temperature"].values))
    n_valid = int(truth["valid"].isel(scenario=app.data.sel.scenario, snapshot=0).sum())
    assert (w["time_index"].start, w["time_index"].end) == (0, n_valid - 1)
    # a 2C scenario is shorter: the player's end follows its valid samples
    w["c_rate"].value = "2C charge / 2C discharge"
    n2 = int(truth["valid"].isel(scenario=app.data.sel.scenario, snapshot=0).sum())
    assert n2 < n_valid and w["time_index"].end == n2 - 1
    assert w["time_index"].value <= n2 - 1
    assert len(frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1)) == n2
    assert np.isfinite(frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1)).all()
    # x positions follow the electrode
    n_xn, n_xp = truth.sizes[schema.X_N], truth.sizes[schema.X_P]
    assert len(w["x_index"].options) == n_xn + 1
    w["electrode"].value = "positive"
    assert len(w["x_index"].options) == n_xp + 1
    assert w["variant"].visible and list(w["variant"].options) == ["physics", "data_only"]


# ------------------------------------------------------------------ widgets change plot data
def test_cell_widget_and_tap_change_cell_plots(app):
    maps, w = app.maps, app.widgets
    before = {
        "map": z(frame(maps.at_time[TRUE])),
        "rt": z(frame(maps.over_time[TRUE])),
        "v": frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1),
        "sei": layer(frame(app.sei.dmap), "selected cell").dimension_values(1),
        "params": app.params.table.object.copy(),
    }
    w["cell"].value = 3
    assert frame(maps.at_time[TRUE]).opts.get().kwargs["title"].startswith("True · cell 3 ·")
    assert not np.allclose(z(frame(maps.at_time[TRUE])), before["map"])
    assert not np.allclose(z(frame(maps.over_time[TRUE])), before["rt"])
    assert not np.allclose(frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1), before["v"])
    assert not np.allclose(layer(frame(app.sei.dmap), "selected cell").dimension_values(1), before["sei"])
    assert not app.params.table.object.equals(before["params"])
    chosen = frame(app.overview.dmap).get(1)  # the outlined rectangle sits on the cell's position
    s, p = (int(app.data.truth[k].values[3]) for k in ("series_index", "parallel_index"))
    assert chosen.dimension_values("x0")[0] == pytest.approx(s - 0.44)
    assert chosen.dimension_values("y0")[0] == pytest.approx(p - 0.44)
    # clicking a cell in the pack overview selects it
    s1, p1 = (int(app.data.truth[k].values[1]) for k in ("series_index", "parallel_index"))
    app.overview.tap.event(x=s1 + 0.2, y=p1 - 0.3)
    assert w["cell"].value == 1
    app.overview.tap.event(x=-3.0, y=-3.0)  # outside the pack: selection unchanged
    assert w["cell"].value == 1


def test_time_player_moves_snapshot_maps_overview_and_cursor(app):
    maps, w = app.maps, app.widgets
    app.plating.panel().get_root()  # render one time-axis plot so its Bokeh cursor span exists
    assert app.cursor.spans
    w["quantity"].value = "SOC"
    before_map, before_ov = z(frame(maps.at_time[TRUE])), frame(app.overview.dmap).get(0)
    before_rt = z(frame(maps.over_time[TRUE]))
    w["time_index"].value = 2
    after_ov = frame(app.overview.dmap).get(0)
    assert not np.allclose(z(frame(maps.at_time[TRUE])), before_map)
    assert not np.allclose(after_ov.dimension_values("value"), before_ov.dimension_values("value"))
    np.testing.assert_allclose(z(frame(maps.over_time[TRUE])), before_rt)  # not time-dependent
    t2 = float(app.data.truth[schema.TIME].values[2]) / 60
    assert all(span.location == pytest.approx(t2) for span in app.cursor.spans)


def test_electrode_x_position_and_snapshot_widgets(app):
    maps, w = app.maps, app.widgets
    neg = frame(maps.at_time[TRUE])
    w["electrode"].value = "positive"
    pos = frame(maps.at_time[TRUE])
    assert [d.name for d in pos.kdims] == [schema.X_P, schema.R_P]
    assert pos.vdims[0].name == "c_s_p" and not np.allclose(z(pos).mean(), z(neg).mean())
    assert z(pos).shape == (app.data.truth.sizes[schema.R_P], app.data.truth.sizes[schema.X_P])
    averaged = z(frame(maps.over_time[TRUE]))
    w["x_index"].value = 0
    at_x0 = z(frame(maps.over_time[TRUE]))
    truth = app.data.truth["c_s_p"].sel(scenario=app.data.sel.scenario, cell=app.data.sel.cell,
                                        snapshot=app.data.sel.snapshot).values
    valid = app.data.valid_mask()
    np.testing.assert_allclose(at_x0, truth[valid][:, 0, :].T, rtol=1e-6)
    np.testing.assert_allclose(averaged, truth[valid].mean(axis=1).T, rtol=1e-5)
    # snapshot: SEI thickness of a later cycle is thicker in every cell
    w["quantity"].value = "SEI thickness"
    first = frame(app.overview.dmap).get(0).dimension_values("value")
    w["snapshot"].value = 1
    later = frame(app.overview.dmap).get(0).dimension_values("value")
    assert (later > first).all()
    vline = [el for el in frame(app.sei.dmap) if type(el).__name__ == "VLine"][0]
    assert vline.data == int(app.data.truth["snapshot_cycle"].values[1])


def test_scenario_selectors_pick_matching_scenario(app):
    d, w = app.data, app.widgets
    sc = d.sel.scenarios
    v_before = frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1)
    w["ambient"].value = 40.0
    row = sc[sc.scenario == d.sel.scenario].iloc[0]
    assert row.ambient == 40.0
    assert not np.allclose(frame(app.signals.dmaps["voltage"]).get(0).dimension_values(1), v_before)
    w["protocol"].value = schema.PROTOCOLS.index("pulse")  # only run at 25 C / 2C: others follow
    row = sc[sc.scenario == d.sel.scenario].iloc[0]
    assert row.protocol == schema.PROTOCOLS.index("pulse")
    assert (w["ambient"].value, w["c_rate"].value) == (row.ambient, row.c_rate)
    current = frame(app.signals.dmaps["current"]).get(0).dimension_values(1)
    truth_i = d.truth["current"].sel(scenario=d.sel.scenario, cell=d.sel.cell, snapshot=d.sel.snapshot).values
    np.testing.assert_allclose(current, truth_i[d.valid_mask()])


def test_quantity_variant_and_error_maps(app):
    maps, w, d = app.maps, app.widgets, app.data
    sei = frame(app.overview.dmap).get(0).dimension_values("value")
    w["quantity"].value = "Temperature"
    assert not np.allclose(frame(app.overview.dmap).get(0).dimension_values("value"), sei)
    w["quantity"].value = "c_s error"
    err_phys = frame(app.overview.dmap).get(0).dimension_values("value")
    assert np.isfinite(err_phys).all() and (err_phys > 0).all()
    pred, true, err = (frame(maps.at_time[s]) for s in (PRED, TRUE, "error"))
    np.testing.assert_allclose(z(err), z(pred) - z(true), rtol=1e-5, atol=1e-3)
    clims = [m.opts.get().kwargs["clim"] for m in (pred, true)]
    assert clims[0] == clims[1]  # predicted and true share one colour scale
    lo, hi = clims[0]
    assert lo <= np.nanmin(z(true)) and hi >= np.nanmax(z(true))
    assert lo <= np.nanmin(z(pred)) and hi >= np.nanmax(z(pred))
    w["variant"].value = "data_only"
    assert "data_only" in frame(maps.at_time[PRED]).opts.get().kwargs["title"]
    assert not np.allclose(z(frame(maps.at_time[PRED])), z(pred))
    assert not np.allclose(frame(app.overview.dmap).get(0).dimension_values("value"), err_phys)
    voltage = frame(app.signals.dmaps["voltage"])
    assert "twin dashed" in voltage.opts.get().kwargs["title"]
    twin_v = layer(voltage, "twin").dimension_values(1)
    assert len(twin_v) == int(d.valid_mask().sum()) and np.isfinite(twin_v).all()
    table = app.params.table.object
    assert {"truth", "physics", "data_only", "physics error [%]"} <= set(table.columns)
    assert len(table) == len(schema.param_keys_in(d.truth))


def test_plating_view_has_threshold_and_every_cell(app):
    ov = frame(app.plating.dmap)
    hline = [el for el in ov if type(el).__name__ == "HLine"][0]
    assert hline.data == 0.0
    every = layer(ov, "cells").dimension_values(1)  # all cells as one line, NaN between cells
    n_cells, n_valid = app.data.truth.sizes[schema.CELL], int(app.data.valid_mask().sum())
    assert len(every) == n_cells * (n_valid + 1) and np.isnan(every[n_valid::n_valid + 1]).all()
    truth_all = app.data.truth["plating_margin"].sel(scenario=app.data.sel.scenario,
                                                     snapshot=app.data.sel.snapshot).values
    np.testing.assert_allclose(every.reshape(n_cells, n_valid + 1)[:, :-1],
                               truth_all[:, app.data.valid_mask()])
    mine = layer(ov, "selected cell").dimension_values(1)
    truth = app.data.truth["plating_margin"].sel(scenario=app.data.sel.scenario, cell=app.data.sel.cell,
                                                 snapshot=app.data.sel.snapshot).values
    np.testing.assert_allclose(mine, truth[app.data.valid_mask()])


def test_prediction_subset_says_what_is_missing(stores):
    ex = build_app(stores["truth"], [stores["subset"]])
    w = ex.widgets
    assert ex.data.notice == ""
    w["cell"].value = 2  # not in the prediction store
    assert "no prediction" in ex.data.notice
    assert "no prediction" in frame(ex.maps.at_time[PRED]).opts.get().kwargs["title"]
    assert np.isnan(z(frame(ex.maps.at_time[PRED]))).all()
    assert np.isfinite(z(frame(ex.maps.at_time[TRUE]))).all()
    w["quantity"].value = "c_s error"
    vals = frame(ex.overview.dmap).get(0).dimension_values("value")
    assert np.isfinite(vals[:2]).all() and np.isnan(vals[2:]).all()


# ------------------------------------------------------------------ live twin from a checkpoint
def test_checkpoint_without_model_code_is_a_message_not_a_crash(stores, tmp_path):
    ckpt = tmp_path / "twin.ckpt"
    ckpt.write_bytes(b"not a checkpoint")

    def broken_load(path):
        raise ImportError("No module named 'packtwin.model.module'")

    ex = build_app(stores["truth"], checkpoint=ckpt, live_load=broken_load,
                   live_predict=lambda *a, **k: None)
    assert ex.data is not None
    assert "Live twin unavailable" in " ".join(a.object for a in ex.messages)
    ex2 = build_app(stores["truth"], checkpoint=tmp_path / "missing.ckpt")
    assert "does not exist" in " ".join(a.object for a in ex2.messages)


def test_live_twin_predicts_selected_scenario_on_demand(stores, tmp_path):
    ckpt = tmp_path / "twin.ckpt"
    ckpt.write_bytes(b"weights")
    physics = xr.open_zarr(stores["physics"], consolidated=False)
    calls = []

    def predict(module, truth_ds, scenarios, cells):
        calls.append((module, list(scenarios), cells))
        return physics.sel({schema.SCENARIO: scenarios})

    ex = build_app(stores["truth"], checkpoint=ckpt, live_load=lambda p: f"model@{p}",
                   live_predict=predict)
    assert ex.data.sel.variant == "live"
    pred = z(frame(ex.maps.at_time[PRED]))
    assert np.isfinite(pred).all()
    assert calls[0][0] == f"model@{ckpt}" and calls[0][1] == [ex.data.sel.scenario]
    n = len(calls)
    ex.widgets["cell"].value = 1
    frame(ex.maps.at_time[PRED])
    assert len(calls) == n  # cached per scenario
    ex.widgets["ambient"].value = 40.0
    frame(ex.maps.at_time[PRED])
    assert calls[-1][1] == [ex.data.sel.scenario]


# ------------------------------------------------------------------ entry points
def test_served_script_reads_nothing_on_import(monkeypatch, tmp_path):
    import runpy

    import panel as pn

    assert not pn.state.served
    called = []
    monkeypatch.setattr("packtwin.app.layout.build_app", lambda *a, **k: called.append(a))
    script = Path(__file__).resolve().parents[2] / "apps" / "pack_explorer.py"
    runpy.run_path(str(script), run_name="not_served")
    assert called == []


def test_app_command_options():
    from packtwin.app.serve import ADDRESS, parse_args

    args = parse_args(["--store", "s.zarr", "--predictions", "a.zarr", "b.zarr", "--port", "0"])
    assert (args.store, args.predictions, args.port, args.show) == ("s.zarr", ["a.zarr", "b.zarr"], 0,
                                                                    False)
    assert parse_args(["--store", "s.zarr", "--show"]).show is True
    assert ADDRESS == "127.0.0.1"
    with pytest.raises(SystemExit):
        parse_args([])  # --store is required


def test_overview_labels_keep_cells_apart():
    from packtwin.app.views import spread_format

    # SEI thicknesses differing in the third decimal must not all read "5.03"
    labels = spread_format(np.array([5.031, 5.0305, 5.0251, np.nan]))
    assert len(set(labels[:3])) == 3 and labels[3] == "n/a"
    assert spread_format(np.array([2.5e-14, 3.1e-14])) == ["2.500e-14", "3.100e-14"]


def test_selectors_on_a_two_scenario_store(tmp_path):
    """Two scenarios and a (charge, discharge) pair of length two: no element-wise mix-up."""
    from packtwin.data import synthetic

    scenarios = [dict(ambient_temperature=25.0, charge_c_rate=c, discharge_c_rate=c, protocol="cccv")
                 for c in (1.0, 2.0)]
    synthetic.make_store(tmp_path / "two.zarr", n_series=1, n_parallel=2, scenarios=scenarios)
    ex = build_app(tmp_path / "two.zarr")
    assert ex.data.sel.scenario == 0
    ex.widgets["c_rate"].value = "2C charge / 2C discharge"
    assert ex.data.sel.scenario == 1
    ex.widgets["c_rate"].value = "1C charge / 1C discharge"
    assert ex.data.sel.scenario == 0


def test_app_command_binds_loopback_with_an_explicit_origin(monkeypatch, synthetic_store):
    import panel as pn

    from packtwin.app import serve

    seen = {}

    class FakeServer:
        port = 5123

        class io_loop:  # noqa: N801  (Tornado's attribute name)
            @staticmethod
            def start():
                pass

        def start(self):
            pass

        def stop(self):
            pass

    def fake_serve(panels, **kwargs):
        seen.update(kwargs)
        return FakeServer()

    monkeypatch.setattr(pn, "serve", fake_serve)
    assert serve.main(["--store", str(synthetic_store), "--port", "5123"]) == 0
    assert seen["address"] == "127.0.0.1" and seen["port"] == 5123
    assert sorted(seen["websocket_origin"]) == ["127.0.0.1:5123", "localhost:5123"]
    script = Path(__file__).resolve().parents[2] / "apps" / "pack_explorer.py"
    assert ("--address 127.0.0.1 --allow-websocket-origin 127.0.0.1:5006"
            in script.read_text())
