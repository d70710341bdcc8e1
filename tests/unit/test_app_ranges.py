"""The explorer's plots as Bokeh models (no browser): ranges hold the data after every widget change,
units per quantity, temperatures in degC, integer cycle ticks, colour floors, no model import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

import holoviews as hv  # noqa: E402

from packtwin import schema  # noqa: E402
from packtwin.app import reductions as red  # noqa: E402
from packtwin.app.layout import build_app  # noqa: E402

GLYPH_X, GLYPH_Y = ("x", "left", "right"), ("y", "top", "bottom")


def e2e_helpers():
    """The browser tests' store helpers (tests/e2e/conftest.py), loaded by path: one copy."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location("packtwin_e2e_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def warm_sei_store(tmp_path_factory):
    """A synthetic 3S2P store whose SEI grows faster when warmer, and a twin's predictions."""
    from packtwin.data import synthetic

    helpers = e2e_helpers()
    root = tmp_path_factory.mktemp("app_ranges")
    synthetic.make_store(root / "flat.zarr", n_series=3, n_parallel=2)
    truth = helpers.sei_follows_ambient(root / "flat.zarr", root / "pack.zarr")
    return truth, helpers.make_prediction_store(truth, root / "pred.zarr", "physics", 0.02, seed=1)


@pytest.fixture
def app(warm_sei_store):
    truth, pred = warm_sei_store
    ex = build_app(truth, [pred])
    assert ex.data is not None, ex.sources.errors
    return ex


def figures(ex) -> dict:
    """Every plot of the page as a Bokeh figure kept up to date by its DynamicMap's streams."""
    r = hv.renderer("bokeh")
    dmaps = {"pack": ex.overview.dmap, "sei": ex.sei.dmap, "plating": ex.plating.dmap,
             "SOC spread": ex.summary.soc, "SEI per cell": ex.summary.sei,
             "capacity fade": ex.fade.dmap,
             **{f"signal {k}": m for k, m in ex.signals.dmaps.items()},
             **{f"c_s(x, r) {k}": m for k, m in ex.maps.at_time.items()},
             **{f"c_s(t, r) {k}": m for k, m in ex.maps.over_time.items()}}
    return {name: r.get_plot(m).state for name, m in dmaps.items()}


def _column(src, spec) -> np.ndarray:
    # a column name, or a field spec (a dict, or an object with .field) when a transform is set
    field = spec if isinstance(spec, str) else (
        spec.get("field") if isinstance(spec, dict) else getattr(spec, "field", None))
    if field is None or field not in src.data:
        return np.array([])
    vals = np.asarray(src.data[field], dtype=float).ravel()
    return vals[np.isfinite(vals)]


def data_extent(fig) -> dict[str, tuple[float, float] | None]:
    """(min, max) of what the figure's glyphs draw along x, y and through a colour mapper."""
    out: dict[str, list] = {"x": [], "y": [], "colour": []}
    for r in fig.renderers:
        if not hasattr(r, "glyph") or not r.visible:
            continue
        g, src = r.glyph, r.data_source
        for axis, keys in (("x", GLYPH_X), ("y", GLYPH_Y)):
            for k in keys:
                if hasattr(g, k):
                    out[axis].append(_column(src, getattr(g, k)))
        fc = getattr(g, "fill_color", None)
        if getattr(fc, "transform", None) is not None and hasattr(fc.transform, "low"):
            out["colour"].append(_column(src, fc))
            out["mapper"] = fc.transform
    ext = {}
    for k in ("x", "y", "colour"):
        vals = np.concatenate(out[k]) if out[k] else np.array([])
        ext[k] = (float(vals.min()), float(vals.max())) if vals.size else None
    ext["mapper"] = out.get("mapper")
    return ext


