"""Error metrics of a prediction dataset against its truth store, masked by ``valid``.

Every metric is computed from per-cell sums and counts over the valid samples only (the padded
tail of a short cycle never counts), so the pack-level value is the exact pooled value over all
cells (``pack_<metric>``), not a mean of per-cell values. Units are in each variable's attrs.

Metrics (per cell, dim ``cell``, and pack-level, no dims):

- ``c_s_n_rmse`` / ``c_s_p_rmse`` [mol/m3] and ``..._pct`` [% of c_max]: whole field (x, r);
  ``..._surf_rmse`` and ``..._surf_rmse_pct``: the outermost stored radial node only (r = 1 on a
  grid that includes the surface; 0.95 on PyBaMM's 10-volume grid of cell centres; its position
  is in the attrs ``surface_r_n``/``surface_r_p``).
- ``voltage_rmse`` [mV] (only when the prediction has ``voltage``).
- ``sei_mae`` [nm] and ``sei_mae_pct`` [% of the simulated growth L - L_0], simulated-vs-simulated.
- ``plating_margin_mae`` [mV]; plating events (margin < threshold) ``plating_precision``,
  ``plating_recall``, ``plating_f1`` and the counts ``plating_tp/fp/fn`` (NaN where undefined,
  e.g. precision when nothing was predicted).
- ``soc_mae`` and ``soc_rmse`` [percentage points].
- ``param_<key>_relerr`` [%]: |decoded - truth| / |truth| per cell; pack-level = mean over cells.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from packtwin import quantities, schema
from packtwin.errors import PacktwinError

ELECTRODES = quantities.FIELD_TARGETS
SCALARS = quantities.SCALAR_TARGETS + ("voltage",)
GRID_DIMS = (schema.TIME, schema.X_N, schema.X_P, schema.R_N, schema.R_P)
SIMULATED_VS_SIMULATED = "simulated-vs-simulated"

# metric name -> (units, long name); the one table that report and plots read labels from.
METRICS: dict[str, tuple[str, str]] = {}
for _n, _side in ((e.variable, e.domain) for e in quantities.ELECTRODES):
    METRICS[f"{_n}_rmse"] = ("mol/m3", f"c_s RMSE, {_side} electrode (x, r)")
    METRICS[f"{_n}_rmse_pct"] = ("% of c_max", f"c_s RMSE, {_side} electrode (x, r)")
    METRICS[f"{_n}_surf_rmse"] = ("mol/m3", f"surface c_s RMSE, {_side} electrode")
    METRICS[f"{_n}_surf_rmse_pct"] = ("% of c_max", f"surface c_s RMSE, {_side} electrode")
METRICS.update({
    "voltage_rmse": ("mV", "terminal voltage RMSE"),
    "sei_mae": ("nm", f"SEI thickness MAE ({SIMULATED_VS_SIMULATED})"),
    "sei_mae_pct": ("% of growth", f"SEI thickness MAE ({SIMULATED_VS_SIMULATED})"),
    "plating_margin_mae": ("mV", "plating margin MAE"),
    "plating_precision": ("1", "plating event precision"),
    "plating_recall": ("1", "plating event recall"),
    "plating_f1": ("1", "plating event F1"),
    "plating_tp": ("samples", "plating events found"),
    "plating_fp": ("samples", "plating false alarms"),
    "plating_fn": ("samples", "plating events missed"),
    "plating_events": ("samples", "plating events in the truth"),
    "soc_mae": ("%", "SOC MAE (percentage points)"),
    "soc_rmse": ("%", "SOC RMSE (percentage points)"),
    "n_samples": ("samples", "valid time samples evaluated"),
})
for _k, _p in schema.PARAMETERS.items():
    METRICS[f"param_{_k}_relerr"] = ("%", f"relative error of {_p.long_name}")


class MetricsError(PacktwinError, ValueError):
    """Truth and prediction cannot be compared; the message names the variable and the problem."""


def align(truth: xr.Dataset, pred: xr.Dataset) -> xr.Dataset:
    """The truth restricted to the prediction's scenarios, cells and snapshots (by label).

    Raises MetricsError when a label is missing from the truth or a grid coordinate differs.
    """
    idx = {}
    for dim in (schema.SCENARIO, schema.CELL, schema.SNAPSHOT):
        if dim not in pred.dims:
            raise MetricsError(f"prediction lacks dimension {dim!r} (dims: {dict(pred.sizes)})")
        missing = np.setdiff1d(pred[dim].values, truth[dim].values)
        if missing.size:
            raise MetricsError(f"prediction {dim} values {missing.tolist()} are not in the truth "
                               f"(truth has {truth[dim].values.tolist()})")
        idx[dim] = pred[dim].values
    for dim in GRID_DIMS:
        if dim in pred.dims and (pred.sizes[dim] != truth.sizes[dim] or not np.allclose(
                pred[dim].values, truth[dim].values, rtol=1e-6, atol=0)):
            raise MetricsError(f"prediction coordinate {dim!r} ({pred.sizes[dim]} points) differs "
                               f"from the truth's ({truth.sizes[dim]} points)")
    return truth.sel(idx)


def c_max_of(truth: xr.Dataset, name: str) -> float:
    c_max = truth[name].attrs.get("c_max")
    if c_max is None or not np.isfinite(float(c_max)) or float(c_max) <= 0:
        raise MetricsError(f"truth variable {name!r} lacks a positive attribute 'c_max' "
                           f"(maximum concentration [mol/m3]); found {c_max!r}")
    return float(c_max)


class XarrayOps:
    """How :func:`error_sums` masks and sums labelled arrays: per cell, by dimension name."""

    @staticmethod
    def mask(valid, like, name):
        """valid (scenario, snapshot, time) as bool, broadcast against ``like``."""
        return (valid > 0).broadcast_like(like)

    @staticmethod
    def where(mask, x):
        return x.where(mask, 0.0)

    @staticmethod
    def total(x):
        return x.astype("float64").sum([d for d in x.dims if d != schema.CELL])

    @staticmethod
    def surface(x, name):
        # The outermost stored node stands for the surface (PyBaMM's nodes are cell centres).
        r_dim = quantities.electrode_of(name).r_dim
        return x.isel({r_dim: x.sizes[r_dim] - 1})

    @staticmethod
    def as_float(x):
        return x.astype("float64")


class TorchOps:
    """How :func:`error_sums` masks and sums a training batch: dicts of [B, T, ...] tensors,
    summed over everything (the Lightning metrics pool the batches)."""

    @staticmethod
    def mask(valid, like, name):
        import torch

        m = valid.reshape(valid.shape + (1,) * (like.ndim - valid.ndim)) > 0
        return m.expand_as(like) if isinstance(like, torch.Tensor) else m

    @staticmethod
    def where(mask, x):
        import torch

        return torch.where(mask, x, torch.zeros_like(x))

    @staticmethod
    def total(x):
        return x.double().sum()

    @staticmethod
    def surface(x, name):
        return x[..., -1]

    @staticmethod
    def as_float(x):
        return x.double()


def error_sums(truth, pred, plating_threshold: float = 0.0, ops=XarrayOps
               ) -> dict[str, xr.DataArray]:
    """Sums over valid samples: squared/absolute errors, counts and event counts.

    The one masked core of every metric, in training (``ops=TorchOps``: dicts of tensors, one
    total) and in evaluation (datasets, sums per cell). ``truth`` must already be aligned with
    ``pred`` (see :func:`align`) and hold ``valid``. Keys: ``<name>_sq``, ``<name>_abs``,
    ``<name>_n`` (count), ``c_s_*_surf_sq``/``_n``, ``sei_truth_sum`` (for the SEI growth),
    ``plating_tp/fp/fn/events``; :func:`pooled` turns them into metrics.
    """
    out: dict = {}
    valid = truth["valid"]

    def masked(name):
        t = ops.as_float(truth[name])
        m = ops.mask(valid, t, name)
        err = ops.as_float(pred[name]) - t
        bad = m & ~np.isfinite(err) if ops is XarrayOps else m & ~err.isfinite()
        if bool(bad.any()):
            raise MetricsError(f"prediction - truth {name!r} has {int(bad.sum())} NaN/inf values "
                               f"inside valid samples; predictions and truth must be finite "
                               f"where valid = 1")
        return t, m, ops.where(m, err)

    for name in ELECTRODES:
        if name not in pred:
            continue
        _, m, err = masked(name)
        out[f"{name}_sq"] = ops.total(err ** 2)
        out[f"{name}_n"] = ops.total(m)
        out[f"{name}_surf_sq"] = ops.total(ops.surface(err ** 2, name))
        out[f"{name}_surf_n"] = ops.total(ops.surface(m, name))
    for name in SCALARS:
        if name not in pred:
            continue
        t, m, err = masked(name)
        out[f"{name}_sq"] = ops.total(err ** 2)
        out[f"{name}_abs"] = ops.total(abs(err))
        out[f"{name}_n"] = ops.total(m)
        if name == "sei_thickness_avg":
            out["sei_truth_sum"] = ops.total(ops.where(m, t))
        if name == "plating_margin":
            ev_t = (t < plating_threshold) & m
            ev_p = (pred[name] < plating_threshold) & m
            out["plating_tp"] = ops.total(ev_t & ev_p)
            out["plating_fp"] = ops.total(~ev_t & ev_p)
            out["plating_fn"] = ops.total(ev_t & ~ev_p)
            out["plating_events"] = ops.total(ev_t)
    return out


def sum_keys() -> tuple[str, ...]:
    """Every key :func:`error_sums` returns when all estimated variables are given (training
    pools one metric per key over an epoch)."""
    keys = [f"{n}_{s}" for n in ELECTRODES for s in ("sq", "n", "surf_sq", "surf_n")]
    keys += [f"{n}_{s}" for n in SCALARS for s in ("sq", "abs", "n")]
    return (*keys, "sei_truth_sum", "plating_tp", "plating_fp", "plating_fn", "plating_events")


def _ratio(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _event_ratios(tp, fp, fn) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from event counts (NaN where a denominator is 0)."""
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * np.asarray(tp, float), 2 * np.asarray(tp, float) + fp + fn)}


