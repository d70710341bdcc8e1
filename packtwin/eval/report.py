"""The evaluation report: markdown tables and PNG bar charts from a metrics dataset.

Input: the dataset ``packtwin.eval.evaluate`` writes (dims split, variant, seed, cell; pooled
``pack_*`` variables). Every table cell is the mean over seeds +- the sample standard deviation
(ddof = 1) and the number of seeds; the ratio column is mean(physics) / mean(data_only) per split
(< 1: the physics twin's error is smaller). Plots are drawn with Pillow (matplotlib is not a
dependency); without Pillow the report says so and has no plots.

Regenerate the report of an existing evaluation with
``python -m packtwin.eval.report OUTPUT_FOLDER`` (reads OUTPUT_FOLDER/metrics.zarr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from packtwin.data import outputs
from packtwin.eval.metrics import METRICS, SIMULATED_VS_SIMULATED

HEADLINE = ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "c_s_n_surf_rmse_pct", "c_s_p_surf_rmse_pct",
            "c_s_n_rmse", "c_s_p_rmse", "voltage_rmse", "sei_mae", "sei_mae_pct",
            "plating_margin_mae", "plating_f1", "plating_precision", "plating_recall", "soc_mae",
            "param_mean_relerr")
PLOTTED = ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse", "sei_mae", "plating_margin_mae",
           "soc_mae")
SUMMARY = ("c_s_n_rmse_pct", "c_s_p_rmse_pct", "voltage_rmse", "sei_mae", "soc_mae")
HIGHER_IS_BETTER = {"plating_f1", "plating_precision", "plating_recall"}
MODEL_VARIANTS = ("physics", "data_only")
# The observers' start priors (evaluate's ``observer_prior``), as the report names them.
PRIOR_TEXT = {
    "loaded": ("that sample's voltage inverted through the reduced core carrying the measured "
               "current after 10 min at it (packtwin/physics/loaded_inversion.py)"),
    "loaded_window": ("that sample's voltage inverted through the reduced core carrying the "
                      "measured current after 10 min at it, except where that loaded voltage is "
                      "not monotonic in SOC (the cold under load): there the SOC whose loaded "
                      "state fits the next 300 s of samples best, a fixed-lag choice "
                      "(packtwin/physics/loaded_inversion.py, start_window.py)"),
    "ocv": "that sample's voltage read as an open-circuit voltage",
}
AUDIT = {"fick_n_rel": "Fick residual, negative (RMS / RMS of its terms)",
         "fick_p_rel": "Fick residual, positive (RMS / RMS of its terms)",
         "li_balance_n_pct": "lithium balance, negative [% of c_max]",
         "li_balance_p_pct": "lithium balance, positive [% of c_max]",
         "sei_rel": "SEI growth law (mean |residual| / mean |rate|)"}


def with_param_mean(ds: xr.Dataset) -> xr.Dataset:
    """Add ``pack_param_mean_relerr``: the mean over the decoded parameters' relative errors."""
    names = [n for n in ds.data_vars if n.startswith("pack_param_") and n.endswith("_relerr")]
    if names:
        ds = ds.assign(pack_param_mean_relerr=xr.concat([ds[n] for n in names], "p").mean(
            "p", skipna=False))
        ds["pack_param_mean_relerr"].attrs = {"units": "%", "long_name":
                                              f"mean relative error of {len(names)} parameters"}
    return ds


def seed_stats(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    """Mean, sample std (ddof=1, NaN for one seed) and count over the seed dim, NaN-aware."""
    n = da.notnull().sum("seed")
    mean = da.mean("seed", skipna=True)
    std = da.std("seed", ddof=1, skipna=True).where(n > 1)
    return mean, std, n


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.3g}"
    return f"{x:.2e}"


def _cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "–"
    s = _fmt(mean)
    if n > 1 and np.isfinite(std):
        s += f" ± {_fmt(std)}"
    return f"{s} (n={n})"


