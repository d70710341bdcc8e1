"""In a real Chromium, every plot's axis and colour ranges contain its data after each widget change.

HoloViews keeps a plot's ranges unless the element asks them to follow the data: a page can render
and still show nothing (a temperature curve above its old y range, a longer cycle past the old time
axis). This test reads the ranges and the data of every Bokeh figure as the browser holds them.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

N_FIGURES = 12

# For every figure: its title, x/y ranges, the extent of the data its glyphs draw, whether a
# colour-mapped glyph's values lie inside its colour mapper, and the colour bar's title.
RANGES_JS = """
() => {
  if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return null;
  const col = (src, spec) => {
    if (!spec || typeof spec !== 'object' || !('field' in spec)) return [];
    const d = src.data instanceof Map ? src.data.get(spec.field) : src.data[spec.field];
    return d ? Array.from(d).filter(Number.isFinite) : [];
  };
  const ext = (vals) => vals.length ? [Math.min(...vals), Math.max(...vals)] : null;
  const out = [];
  for (const doc of Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.type !== 'Figure') continue;
      const f = {title: m.title ? m.title.text : '', x: [], y: [], colour: [], cbar: []};
      f.xr = [Math.min(m.x_range.start, m.x_range.end), Math.max(m.x_range.start, m.x_range.end)];
      f.yr = [Math.min(m.y_range.start, m.y_range.end), Math.max(m.y_range.start, m.y_range.end)];
      for (const r of m.renderers) {
        if (!r.glyph || !r.data_source || !r.visible) continue;
        const g = r.glyph, src = r.data_source;
        for (const k of ['x', 'left', 'right']) f.x.push(...col(src, g[k]));
        for (const k of ['y', 'top', 'bottom']) f.y.push(...col(src, g[k]));
        const fc = g.fill_color;
        if (fc && typeof fc === 'object' && fc.transform && 'low' in fc.transform) {
          const v = ext(col(src, fc));
          if (v) f.colour.push({low: fc.transform.low, high: fc.transform.high, min: v[0], max: v[1]});
        }
      }
      for (const a of [...m.right, ...m.left, ...m.below, ...m.above])
        if (a.type === 'ColorBar') f.cbar.push(a.title);
      f.x = ext(f.x); f.y = ext(f.y);
      out.push(f);
    }
  }
  return out;
}
"""


def range_problems(figures: list[dict]) -> list[str]:
    """What is wrong with each figure's ranges (empty: every plot shows all of its data)."""
    bad = []
    for f in figures:
        for axis in ("x", "y"):
            data, rng = f[axis], f[axis + "r"]
            if data is None:
                continue
            tol = 1e-4 * max(abs(data[0]), abs(data[1]), rng[1] - rng[0], 1e-12)  # float32 data
            if data[0] < rng[0] - tol or data[1] > rng[1] + tol:
                bad.append(f"{f['title']!r}: {axis} data {data} outside range {rng}")
        # the time/cycle axis follows the data: a shorter cycle does not keep the old length
        if f["x"] is not None and f["x"][1] > f["x"][0]:
            if (f["x"][1] - f["x"][0]) < 0.5 * (f["xr"][1] - f["xr"][0]):
                bad.append(f"{f['title']!r}: x range {f['xr']} much wider than its data {f['x']}")
        for c in f["colour"]:
            tol = 1e-4 * max(abs(c["min"]), abs(c["max"]), 1e-12)
            if c["min"] < c["low"] - tol or c["max"] > c["high"] + tol:
                bad.append(f"{f['title']!r}: colour data {c['min']}..{c['max']} outside colour "
                           f"range {c['low']}..{c['high']}")
    return bad


# The drawn data of the figure whose title starts with ``start``: to know when an update arrived.
SIGNATURE_JS = """(start) => {
  const m = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith(start));
  if (!m) return null;
  return JSON.stringify(m.renderers.filter(r => r.data_source).map(r => {
    const d = r.data_source.data;
    return [...(d instanceof Map ? d.values() : Object.values(d))].map(a => Array.from(a));
  }));
}"""


def signature(page, title_start: str) -> str:
    return page.evaluate(SIGNATURE_JS, title_start)


def select(page, option: str) -> None:
    page.locator("select", has=page.locator("option", has_text=option)).select_option(label=option)


def settle(page, changed_title: str, before: str) -> list[dict]:
    """Wait until ``changed_title``'s figure shows new data, then until every range holds its data
    (at most 10 s: on failure, say which plots do not)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:  # a busy 2-core machine can take seconds per update
        page.wait_for_function(f"""([start, before]) => {{ const now = ({SIGNATURE_JS})(start);
          return now !== null && now !== before; }}""", arg=[changed_title, before],
                               timeout=30_000)
    except PlaywrightTimeout:
        titles = [f["title"] for f in page.evaluate(RANGES_JS)]
        raise AssertionError(f"the data of {changed_title!r} did not change; figures: {titles}")
    deadline_ms, waited = 10_000, 0
    while True:
        figures = page.evaluate(RANGES_JS)
        problems = range_problems(figures)
        if not problems or waited >= deadline_ms:
            return figures
        page.wait_for_timeout(250)
        waited += 250


def test_every_plot_range_contains_its_data_after_widget_changes(page, served_app, open_app):
    url, server_log = served_app
    errors = open_app(url, console=False)
    page.wait_for_function(f"() => {{ const f = ({RANGES_JS})(); return f && f.length >= "
                           f"{N_FIGURES}; }}", timeout=30_000)
    page.locator("canvas").nth(N_FIGURES - 1).wait_for(timeout=15_000)
    figures = settle(page, "Cell temperature", "")
    assert range_problems(figures) == []

    steps = [  # (what to select, a figure whose data must change)
        ("40 °C", "Cell temperature"),  # warmer: temperature and SEI move up
        ("pulse", "Cell current"),      # 25 °C, 2C pulses: more current, a shorter cycle
        ("10 °C", "Cell temperature"),  # back to a longer 1C cycle, colder
        ("cell 5 (S2 P2)", "Terminal voltage"),  # cells differ in voltage, not temperature
    ]
    for option, watch in steps:
        before = signature(page, watch)
        select(page, option)
        figures = settle(page, watch, before)
        assert range_problems(figures) == [], f"after selecting {option!r}"

    # colouring the pack by another quantity: the colour bar names its units
    for option, unit in (("c_s error", "% of c_max"), ("Temperature", "°C")):
        before = signature(page, "Pack ")
        select(page, option)
        figures = settle(page, "Pack ", before)
        assert range_problems(figures) == [], f"after colouring by {option!r}"
        # the colour bar's title is a separate model update: on a busy machine it can trail
        # the data, so wait for it (up to 15 s) before asserting
        for _ in range(60):
            pack = next(f for f in figures if f["title"].startswith("Pack "))
            if pack["cbar"] and all(unit in t for t in pack["cbar"]):
                break
            page.wait_for_timeout(250)
            figures = page.evaluate(RANGES_JS)
        assert pack["cbar"] and all(unit in t for t in pack["cbar"]), (option, pack["cbar"])

    assert errors == [], f"browser errors: {errors}"
    assert "Traceback" not in server_log.read_text()
