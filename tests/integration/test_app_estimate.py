"""The explorer on what the commands write: a CSV log through ``packtwin ingest``, two tiny twins
through ``packtwin estimate``, and the page built on the measured store with its estimate store."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("panel", reason="the app extra (panel, holoviews) is not installed")

from packtwin import cli, schema  # noqa: E402
from packtwin.app.layout import build_app  # noqa: E402
from packtwin.app.state import PRED  # noqa: E402
from packtwin.data import store, synthetic  # noqa: E402
from tests.unit.test_app import frame, layer  # noqa: E402
from tests.unit.test_estimate import ckpts  # noqa: E402, F401 (fixture)
from tests.unit.test_ingest import long_log  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def test_app_on_ingested_log_and_its_ensemble_estimates(ckpts, tmp_path):  # noqa: F811
    sim = synthetic.make_store(tmp_path / "sim.zarr", n_snapshots=1, seed=5, scenarios=[dict(
        ambient_temperature=20.0, charge_c_rate=0.5, discharge_c_rate=0.5, protocol="cccv")])
    long_log(sim.load()).to_csv(tmp_path / "log.csv", index=False)
    measured, est = tmp_path / "measured.zarr", tmp_path / "est.zarr"
    assert cli.main(["ingest", str(tmp_path / "log.csv"), "--out", str(measured), "--topology",
                     "2s2p", "--units", "voltage=V,current=A,temperature=K"]) == 0
    args = sum((["--checkpoint", c] for c in ckpts), [])
    assert cli.main(["estimate", *args, "--store", str(measured), "--out", str(est),
                     "--steps", "4"]) == 0

    ex = build_app(measured, estimates=[est])
    assert ex.data is not None and not ex.sources.warnings, ex.sources.warnings
    d, e = ex.data, store.open_store(est, kind="estimate")
    k = ex.sources.bands["estimate"]
    assert k > 0 and d.sel.variant == "estimate" and ex.maps.sources == (PRED, "band")
    # The selected cell's plating band is the estimate store's mean +- k std.
    m = e["plating_margin"].isel(scenario=0, snapshot=0).sel(cell=d.sel.cell).values
    s = e["plating_margin_std"].isel(scenario=0, snapshot=0).sel(cell=d.sel.cell).values
    area = layer(frame(ex.plating.dmap), "twin band")
    np.testing.assert_allclose(area.dimension_values(1), m - k * s, rtol=1e-5, atol=1e-7)
    band = np.asarray(frame(ex.maps.at_time["band"]).dimension_values(2, flat=False), float)
    assert np.isfinite(band).all() and (band >= 0).all()
    # The summary and the parameters table are built from the estimates alone.
    assert set(d.plating_alarms().cell) == set(range(4))
    weak = d.weakest_cells()
    assert {"SOC at the chosen time", "SEI thickness at the cycle's end"} <= set(weak.criterion)
    table = ex.params.table.object
    assert len(table) == len(schema.param_keys_in(e)) and "estimate ±" in table.columns