def _label(name: str, ds: xr.Dataset) -> str:
    var = ds.get(f"pack_{name}")
    units = var.attrs.get("units") if var is not None else None
    units = units or METRICS.get(name, ("1", ""))[0]
    long = (var.attrs.get("long_name") if var is not None else None) or METRICS.get(name, ("", name))[1]
    return f"{long} [{units}]"


def metric_table(ds: xr.Dataset, name: str) -> str:
    """Markdown table: splits x variants for one pooled metric, with the physics/data-only ratio."""
    da = ds[f"pack_{name}"]
    mean, std, n = seed_stats(da)
    variants = [v for v in ds["variant"].values.tolist() if v != "pybamm"]
    ratio = all(v in variants for v in MODEL_VARIANTS)
    head = ["split"] + variants + (["physics / data-only"] if ratio else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sp in ds["split"].values.tolist():
        row = [str(sp)]
        for v in variants:
            sel = {"split": sp, "variant": v}
            row.append(_cell(float(mean.sel(sel)), float(std.sel(sel)), int(n.sel(sel))))
        if ratio:
            p, d = (float(mean.sel(split=sp, variant=v)) for v in MODEL_VARIANTS)
            row.append(_fmt(p / d) if np.isfinite(p) and np.isfinite(d) and d != 0 else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def audit_table(ds: xr.Dataset) -> str:
    """Residual audit: PyBaMM's own output next to each variant (pooled over cells, mean of seeds)."""
    names = [k for k in AUDIT if f"pack_audit_{k}" in ds]
    if not names:
        return "_no residual audit in this dataset_"
    variants = ["pybamm"] + [v for v in ds["variant"].values.tolist() if v != "pybamm"]
    lines = ["| split | residual | " + " | ".join(variants) + " |",
             "|" + "---|" * (len(variants) + 2)]
    for sp in ds["split"].values.tolist():
        for k in names:
            mean, _, n = seed_stats(ds[f"pack_audit_{k}"])
            vals = [_fmt(float(mean.sel(split=sp, variant=v))) if int(n.sel(split=sp, variant=v))
                    else "–" for v in variants if v in ds["variant"].values]
            lines.append(f"| {sp} | {AUDIT[k]} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def worst_cell_table(ds: xr.Dataset, name: str = "c_s_n_rmse_pct") -> str:
    """Pack-level vs worst single cell (seed mean) for one metric."""
    if name not in ds:
        return ""
    variants = [v for v in ds["variant"].values.tolist() if v != "pybamm"]
    per_cell = ds[name].mean("seed", skipna=True)
    pack = ds[f"pack_{name}"].mean("seed", skipna=True)
    lines = ["| split | " + " | ".join(f"{v}: pack / worst cell" for v in variants) + " |",
             "|" + "---|" * (len(variants) + 1)]
    for sp in ds["split"].values.tolist():
        row = [str(sp)]
        for v in variants:
            pc = per_cell.sel(split=sp, variant=v)
            if bool(pc.notnull().any()):
                worst = int(np.nanargmax(pc.values))
                row.append(f"{_fmt(float(pack.sel(split=sp, variant=v)))} / "
                           f"{_fmt(float(pc.isel(cell=worst)))} (cell {int(pc['cell'][worst])})")
            else:
                row.append("–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def summary_table(ds: xr.Dataset, names: Sequence[str] = SUMMARY) -> str:
    """The compact table for the README: one row per split and variant, the key metrics."""
    names = [n for n in names if f"pack_{n}" in ds]
    head = ["split", "variant"] + [_label(n, ds) for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sp in ds["split"].values.tolist():
        for v in [v for v in ds["variant"].values.tolist() if v != "pybamm"]:
            row = [str(sp), str(v)]
            for n in names:
                mean, std, k = seed_stats(ds[f"pack_{n}"])
                sel = {"split": sp, "variant": v}
                row.append(_cell(float(mean.sel(sel)), float(std.sel(sel)), int(k.sel(sel))))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(ds: xr.Dataset, out: str | Path, plots: bool = True, note: str = "",
                 truth: xr.Dataset | None = None) -> Path:
    """Write ``out/report.md`` (and ``out/plots/*.png``) from a metrics dataset."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = with_param_mean(ds)
    attrs = ds.attrs
    seeds = ds["seed"].values.tolist()
    lines = [outputs.REPORT_TITLE, ""]
    if note:
        lines += [f"> {note}", ""]
    lines += [f"- truth store: `{attrs.get('store', '?')}`",
              f"- seeds: {seeds} (mean ± sample std over seeds; n = seeds with a value; the "
              f"baseline is deterministic and run once)",
              f"- training cells: {attrs.get('train_cells', '?')}; cells given fitted embeddings "
              f"(never trained on): {attrs.get('new_cells', '[]')}",
              f"- pack-level values are pooled over every valid sample of every cell of the split; "
              f"padding samples never count",
              f"- SEI errors are {SIMULATED_VS_SIMULATED}: PyBaMM's SEI model is the truth; % of "
              f"growth = MAE / mean(L - L_0), L_0 = {attrs.get('sei_initial_nm', '?')} nm",
              f"- surface c_s = the outermost stored radial node (r/R = "
              f"{attrs.get('surface_r_n', '?')} negative, {attrs.get('surface_r_p', '?')} positive)",
              f"- plating event: margin < {attrs.get('plating_threshold_V', 0.0)} V in PyBaMM's "
              f"output vs in the estimate, per sample",
              f"- baseline: {attrs.get('baseline', '')} (init: {attrs.get('baseline_init', '?')}; "
              f"see packtwin/eval/baselines.py)"]
    restarts = json.loads(attrs.get("observer_restarts", "{}"))
    repriors = json.loads(attrs.get("observer_repriors", "{}"))  # older reports: none
    lines += [f"- {name}: {desc} (deterministic, run once; see packtwin/eval/observer_predict.py); "
              f"restarts per split: {json.dumps(restarts.get(name, {}))}"
              + (f"; re-priors per split (SubspaceConfig.reprior_soc): "
                 f"{json.dumps(repriors[name])}" if name in repriors else "")
              for name, desc in json.loads(attrs.get("observers", "{}")).items()]
    config = json.loads(attrs.get("config", "{}"))
    prior = config.get("observer_prior", "ocv")  # reports written before the key: OCV prior
    prior_text = PRIOR_TEXT.get(prior, repr(prior))
    if restarts or json.loads(attrs.get("observers", "{}")):
        lines.append(f"- observers' start prior (`observer_prior: {prior}`): {prior_text}")
    if config.get("observer_prior_offset"):
        lines.append(f"- **deliberate start error** (`observer_prior_offset: "
                     f"{config['observer_prior_offset']:g}`): the observers' start prior moved "
                     f"by {100 * abs(config['observer_prior_offset']):g} % of each cell's SOC "
                     f"window (the other way where it would leave the window)")
    if any(o.endswith("_identified") for o in json.loads(attrs.get("observers", "{}"))):
        window = float(config.get("observer_identify_window_s", 1800.0))  # older: 30 min
        lines.append(f"- identified parameters fitted on the first {window:g} s of each cell's "
                     f"identification cycle (`observer_identify_window_s`; longer than the "
                     f"cycle: the whole cycle)")
    carry = json.loads(attrs.get("observer_carry", "{}"))
    carried_any = any(c for d in carry.values() for c, _ in d.values())
    if config.get("observer_start_s") is not None:
        lines.append(f"- **loaded start**: the observers start {config['observer_start_s']:g} s "
                     f"into every cycle {'that starts from a prior ' if carried_any else ''}"
                     f"from the prior of an unknown start ({prior_text}); every row is scored "
                     f"from that time on"
                     + (" (on a carried cycle from its sample 0)" if carried_any else ""))
    # observer_carry (issue #9 item 7): consecutive snapshot cycles filtered as one stream
    if carry:
        on = config.get("observer_carry", True)
        lines.append(
            f"- **observer_carry: {str(bool(on)).lower()}**: "
            + ("a cycle that continues the previous selected one (next snapshot_cycle, its "
               "first sample = that cycle's last) goes on from that cycle's final estimate "
               "instead of a prior" + (" and every row is scored on it from its sample 0"
                                       if config.get("observer_start_s") else "")
               if on else "every cycle starts from a prior")
            + "; cycles carried / started from a prior per split: "
            + "; ".join(f"{o}: " + ", ".join(f"{sp} {c}/{p}" for sp, (c, p) in d.items())
                        for o, d in carry.items()))
    lines.append("")
    resolved = json.loads(attrs.get("splits_resolved", "{}"))
    if resolved:
        lines += ["## Splits", "", "| split | selection | scenarios | cells | snapshots |",
                  "|---|---|---|---|---|"]
        for name, r in resolved.items():
            spec = json.dumps(config.get("splits", {}).get(name, {}))
            desc = _describe_scenarios(truth, r["scenarios"]) if truth is not None else \
                str(r["scenarios"])
            lines.append(f"| {name} | `{spec}` | {desc} | {r['cells']} | {r['snapshots']} |")
        lines += ["", f"Training selection: `{json.dumps(config.get('train', {}))}`", ""]
    skipped = json.loads(attrs.get("skipped_splits", "{}"))
    if skipped:
        lines += ["**Skipped splits** (no usable scenario in the store):", ""]
        lines += [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    if config.get("variants"):
        lines += ["## Variants", "",
                  f"Shared fit configs: `{config.get('fit_configs')}`, shared overrides: "
                  f"`{json.dumps(config.get('fit'))}`; per variant only: "
                  f"`{json.dumps(config.get('variants'))}`.", ""]
    lines += ["## Summary", "", summary_table(ds), ""]
    lines += ["## Every metric", ""]
    for name in HEADLINE:
        if f"pack_{name}" not in ds:
            continue
        better = "higher is better" if name in HIGHER_IS_BETTER else "lower is better"
        lines += [f"### {_label(name, ds)} ({better})", "", metric_table(ds, name), ""]
    params = [n[len("pack_"):] for n in ds.data_vars if n.startswith("pack_param_")
              and n.endswith("_relerr") and n != "pack_param_mean_relerr"]
    for name in params:
        lines += [f"### {_label(name, ds)}", "", metric_table(ds, name), ""]
    lines += ["## Pack level vs worst cell (negative c_s RMSE, % of c_max)", "",
              worst_cell_table(ds), ""]
    lines += ["## Residual audit", "",
              "Residuals of the estimates on the split's samples next to PyBaMM's own output "
              "(finite differences on the stored grid, the generator's per-cell parameters; "
              "PyBaMM's values are the floor this grid and storage allow). See "
              "packtwin/eval/audit.py.", "", audit_table(ds), ""]
    if plots:
        made, why = write_plots(ds, out / "plots")
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in made] if made else [f"_{why}_"]
        lines.append("")
    return outputs.write_text(out / "report.md", "\n".join(lines))


def _describe_scenarios(truth: xr.Dataset, idx: Sequence[int]) -> str:
    from packtwin import schema

    parts = []
    for s in idx:
        sc = truth.isel({schema.SCENARIO: int(s)})
        proto = schema.PROTOCOLS[int(sc["protocol"].values)]
        parts.append(f"{float(sc['ambient_temperature'].values):g} °C "
                     f"{float(sc['charge_c_rate'].values):g}C/{float(sc['discharge_c_rate'].values):g}C "
                     f"{proto}")
    return "; ".join(parts)


def write_plots(ds: xr.Dataset, folder: Path) -> tuple[list[Path], str]:
    """Grouped bar charts (splits x variants, error bars = seed std); ([], reason) if impossible."""
    try:
        from PIL import Image, ImageDraw, ImageFont  # noqa: F401
    except ImportError:
        return [], "plots skipped: Pillow is not installed (pip install pillow)"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    variants = [v for v in ds["variant"].values.tolist() if v != "pybamm"]
    for name in PLOTTED:
        if f"pack_{name}" not in ds:
            continue
        mean, std, _ = seed_stats(ds[f"pack_{name}"])
        series = {v: (mean.sel(variant=v).values, std.sel(variant=v).values) for v in variants}
        path = folder / f"{name}.png"
        bar_chart(path, _label(name, ds), [str(s) for s in ds["split"].values], series)
        made.append(path)
    return made, ""


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def bar_chart(path: Path, title: str, categories: Sequence[str],
              series: dict[str, tuple[np.ndarray, np.ndarray]], size=(900, 420)) -> Path:
    """A grouped bar chart PNG: one group per category, one bar per series, std error bars."""
    from PIL import Image, ImageDraw, ImageFont

    W, H = size
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    left, right, top, bottom = 70, 20, 40, 60
    d.text((left, 10), title, fill="black", font=font)
    tops = [np.nan_to_num(m, nan=0) + np.nan_to_num(s, nan=0) for m, s in series.values()]
    ymax = max([float(np.max(t)) for t in tops if t.size] + [1e-12]) * 1.1
    ph = H - top - bottom
    d.line([(left, top), (left, H - bottom), (W - right, H - bottom)], fill="black")
    for k in range(6):
        y = H - bottom - ph * k / 5
        d.line([(left - 4, y), (left, y)], fill="black")
        d.text((5, y - 7), _fmt(ymax * k / 5), fill="black", font=font)
    n_c, n_s = max(len(categories), 1), max(len(series), 1)
    gw = (W - left - right) / n_c
    bw = gw * 0.8 / n_s
    for ci, cat in enumerate(categories):
        x0 = left + ci * gw + gw * 0.1
        for si, (name, (m, s)) in enumerate(series.items()):
            if ci >= len(m) or not np.isfinite(m[ci]):
                continue
            xa = x0 + si * bw
            yb = H - bottom - ph * float(m[ci]) / ymax
            d.rectangle([xa, yb, xa + bw - 2, H - bottom], fill=_COLOURS[si % len(_COLOURS)])
            if np.isfinite(s[ci]) and s[ci] > 0:
                xm = xa + bw / 2
                y1 = H - bottom - ph * float(m[ci] + s[ci]) / ymax
                y2 = H - bottom - ph * max(float(m[ci] - s[ci]), 0) / ymax
                d.line([(xm, y1), (xm, y2)], fill="black")
                d.line([(xm - 4, y1), (xm + 4, y1)], fill="black")
        d.text((x0, H - bottom + 8), cat[:int(gw / 7)], fill="black", font=font)
    lx = left + 10
    for si, name in enumerate(series):
        d.rectangle([lx, H - 22, lx + 12, H - 10], fill=_COLOURS[si % len(_COLOURS)])
        d.text((lx + 16, H - 24), name, fill="black", font=font)
        lx += 30 + 8 * len(name)
    img.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m packtwin.eval.report OUTPUT_FOLDER``: rewrite report.md and plots."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m packtwin.eval.report OUTPUT_FOLDER (holding metrics.zarr)",
              file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not (folder / "metrics.zarr").exists():
        print(f"{folder / 'metrics.zarr'} does not exist", file=sys.stderr)
        return 2
    ds = xr.open_zarr(folder / "metrics.zarr", consolidated=False).load()
    truth = None
    try:
        from packtwin.data import store

        truth = store.open_store(ds.attrs["store"])
    except Exception:  # the report still works without the store (scenario indices only)
        truth = None
    print(write_report(ds, folder, truth=truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