def range_problems(figs: dict) -> list[str]:
    bad = []
    for name, fig in figs.items():
        ext = data_extent(fig)
        for axis, rng in (("x", fig.x_range), ("y", fig.y_range)):
            lo, hi = sorted((float(rng.start), float(rng.end)))
            data = ext[axis]
            if data is None:
                continue
            tol = 1e-4 * max(abs(data[0]), abs(data[1]), hi - lo, 1e-12)  # float32 data
            if data[0] < lo - tol or data[1] > hi + tol:
                bad.append(f"{name}: {axis} data {data} outside range {(lo, hi)}")
            if axis == "x" and data[1] > data[0] and data[1] - data[0] < 0.5 * (hi - lo):
                bad.append(f"{name}: x range {(lo, hi)} much wider than its data {data}")
        if ext["colour"] is not None:
            m, (lo, hi) = ext["mapper"], ext["colour"]
            tol = 1e-4 * max(abs(lo), abs(hi), 1e-12)
            if lo < m.low - tol or hi > m.high + tol:
                bad.append(f"{name}: colour data {(lo, hi)} outside {(m.low, m.high)}")
    return bad


def colorbar_titles(fig) -> list[str]:
    return [a.title for a in fig.right if type(a).__name__ == "ColorBar"]


# ------------------------------------------------------------------ ranges follow the data
def test_every_plot_range_contains_its_data_after_widget_changes(app):
    w, figs = app.widgets, figures(app)
    assert range_problems(figs) == []
    t_before = figs["signal temperature"].y_range.end
    steps = [("ambient", 40.0), ("protocol", schema.PROTOCOLS.index("pulse")), ("ambient", 10.0),
             ("cell", 3), ("snapshot", 1), ("electrode", "positive"), ("x_index", 0),
             ("time_index", 1), ("quantity", "c_s error"), ("quantity", "Temperature"),
             ("quantity", "Max plating risk"), ("quantity", "SOC")]
    for key, value in steps:
        w[key].value = value
        assert range_problems(figs) == [], f"after {key} = {value!r}"
        if (key, value) == ("ambient", 40.0):  # the temperature axis moved up with the data
            assert figs["signal temperature"].y_range.start > t_before
    # 10 degC, 1C: a longer cycle than the 2C pulses before it; the time axis spans it exactly
    times = app.data.times() / 60
    x = figs["signal current"].x_range
    assert (x.start, x.end) == pytest.approx((times.min(), times.max()), rel=1e-6)


def test_units_on_every_axis_and_colour_bar(app):
    w, figs, d = app.widgets, figures(app), app.data
    assert figs["signal temperature"].yaxis[0].axis_label == "Cell temperature (°C)"
    t_line = data_extent(figs["signal temperature"])["y"]
    truth_k = d.truth["temperature"].sel(scenario=d.sel.scenario, cell=d.sel.cell,
                                         snapshot=d.sel.snapshot).values[d.valid_mask()]
    assert t_line == pytest.approx((truth_k.min() - 273.15, truth_k.max() - 273.15), rel=1e-5)
    assert figs["signal current"].yaxis[0].axis_label == "Cell current (discharge > 0) (A)"
    assert figs["signal voltage"].xaxis[0].axis_label.endswith("(min)")
    assert figs["sei"].yaxis[0].axis_label.endswith("(nm)")
    assert figs["c_s(x, r) true"].xaxis[0].axis_label.endswith("(µm)")
    assert colorbar_titles(figs["c_s(x, r) true"]) == ["mol/m3"]
    assert colorbar_titles(figs["pack"]) == ["X-averaged SEI thickness [nm]"]
    expected = {"c_s error": "% of c_max", "Temperature": "°C", "SOC": "State of charge",
                "Max plating risk": "[V]"}
    for quantity, unit in expected.items():
        w["quantity"].value = quantity
        (title,) = colorbar_titles(figs["pack"])
        assert unit in title and "nm" not in title, (quantity, title)
    w["quantity"].value = "Temperature"
    values = app.overview.cells[()].dimension_values("value")
    np.testing.assert_allclose(values, d.pack("temperature")[:, d.sel.time_index])
    assert 0 < np.nanmin(values) < 100  # degC, not K
    assert set(w["ambient"].options) == {"10 °C", "25 °C", "40 °C"}


