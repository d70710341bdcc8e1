"""``packtwin replay --app`` in a real Chromium: the live page renders, its lines grow as the
replay streams, pause stops them, and nothing errs."""

from __future__ import annotations

import re
import time

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
    # 165 s samples at 825x: one sample every 200 ms, 48 samples (~10 s) in the cycle
    with serve_app(["--checkpoint", str(tiny_checkpoint), "--store", str(synthetic_store),
                    "--scenarios", "0", "--snapshots", "0", "--speed", "825", "--app"],
                   tmp_path / "server.log", command="replay") as served:
        yield served


def streamed(page) -> int:
    text = page.get_by_text(re.compile(r"pack samples streamed")).first.inner_text()
    return int(re.search(r"(\d+) pack samples streamed", text).group(1))


def settled(page, quiet_s: float = 1.5, timeout_s: float = 20.0) -> int:
    """The SOC point count once it has not changed for ``quiet_s`` (the pause reached the
    server and the last update reached the browser)."""
    last, since = page.evaluate(SOC_POINTS_JS), time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        now = page.evaluate(SOC_POINTS_JS)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"the lines still grew {timeout_s} s after pause")


def test_live_page_streams_pauses_and_resumes(page, served_live, open_app):
    url, server_log = served_live
    errors = open_app(url)
    page.wait_for_function(f"() => ({TITLES_JS})().length >= 4", timeout=30_000)
    titles = page.evaluate(TITLES_JS)
    assert "SOC per cell (estimated)" in titles and "Plating margin now" in titles, titles
    page.wait_for_function(f"() => ({SOC_POINTS_JS})() >= 4 * 5", timeout=20_000)
    first = streamed(page)
    page.wait_for_function(f"() => ({SOC_POINTS_JS})() >= 4 * {first + 5}", timeout=20_000)
    assert streamed(page) > first  # the status follows the lines

    toggle = page.get_by_role("button", name=re.compile("play"))
    toggle.click()  # pause
    # Updates reach the browser in order, so once the server's "paused" status is shown every
    # sample streamed before the pause is drawn (under load the click can take seconds to land).
    page.get_by_text(re.compile(r"paused")).first.wait_for(timeout=30_000)
    paused = settled(page)
    assert paused < 4 * 48  # stopped before the cycle's end
    page.wait_for_timeout(2000)
    assert page.evaluate(SOC_POINTS_JS) == paused
    toggle.click()  # play again
    page.wait_for_function(f"() => ({SOC_POINTS_JS})() > {paused}", timeout=20_000)
    assert errors == [], f"browser console errors: {errors}"
    log = server_log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, f"server log:\n{log}"
