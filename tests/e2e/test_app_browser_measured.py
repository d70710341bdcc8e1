"""A measured-only store with its estimate store in a real Chromium: the estimate and band plots
and the pack summary render, a cell change reaches them, and nothing errs."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import serve_app

pytestmark = pytest.mark.e2e

# Pack overview, SOC spread, SEI per cell, 2 x (estimate, band) c_s maps, V, I, T, plating.
N_FIGURES = 11
TITLES_JS = """() => (window.Bokeh && Bokeh.documents.length) ? [...Bokeh.documents[0].all_models]
  .filter(m => m.type === 'Figure' && m.title).map(m => m.title.text) : []"""


@pytest.fixture
def served_measured(tmp_path):
    from packtwin.data import ingest, store, synthetic
    from tests.unit.test_app_measured import make_estimate_store
    from tests.unit.test_ingest import long_log

    sim = synthetic.make_store(tmp_path / "sim.zarr", n_snapshots=1, n_time=24, seed=7,
                               scenarios=[dict(ambient_temperature=20.0, charge_c_rate=0.5,
                                               discharge_c_rate=0.5, protocol="cccv")]).load()
    long_log(sim).to_csv(tmp_path / "log.csv", index=False)
    ingest.ingest([tmp_path / "log.csv"], tmp_path / "measured.zarr", topology="2s2p",
                  units={"voltage": "V", "current": "A", "temperature": "K"})
    make_estimate_store(sim, store.open_store(tmp_path / "measured.zarr", kind="measured"),
                        tmp_path / "est.zarr")
    with serve_app(["--store", str(tmp_path / "measured.zarr"), "--estimates",
                    str(tmp_path / "est.zarr")], tmp_path / "server.log") as served:
        yield served


def test_measured_page_shows_estimates_bands_and_summary(page, served_measured, open_app):
    url, server_log = served_measured
    errors = open_app(url)
    page.wait_for_function(f"() => ({TITLES_JS})().length >= {N_FIGURES}", timeout=30_000)
    titles = page.evaluate(TITLES_JS)
    assert any(t.startswith("Band ±2 std (estimate) · cell 0") for t in titles), titles
    assert any(t.startswith("SOC spread across the pack") for t in titles), titles
    assert not any(t.startswith("True ·") for t in titles), titles
    page.get_by_text("Plating-risk alarms").first.wait_for(timeout=15_000)
    page.get_by_text("ALARM: margin below 0 V").first.wait_for(timeout=15_000)

    target = "cell 1 (S1 P2)"
    page.locator("select", has=page.locator("option", has_text=target)).select_option(label=target)
    page.wait_for_function(f"() => ({TITLES_JS})().some(t => t.startsWith("
                           f"'Band ±2 std (estimate) · cell 1'))", timeout=15_000)
    page.wait_for_timeout(500)
    assert errors == [], f"browser console errors: {errors}"
    log = server_log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, f"server log:\n{log}"