def finalize(sums: dict[str, xr.DataArray], c_max: dict[str, float], sei_initial_nm: float
             ) -> xr.Dataset:
    """Metrics per cell and pooled over the pack from the sums of :func:`error_sums`."""
    cells = next(iter(sums.values()))[schema.CELL].values if sums else np.array([], int)
    return _to_dataset(*pooled(sums, c_max, sei_initial_nm), cells)


def pooled(sums: dict, c_max: dict[str, float], sei_initial_nm: float
           ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Metrics (names and units of :data:`METRICS`) from the sums of :func:`error_sums`: per entry
    of the sums (cells) and pooled over all entries (the pack, or a training epoch)."""
    per_cell: dict[str, np.ndarray] = {}
    pack: dict[str, float] = {}

    def put(name: str, num, den, fn=lambda x: x, scale: float = 1.0):
        num_c, den_c = np.asarray(num, float), np.asarray(den, float)
        per_cell[name] = fn(_ratio(num_c, den_c)) * scale
        pack[name] = float(fn(_ratio(num_c.sum(), den_c.sum())) * scale)

    for name in ELECTRODES:
        if f"{name}_sq" not in sums:
            continue
        for tag, sq, n in (("", f"{name}_sq", f"{name}_n"), ("_surf", f"{name}_surf_sq",
                                                             f"{name}_surf_n")):
            put(f"{name}{tag}_rmse", sums[sq], sums[n], np.sqrt)
            put(f"{name}{tag}_rmse_pct", sums[sq], sums[n], np.sqrt, 100.0 / c_max[name])
    if "voltage_sq" in sums:
        put("voltage_rmse", sums["voltage_sq"], sums["voltage_n"], np.sqrt, 1e3)
    if "sei_thickness_avg_abs" in sums:
        n = sums["sei_thickness_avg_n"]
        put("sei_mae", sums["sei_thickness_avg_abs"], n)
        growth = np.asarray(sums["sei_truth_sum"], float) - sei_initial_nm * np.asarray(n, float)
        put("sei_mae_pct", sums["sei_thickness_avg_abs"], growth, scale=100.0)
    if "plating_margin_abs" in sums:
        put("plating_margin_mae", sums["plating_margin_abs"], sums["plating_margin_n"], scale=1e3)
        tp, fp, fn = (np.asarray(sums[k], float) for k in ("plating_tp", "plating_fp",
                                                            "plating_fn"))
        pack_scores = _event_ratios(tp.sum(), fp.sum(), fn.sum())
        for score, value in _event_ratios(tp, fp, fn).items():
            per_cell[f"plating_{score}"] = value
            pack[f"plating_{score}"] = float(pack_scores[score])
        for k in ("plating_tp", "plating_fp", "plating_fn", "plating_events"):
            per_cell[k] = np.asarray(sums[k], float)
            pack[k] = float(per_cell[k].sum())
    if "soc_abs" in sums:
        put("soc_mae", sums["soc_abs"], sums["soc_n"], scale=100.0)
        put("soc_rmse", sums["soc_sq"], sums["soc_n"], np.sqrt, 100.0)
    counts = [k for k in sums if k.endswith("_n")]
    if counts:
        # Time samples per cell: every scalar count is (scenarios x snapshots x valid times).
        n_key = next((k for k in ("soc_n", "sei_thickness_avg_n", "voltage_n", "plating_margin_n")
                      if k in sums), None)
        if n_key:
            per_cell["n_samples"] = np.asarray(sums[n_key], float)
            pack["n_samples"] = float(per_cell["n_samples"].sum())
    return per_cell, pack


def event_scores(truth_event, est_event) -> dict[str, float]:
    """Precision, recall and F1 of estimated events against true ones (arrays of 1/0, NaN where
    either is unknown and left out), with the counts tp/fp/fn/tn (NaN where undefined, e.g.
    precision when nothing was predicted); per cycle for plating events over life."""
    t, e = np.asarray(truth_event, float), np.asarray(est_event, float)
    if t.shape != e.shape:
        raise MetricsError(f"event_scores: truth has shape {t.shape}, estimate {e.shape}")
    known = np.isfinite(t) & np.isfinite(e)
    t, e = t[known] > 0.5, e[known] > 0.5
    tp, fp, fn = float(np.sum(t & e)), float(np.sum(~t & e)), float(np.sum(t & ~e))
    scores = {k: float(v) for k, v in _event_ratios(tp, fp, fn).items()}
    return {**scores, "tp": tp, "fp": fp, "fn": fn, "tn": float(np.sum(~t & ~e)), "n": float(known.sum())}


def _to_dataset(per_cell: dict, pack: dict, cells) -> xr.Dataset:
    data = {}
    for name, vals in per_cell.items():
        data[name] = xr.DataArray(np.asarray(vals, float), dims=(schema.CELL,),
                                  coords={schema.CELL: cells}, attrs=metric_attrs(name))
    for name, val in pack.items():
        data[f"pack_{name}"] = xr.DataArray(float(val), attrs=metric_attrs(name))
    return xr.Dataset(data)


def metric_attrs(name: str) -> dict:
    units, long_name = METRICS.get(name, ("1", name))
    return {"units": units, "long_name": long_name}


def param_errors(truth: xr.Dataset, pred: xr.Dataset) -> xr.Dataset:
    """Relative errors [%] of the decoded per-cell parameters present in both datasets."""
    per_cell, pack = {}, {}
    for key in schema.param_keys_in(pred):
        name = schema.param_var(key)
        if name not in truth:
            continue
        t = np.asarray(truth[name].sel({schema.CELL: pred[schema.CELL].values}).values, float)
        p = np.asarray(pred[name].values, float)
        rel = 100.0 * _ratio(np.abs(p - t), np.abs(t))
        per_cell[f"param_{key}_relerr"] = rel
        pack[f"param_{key}_relerr"] = float(np.nanmean(rel)) if np.isfinite(rel).any() else np.nan
    return _to_dataset(per_cell, pack, pred[schema.CELL].values)


def compute_metrics(truth: xr.Dataset, pred: xr.Dataset, plating_threshold: float = 0.0,
                    sei_initial_nm: float = 5.0, scenarios_at_once: int = 1) -> xr.Dataset:
    """All metrics of ``pred`` against ``truth`` (per cell and pooled over the pack).

    Args:
        truth: a truth store (lazy is fine): it is restricted to the prediction's labels.
        pred: a prediction dataset (``packtwin.eval.predict.predict_dataset`` or a baseline).
        plating_threshold: [V] a sample is a plating event where the margin is below it.
        sei_initial_nm: initial SEI thickness L_0 [nm] of the parameter set: the SEI MAE is also
            given as a percentage of the simulated growth sum(L_true - L_0) over the samples.
        scenarios_at_once: scenarios loaded together (bounds memory on big stores).

    Returns:
        Dataset of per-cell variables (dim ``cell``) and ``pack_*`` scalars, units in attrs.
    """
    t_all = align(truth, pred)
    c_max = {n: c_max_of(truth, n) for n in ELECTRODES if n in pred}
    total: dict[str, xr.DataArray] = {}
    sc = pred[schema.SCENARIO].values
    for i in range(0, len(sc), max(1, scenarios_at_once)):
        lab = {schema.SCENARIO: sc[i:i + scenarios_at_once]}
        names = [n for n in (*ELECTRODES, *SCALARS) if n in pred]
        t = t_all[names + ["valid"]].sel(lab).load()
        p = pred[names].sel(lab).load()
        for k, v in error_sums(t, p, plating_threshold).items():
            total[k] = v if k not in total else total[k] + v
    out = finalize(total, c_max, sei_initial_nm)
    out = out.merge(param_errors(truth, pred), compat="override", join="outer")
    out.attrs.update({"plating_threshold_V": float(plating_threshold),
                      "sei_initial_nm": float(sei_initial_nm),
                      "sei_label": SIMULATED_VS_SIMULATED,
                      "surface_r_n": float(truth[schema.R_N].values[-1]),
                      "surface_r_p": float(truth[schema.R_P].values[-1]),
                      "variant": str(pred.attrs.get("variant", "unknown")),
                      "pack_level": "pooled over every valid sample of every cell (not a mean "
                                    "of per-cell values); parameters: mean over cells"})
    return out

