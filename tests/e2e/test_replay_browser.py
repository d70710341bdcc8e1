"""``packtwin replay --app`` in a real Chromium: the live page renders, its lines grow as the
replay streams, pause stops them, and nothing errs."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import serve_app
from tests.unit.test_stream import tiny_checkpoint  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

TITLES_JS = """() => (window.Bokeh && Bokeh.documents.length) ? [...Bokeh.documents[0].all_models]
  .filter(m => m.type === 'Figure' && m.title).map(m => m.title.text) : []"""
# Points on the SOC lines in the browser: the Curve sources (the bars' sources also hold 'state').
SOC_POINTS_JS = """() => (window.Bokeh && Bokeh.documents.length)
  ? [...Bokeh.documents[0].all_models].filter(m => m.type === 'ColumnDataSource' && m.data.soc && !m.data.state)
  .reduce((n, m) => n + m.data.soc.length, 0) : 0"""


@pytest.fixture
def served_live(tiny_checkpoint, synthetic_store, tmp_path):  # noqa: F811
    # 165 s samples at 1650x: one sample every 100 ms, 48 samples in the cycle
    with serve_app(["--checkpoint", str(tiny_checkpoint), "--store", str(synthetic_store),
                    "--scenarios", "0", "--snapshots", "0", "--speed", "1650", "--app"],
                   tmp_path / "server.log", command="replay") as served:
        yield served


def streamed(page) -> int:
    text = page.get_by_text(re.compile(r"pack samples streamed")).first.inner_text()
    return int(re.search(r"(\d+) pack samples streamed", text).group(1))


def test_live_page_streams_and_pauses(page, served_live, open_app):
    url, server_log = served_live
    errors = open_app(url)
    page.wait_for_function(f"() => ({TITLES_JS})().length >= 4", timeout=30_000)
    titles = page.evaluate(TITLES_JS)
    assert "SOC per cell (estimated)" in titles and "Plating margin now" in titles, titles
    page.wait_for_function(f"() => ({SOC_POINTS_JS})() >= 4 * 5", timeout=20_000)
    first = streamed(page)
    page.wait_for_function(f"() => ({SOC_POINTS_JS})() >= 4 * {first + 5}", timeout=20_000)
    assert streamed(page) > first  # the status follows the lines

    page.get_by_role("button", name=re.compile("play")).click()  # pause
    page.wait_for_timeout(500)
    paused = page.evaluate(SOC_POINTS_JS)
    page.wait_for_timeout(1000)
    assert page.evaluate(SOC_POINTS_JS) == paused < 4 * 48
    assert errors == [], f"browser console errors: {errors}"
    log = server_log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, f"server log:\n{log}"
