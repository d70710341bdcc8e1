"""The served explorer in a real Chromium: plots render, the cell select updates a heatmap, no errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
N_FIGURES = 12  # pack overview, SEI spread, 2 x (predicted, true, error) c_s maps, V, I, T, plating
HEATMAP_TITLE = "True · cell "

# Titles of every Bokeh figure in the page, and the sum of the true (x, r) heatmap's data.
STATE_JS = """
() => {
  if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return null;
  const out = {figures: 0, titles: [], heat_title: null, heat_sum: null};
  for (const doc of Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.type !== 'Figure' && m.type !== 'Plot') continue;
      out.figures += 1;
      const title = m.title && m.title.text ? m.title.text : '';
      out.titles.push(title);
      if (title.startsWith('%s') && title.includes(' t = ')) {
        out.heat_title = title;
        let total = 0;
        for (const r of m.renderers) {
          const ds = r.data_source;
          if (!ds || !ds.data) continue;
          const entries = ds.data instanceof Map ? [...ds.data.entries()] : Object.entries(ds.data);
          for (const [key, col] of entries) {
            if (!/c_s|image/.test(key)) continue;
            const arrs = Array.isArray(col) && col.length && col[0].length !== undefined ? col : [col];
            for (const a of arrs) for (const v of a) if (Number.isFinite(v)) total += v;
          }
        }
        out.heat_sum = total;
      }
    }
  }
  return out;
}
""" % HEATMAP_TITLE


# Page coordinates of the point (series x, parallel y) in the pack overview's canvas.
OVERVIEW_POINT_JS = """([x, y]) => {
  const fig = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Pack '));
  for (const root of Bokeh.index) {
    const view = root.owner ? root.owner.find_one(fig) : null;
    if (!view) continue;
    const rect = view.canvas_view.el.getBoundingClientRect();
    return [rect.left + view.frame.x_scale.compute(x), rect.top + view.frame.y_scale.compute(y)];
  }
  return null;
}"""


def test_app_renders_and_cell_select_updates_heatmap(page, served_app, open_app):
    url, server_log = served_app
    errors = open_app(url)

    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s && s.figures >= "
                           f"{N_FIGURES} && s.heat_sum !== null; }}", timeout=30_000)
    page.locator("canvas").nth(N_FIGURES - 1).wait_for(timeout=15_000)
    before = page.evaluate(STATE_JS)
    assert before["figures"] >= N_FIGURES, before["titles"]
    assert before["heat_title"].startswith("True · cell 0 ·"), before["heat_title"]
    assert before["heat_sum"] > 0
    assert any(t.startswith("Pack 4S4P") for t in before["titles"]), before["titles"]

    target = "cell 5 (S2 P2)"
    cell_select = page.locator("select", has=page.locator("option", has_text=target))
    cell_select.select_option(label=target)
    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s && s.heat_title && "
                           f"s.heat_title.startsWith('True · cell 5 ·'); }}", timeout=15_000)
    after = page.evaluate(STATE_JS)
    assert after["heat_sum"] != pytest.approx(before["heat_sum"], rel=1e-6), \
        "the heatmap title changed but its data did not"

    # clicking a cell in the pack overview (a Tap stream) selects it: S3 P3 is cell 10
    xy = page.evaluate(OVERVIEW_POINT_JS, [2, 2])
    assert xy is not None, "pack overview view not found"
    page.mouse.click(*xy)
    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s && s.heat_title && "
                           f"s.heat_title.startsWith('True · cell 10 ·'); }}", timeout=15_000)
    # the cell select follows the click
    expect(page.locator("select", has=page.locator("option", has_text="cell 10 (S3 P3)"))
           ).to_have_value("cell 10 (S3 P3)", timeout=15_000)

    page.wait_for_timeout(500)  # let the last patches draw before the picture
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app_e2e.png"), full_page=True)
    assert errors == [], f"browser console errors: {errors}"
    log = server_log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, f"server log:\n{log}"


def test_missing_store_shows_message_in_page(page, served_missing_store, open_app):
    url, server_log = served_missing_store
    errors = open_app(url, console=False)
    alert = page.get_by_text("does not exist")
    alert.first.wait_for(timeout=20_000)
    assert "missing.zarr" in alert.first.inner_text()
    assert errors == []
    assert "Traceback" not in server_log.read_text()
