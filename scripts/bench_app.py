"""Benchmark the pack explorer: store open time and widget update latency, as JSON.

    .venv/bin/python scripts/bench_app.py [--store PATH --predictions PATH ...] [--out FILE]

Without --store it builds a 16-cell synthetic pack (4S4P, ``synthetic.make_store``) and, for the
comparison views, a prediction store made by perturbing its hidden variables (only the speed of
the app is measured here, never the twin). Latency = setting a widget value until every affected
plot's Bokeh models are updated server-side (HoloViews callbacks + Bokeh patches); the browser's
own drawing is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def perturbed_predictions(truth_path: Path, out: Path, variant: str, rel: float, seed: int) -> Path:
    import xarray as xr

    from packtwin import schema
    from packtwin.data import store

    truth = store.open_store(truth_path)
    names = ["c_s_n", "c_s_p", "sei_thickness_avg", "plating_margin", "soc", "voltage"]
    names += [schema.param_var(k) for k in schema.param_keys_in(truth)]
    ds = truth[names].load()
    rng = np.random.default_rng(seed)
    for n in names:
        ds[n] = ds[n] * xr.DataArray(1 + rel * rng.standard_normal(ds.sizes["cell"]), dims="cell")
    ds = schema.apply_attrs(ds)
    ds.attrs = {"schema_version": schema.SCHEMA_VERSION, "variant": variant}
    ds.to_zarr(out, mode="w", **store.ZARR_KW)
    return out


def options(widget) -> list:
    o = widget.options
    return list(o.values()) if isinstance(o, dict) else list(o)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_both(fn) -> tuple[float, float]:
    """(wall, CPU) seconds: CPU time of this process is the figure that survives a busy machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def summary(samples: list[tuple[float, float]]) -> dict:
    wall, cpu = [s[0] for s in samples], [s[1] for s in samples]
    return {"first_s": round(wall[0], 4), "median_s": round(statistics.median(wall), 4),
            "max_s": round(max(wall), 4), "median_cpu_s": round(statistics.median(cpu), 4),
            "n": len(samples)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=None)
    p.add_argument("--predictions", nargs="*", default=None)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    if args.store is None:
        from packtwin.data import synthetic

        store_path = Path(tmp.name) / "pack16.zarr"
        synthetic.make_store(store_path, n_series=4, n_parallel=4)
        preds = [perturbed_predictions(store_path, Path(tmp.name) / "physics.zarr", "physics", 0.01, 1),
                 perturbed_predictions(store_path, Path(tmp.name) / "data_only.zarr", "data_only",
                                       0.03, 2)]
        source = "synthetic 4S4P (packtwin.data.synthetic.make_store), perturbed predictions"
    else:
        store_path, preds = Path(args.store), [Path(x) for x in (args.predictions or [])]
        source = str(store_path)

    t0 = time.perf_counter()
    import panel as pn  # noqa: F401  (import cost reported on its own)
    import holoviews  # noqa: F401
    t_import = time.perf_counter() - t0

    from bokeh.document import Document

    from packtwin.app.layout import build_app
    from packtwin.app.sources import open_sources

    t_open = timed(lambda: open_sources(store_path, preds))
    built = {}
    t_build = timed(lambda: built.setdefault("app", build_app(store_path, preds)))
    app = built["app"]
    if app.data is None:
        print(json.dumps({"error": app.sources.errors}), file=sys.stderr)
        return 1
    doc = Document()
    t_render = timed(lambda: app.layout.get_root(doc))

    d, w = app.data, app.widgets
    ov = app.overview
    cells = options(w["cell"])
    n_time = w["time_index"].end + 1
    choices = {
        "cell": cells[1:] + cells[:1],
        "time_index": [int(i) for i in np.linspace(0, n_time - 1, args.repeats + 1)],
        "electrode": ["positive", "negative"],
        "x_index": [0, -1],
        "snapshot": options(w["snapshot"])[::-1],
        "ambient": options(w["ambient"])[::-1],
        "c_rate": options(w["c_rate"])[::-1],
        "protocol": options(w["protocol"])[::-1],
        "quantity": options(w["quantity"])[1:] + ["SEI thickness"],
        "variant": options(w["variant"])[::-1],
    }
    latency = {}
    for name, values in choices.items():
        values = [v for v in values if v is not None]
        if len(values) < 2 and name != "cell":
            continue
        samples = []
        for i in range(args.repeats):
            v = values[i % len(values)]
            if v == w[name].value:
                v = values[(i + 1) % len(values)]
            samples.append(timed_both(lambda: setattr(w[name], "value", v)))
        latency[name] = summary(samples)
    taps = []
    for c in cells[: args.repeats]:
        s, q = int(d.truth["series_index"].values[c]), int(d.truth["parallel_index"].values[c])
        taps.append(timed_both(lambda: ov.tap.event(x=s + 0.1, y=q - 0.1)))
    latency["tap_cell"] = summary(taps)

    result = {
        "benchmark": "packtwin app (pack explorer)",
        "store": source,
        "cells": int(d.truth.sizes["cell"]),
        "scenarios": int(d.truth.sizes["scenario"]),
        "time_samples": int(d.truth.sizes["time"]),
        "twins": app.sources.variants,
        "import_panel_holoviews_s": round(t_import, 3),
        "open_stores_s": round(t_open, 4),
        "build_app_s": round(t_build, 4),
        "first_render_s": round(t_render, 4),
        "widget_latency": latency,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "load_average_1min": os.getloadavg()[0]},
        "note": "latency = widget value set -> Bokeh models updated server-side (no browser "
                "paint); wall times grow with the machine's load, CPU times much less",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