def test_cycle_axis_has_integer_ticks(app):
    ticker = figures(app)["sei"].xaxis[0].ticker
    assert type(ticker).__name__ == "BasicTicker" and ticker.min_interval == 1
    assert ticker.num_minor_ticks == 0


def test_colour_scale_has_a_floor(app):
    # a 0.2 % spread of SEI thickness fills a tenth of the colour scale, not all of it
    sei = np.array([20.0, 20.02, 20.04])
    lo, hi = red.colour_range(sei, floor=red.COLOUR_FLOORS["SEI thickness"])
    assert lo <= sei.min() and hi >= sei.max()
    assert hi - lo == pytest.approx(0.02 * 20.02)  # 2 % of the mean: the data fill ~10 %
    # a spread wider than the floor keeps the data's own range
    assert red.colour_range(np.array([10.0, 30.0]), floor=red.COLOUR_FLOORS["SEI thickness"]) \
        == (10.0, 30.0)
    assert red.colour_range(np.array([np.nan])) == (0.0, 1.0)
    assert red.symmetric_range(np.array([0.01, -0.02]), red.Floor(abs=1.0)) == (-0.5, 0.5)
    # in the page: the pack overview's colour mapper spans at least the floor
    app.widgets["quantity"].value = "SEI thickness"
    mapper = data_extent(figures(app)["pack"])["mapper"]
    values = app.overview.cells[()].dimension_values("value")
    floor = red.COLOUR_FLOORS["SEI thickness"].span(0.5 * (values.min() + values.max()))
    assert mapper.high - mapper.low >= floor * (1 - 1e-9)


# ------------------------------------------------------------------ per-view reductions
def test_reductions_are_pure_functions_of_arrays():
    block = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # (time, x, r)
    np.testing.assert_array_equal(red.cs_at_time(block, 1), block[1].T)
    assert red.cs_at_time(block[:0], 0) is None and red.cs_at_time(None, 0) is None
    np.testing.assert_array_equal(red.cs_over_time(block, red.X_AVG), block.mean(axis=1).T)
    np.testing.assert_array_equal(red.cs_over_time(block, 2), block[:, 2, :].T)
    sig = np.array([[1.0, 0.5, 2.0], [3.0, np.nan, 1.0]])
    np.testing.assert_array_equal(red.overview_values(sig, "at time", 2), [2.0, 1.0])
    np.testing.assert_array_equal(red.overview_values(sig, "cycle min", 0), [0.5, 1.0])
    true = np.zeros((2, 3, 2))
    pred = np.stack([np.full((3, 2), 10.0), np.full((3, 2), np.nan)])
    np.testing.assert_allclose(red.cs_rmse_per_cell(true, pred, 1000.0), [1.0, np.nan])
    band = red.sei_band(np.array([[1.0, 2.0], [3.0, 6.0], [2.0, 4.0]]))
    np.testing.assert_array_equal(band["median"], [2.0, 4.0])
    np.testing.assert_array_equal((band["min"], band["max"]), ([1.0, 2.0], [3.0, 6.0]))
    masks = [np.array([1, 1, 0], bool), np.array([0, 0, 0], bool), np.array([1, 1, 1], bool)]
    values = np.array([[1.0, 2.0, 9.0], [5.0, 5.0, 5.0], [3.0, 4.0, np.nan]])
    cyc, val = red.last_valid(values, masks, np.array([1, 5, 9]))
    assert cyc.tolist() == [1] and val.tolist() == [2.0]  # no valid sample / NaN: left out
    table = red.params_table([("D", "m2/s", 2.0)], {"physics": [2.2]})
    assert table.loc[0, "physics error [%]"] == pytest.approx(10.0)


# ------------------------------------------------------------------ the app does not import the model
def test_app_views_do_not_import_the_model():
    code = ("import sys, packtwin.app.state, packtwin.app.views, packtwin.app.layout, "
            "packtwin.app.serve\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('packtwin.model', 'torch', "
            "'lightning', 'packtwin.eval')))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported by the app: {out.stdout}"
