"""``packtwin estimate --checkpoint CKPT [--checkpoint CKPT ...] --store STORE --out OUT``.

Estimates every cell of any pack: a measured store from ``packtwin ingest`` or a simulated store
(its hidden variables and parameter table are never read), with any number of cells. Every cell
is treated as new: its embedding is fitted from its own V/I/T alone, with the network frozen
(:func:`packtwin.model.adapt.fit_new_cell_embeddings`), over the store's whole window (every
scenario and snapshot of the store at once). The network itself is causal, but the embedding has
seen the whole window: an estimate at time t is not a function of the data up to t alone.

With several checkpoints (the seeds ``packtwin evaluate`` trains), each one estimates the pack
on its own and the output holds the ensemble mean under each variable's name and the spread over
the seeds as ``<name>_std`` (:mod:`packtwin.eval.uncertainty`, which also defines the band).

With ``--calibration CAL.json`` the spread is replaced by a calibrated uncertainty (the band
rescaled per variable so that it covered the truth at its level on a simulated pack, written by
``--write-calibration``; :mod:`packtwin.eval.uncertainty`); the measured coverage of both bands
is in ``reports/bench_estimate.json``.

The output store is aligned with the input (same scenario, cell, snapshot and time coordinates),
follows ``packtwin/schema.py`` (``schema.validate(ds, kind="estimate")``) and is written through
:mod:`packtwin.data.outputs` like ``packtwin predict``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import xarray as xr

from packtwin import quantities, schema
from packtwin.data import outputs, store, windows
from packtwin.errors import PacktwinError
from packtwin.eval import predict, uncertainty

SCHEMA_KIND = "estimate"
DEFAULT_LEVEL = 0.9


class EstimateError(PacktwinError, ValueError):
    """The store or the checkpoints cannot be estimated as given; the message names the problem."""


# ---- inputs ------------------------------------------------------------------------------------
def open_input(path: str | os.PathLike) -> tuple[xr.Dataset, str]:
    """The store to estimate and its kind (``measured`` or ``simulated``), its measured
    variables checked against the schema (hidden variables are neither needed nor read)."""
    ds = store.open_store(path, check=False)
    required = (*schema.MEASURED, "valid")
    missing = [n for n in required if n not in ds.variables]
    if missing:
        raise EstimateError(f"store {str(path)!r}: variable(s) {missing} missing; estimate reads "
                            f"{list(required)} (V, A, K and the valid mask)")
    measured = ds.attrs.get("store_kind") == "measured"
    problems = schema.validate(ds, kind="measured" if measured else "truth", variables=required)
    if problems:
        raise schema.SchemaError(problems, source=f"store {str(path)!r}")
    return ds, "measured" if measured else "simulated"


def load_checkpoint(path: str | os.PathLike):
    """A TwinModule from a checkpoint file, in eval mode on the CPU (clear errors otherwise)."""
    from packtwin.model.checkpoint import load_twin

    return load_twin(path).module


def _store_grid(ds: xr.Dataset, trained: dict) -> dict:
    """The store's period, grids and c_max where it has them, else the checkpoint's."""
    info = dict(trained)
    info["period_s"] = float(ds.attrs.get("period_s", float("nan")))
    for e in quantities.ELECTRODES:
        for dim in (e.x_dim, e.r_dim):
            if dim in ds.coords:
                info[dim] = [float(v) for v in np.asarray(ds[dim].values)]
        c_max = e.c_max_of(ds) if e.variable in ds.variables else None
        if c_max is not None:
            info[e.c_max_info] = c_max
    return info


def check_compatible(module, ds: xr.Dataset, ckpt: str, reference: dict | None = None) -> None:
    """Refuse a checkpoint whose sampling period (or, where the store has them, grids and c_max)
    differs from the store's, or whose grids differ from the ensemble's first member."""
    from packtwin.model.module import CheckpointMismatchError, check_checkpoint

    trained = dict(module.hparams.store_info)
    info = _store_grid(ds, reference or trained)
    try:
        check_checkpoint({"packtwin_schema_version": schema.SCHEMA_VERSION,
                          "hyper_parameters": {"store_info": trained}},
                         store_info={**info, "param_keys": trained.get("param_keys", [])},
                         source=f"checkpoint {ckpt!r}")
    except CheckpointMismatchError as exc:
        hint = ""
        if "period_s" in str(exc):
            hint = (f" (the twin was trained at {trained['period_s']:g} s per sample: resample "
                    f"the log to it, e.g. packtwin ingest --period-s {trained['period_s']:g})")
        raise CheckpointMismatchError(f"{exc}{hint}") from exc


def check_first_samples(seq: windows.Sequences, path: str) -> None:
    """Every sequence with data must start with a valid sample: the twin reads the first voltage
    as the open-circuit voltage of the rested cell."""
    used = seq.valid.any(axis=1)
    late = used & ~seq.valid[:, 0].astype(bool)
    if late.any():
        k = int(np.flatnonzero(late)[0])
        raise EstimateError(
            f"store {path!r}: scenario {int(seq.scenario[k])}, snapshot {int(seq.snapshot[k])} "
            f"does not start with a valid sample (valid[0] = 0); the twin reads the first "
            f"sample's voltage as the rested open-circuit voltage: start the log at a sample "
            f"where every cell has V, I and T")


def with_grid(ds: xr.Dataset, info: dict) -> xr.Dataset:
    """The store with the twin's particle grids as coordinates where it has none (a measured
    store), so the estimated fields have their coordinates."""
    add = {}
    for e in quantities.ELECTRODES:
        for dim in (e.x_dim, e.r_dim):
            if dim not in ds.coords:
                add[dim] = xr.Variable((dim,), np.asarray(info[dim], dtype="float64"),
                                       schema.var_attrs(dim))
    return ds.assign_coords(add) if add else ds


# ---- estimation --------------------------------------------------------------------------------
def estimate_member(module, ds: xr.Dataset, seq: windows.Sequences, sel, attrs: dict,
                    steps: int, lr: float, tol: float, batch_size: int = 16
                    ) -> tuple[xr.Dataset, int]:
    """One checkpoint's estimates of every selected cell, each fitted as a new cell."""
    from packtwin.model.adapt import fit_new_cell_embeddings

    cells = [int(c) for c in sel.cells]
    emb, used = fit_new_cell_embeddings(module, ds, cells, steps=steps, lr=lr, tol=tol,
                                        scenarios=[int(s) for s in sel.scenarios],
                                        snapshots=[int(s) for s in sel.snapshots])
    embeddings = {c: emb[i] for i, c in enumerate(cells)}
    outs = predict.run_network(module, seq, embeddings, batch_size)
    member = predict.assemble(module, ds, sel, seq, outs, embeddings, attrs,
                              schema_kind=SCHEMA_KIND)
    member.attrs.pop("adapted_cells", None)  # every cell is: said once in embedding_fit
    for e in quantities.ELECTRODES:
        member[e.variable].attrs["c_max"] = float(module.net.c_max[e.index])
    return member, used


def estimate_members(checkpoints: Sequence[str | os.PathLike], store_path: str | os.PathLike,
                     steps: int = 300, lr: float = 0.05, tol: float = 1e-4,
                     level: float = DEFAULT_LEVEL, batch_size: int = 16,
                     scenarios: Sequence[int] | None = None,
                     snapshots: Sequence[int] | None = None,
                     log=None) -> tuple[list[xr.Dataset], dict]:
    """Each checkpoint's estimates of every cell of the store (arguments as :func:`estimate`),
    and the record of the embedding fits."""
    from packtwin.model.module import check_normalisation

    if not checkpoints:
        raise EstimateError("give at least one --checkpoint")
    path = str(store_path)
    ds, input_kind = open_input(path)
    sel = predict.selection_of(ds, scenarios, None, snapshots)
    seq = windows.load_sequences(ds, sel, with_targets=False, source=f"store {path!r}")
    check_first_samples(seq, path)
    ckpts = [str(c) for c in checkpoints]
    n = len(ckpts)
    uncertainty.check_level(level)  # refuse a bad level before any work
    attrs = {"checkpoints": json.dumps(ckpts), "input_store": path, "input_kind": input_kind,
             "ensemble_size": n, "uncertainty": json.dumps(describe_band(n, level)),
             "embedding_fit": ""}
    modules, reference = [], None
    for ckpt in ckpts:  # every checkpoint checked before any work
        module = load_checkpoint(ckpt)
        check_compatible(module, ds, ckpt, reference)
        reference = reference or dict(module.hparams.store_info)
        check_normalisation(module.net, seq, f"store {path!r} for checkpoint {ckpt!r}")
        modules.append(module)
    grid_ds = with_grid(ds, reference)
    members, fits = [], []
    for ckpt, module in zip(ckpts, modules):
        t0 = time.perf_counter()
        member, used = estimate_member(module, grid_ds, seq, sel, attrs, steps, lr, tol,
                                       batch_size)
        members.append(member)
        fits.append({"checkpoint": ckpt, "steps_used": int(used), "max_steps": int(steps),
                     "seconds": round(time.perf_counter() - t0, 3)})
        if log:
            log(f"checkpoint {ckpt}: {len(sel.cells)} cells fitted in {used} steps, "
                f"{fits[-1]['seconds']:.1f} s")
    record = {"what": "every cell treated as new: one embedding per cell fitted from its V/I/T "
                      "alone (network frozen; voltage reconstruction and, for the physics twin, "
                      "physics terms) over the store's whole window, per checkpoint",
              "scenarios": [int(s) for s in sel.scenarios], "cells": len(sel.cells),
              "snapshots": [int(s) for s in sel.snapshots], "lr": lr, "tol": tol,
              "members": fits}
    return members, record


def estimate(checkpoints: Sequence[str | os.PathLike], store_path: str | os.PathLike,
             steps: int = 300, lr: float = 0.05, tol: float = 1e-4,
             level: float = DEFAULT_LEVEL, batch_size: int = 16,
             scenarios: Sequence[int] | None = None, snapshots: Sequence[int] | None = None,
             log=None) -> xr.Dataset:
    """Estimates of every cell of the store at ``store_path``, every cell fitted as a new cell.

    Args:
        checkpoints: one or more TwinModule checkpoints (several: an ensemble over seeds).
        store_path: a measured (``packtwin ingest``) or simulated store.
        steps, lr, tol: embedding fit budget (``packtwin.model.adapt``), per checkpoint.
        level: nominal coverage of the band recorded in ``attrs["uncertainty"]``.
        scenarios, snapshots: positional selection (None: every usable scenario, every
            snapshot); the window the embeddings are fitted over, and the output's coordinates.
        log: optional callable receiving one progress line per checkpoint.
    Returns:
        the estimate dataset (``schema.validate(ds, kind="estimate") == []``).
    """
    members, record = estimate_members(checkpoints, store_path, steps, lr, tol, level,
                                       batch_size, scenarios, snapshots, log)
    return combine(members, record)


def combine(members: Sequence[xr.Dataset], record: dict) -> xr.Dataset:
    """The ensemble dataset of :func:`estimate_members`' output (mean, ``<name>_std``)."""
    variants = sorted({m.attrs["variant"] for m in members})
    out = uncertainty.combine(members, [str(v) for v in members[0].data_vars])
    for e in quantities.ELECTRODES:
        out[e.variable].attrs["c_max"] = members[0][e.variable].attrs["c_max"]
    out.attrs.update({"variant": "+".join(variants), "embedding_fit": json.dumps(record)})
    problems = schema.validate(out, kind=SCHEMA_KIND)
    if problems:  # a packtwin bug, not the user's input
        raise schema.SchemaError(problems, source="estimate dataset (packtwin bug)")
    return out


def describe_band(n_members: int, level: float) -> dict:
    """What ``<name>_std`` means and which band has which nominal coverage."""
    if n_members < 2:
        return {"kind": "none", "note": "one checkpoint: no spread (give several --checkpoint, "
                                        "e.g. the seeds of packtwin evaluate)"}
    return {"kind": "ensemble over seeds", "members": n_members,
            "spread": "<name>_std: sample standard deviation over the members (ddof=1)",
            "band": "mean +- k * <name>_std (Student-t prediction interval of a new member)",
            "k": uncertainty.band_factor(n_members, level), "nominal_coverage": level,
            "range_nominal_coverage": uncertainty.range_level(n_members),
            "caveat": "members share data and architecture: their common error is not in the "
                      "spread; measured coverage: scripts/bench_estimate.py"}


# ---- calibrated band ---------------------------------------------------------------------------
def truth_aligned(truth: xr.Dataset, est: xr.Dataset, name: str) -> np.ndarray:
    """The truth of ``name`` on the estimate's scenarios/cells/snapshots, NaN outside valid."""
    sub = truth[name].sel(scenario=est["scenario"].values, cell=est["cell"].values,
                          snapshot=est["snapshot"].values)
    valid = truth["valid"].sel(scenario=est["scenario"].values,
                               snapshot=est["snapshot"].values).values.astype(bool)
    arr = np.asarray(sub.transpose(*est[name].dims).values, dtype=np.float64)
    mask = valid[:, None].reshape(valid[:, None].shape + (1,) * (arr.ndim - 4))
    return np.where(mask, arr, np.nan)


def calibrated_names(est: xr.Dataset) -> list[str]:
    """The estimated time series that have a spread (the per-cell parameters are not
    calibrated: one value per cell is too few entries)."""
    return [str(n) for n in est.data_vars
            if schema.std_var(str(n)) in est.data_vars and schema.TIME in est[n].dims]


def make_calibration(est: xr.Dataset, truth: xr.Dataset, level: float,
                     names: Sequence[str] | None = None, cells: Sequence[int] | None = None,
                     source: str = "") -> dict:
    """The band calibration (JSON-ready) of ``est``'s variables against ``truth``'s hidden
    variables, over the estimate's scenarios and snapshots and ``cells`` (cell labels; None:
    every cell of the estimate)."""
    n = int(est.attrs["ensemble_size"])
    k = uncertainty.band_factor(n, level)
    names = list(names or calibrated_names(est))
    missing = [v for v in names if v not in truth.variables]
    if missing:
        raise uncertainty.CalibrationError(f"store {source!r} has no truth for {missing}: "
                                           f"calibrate on a simulated store")
    picked = est if cells is None else est.sel(cell=list(cells))
    variables = {}
    for name in names:
        fit = uncertainty.fit_scale(truth_aligned(truth, picked, name),
                                    picked[name].values.astype(np.float64),
                                    picked[schema.std_var(name)].values.astype(np.float64),
                                    k, level)
        variables[name] = {"units": est[name].attrs["units"], **fit}
    return {"kind": uncertainty.CALIBRATION_KIND, "version": uncertainty.CALIBRATION_VERSION,
            "method": "split-conformal scaling: half width = scale * (k * std + floor), scale "
                      "the ceil((n+1) level)-th smallest |truth - mean| / (k std + floor) over "
                      f"the calibration entries; floor = {uncertainty.FLOOR_FRACTION:g} x RMS of "
                      "k std there (the variable's units)",
            "level": level, "members": n, "k": k, "variables": variables,
            "provenance": {"truth_store": source,
                           "checkpoints": json.loads(est.attrs["checkpoints"]),
                           "scenarios": [int(s) for s in picked["scenario"].values],
                           "cells": [int(c) for c in picked["cell"].values],
                           "snapshots": [int(s) for s in picked["snapshot"].values],
                           "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}


def _round_up(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` in ``dtype``, never below ``x``: the entries on the band's edge at calibration
    stay inside once the std is stored in float32."""
    y = x.astype(dtype)
    with np.errstate(invalid="ignore"):
        return np.where(y < x, np.nextafter(y, np.inf), y).astype(dtype)


def apply_calibration(est: xr.Dataset, cal: dict, source: str = "") -> xr.Dataset:
    """``est`` with each calibrated variable's ``<name>_std`` replaced by the calibrated one, so
    that mean +- k std is the calibrated band at the calibration's level."""
    out = est.copy()
    k = float(cal["k"])
    for name, entry in cal["variables"].items():
        s = schema.std_var(name)
        wide = uncertainty.calibrated_std(est[s].astype("float64"), k, entry["scale"],
                                          entry["floor"])
        out[s] = wide.copy(data=_round_up(wide.values, est[s].dtype))
        out[s].attrs = {**schema.var_attrs(s),
                        "description": f"calibrated standard uncertainty: scale x (ensemble "
                                       f"spread + floor / k), scale {entry['scale']:.6g}, floor "
                                       f"{entry['floor']:.6g} {entry['units']}, k {k:.6g}"}
    band = json.loads(est.attrs["uncertainty"])
    band.update({"kind": "ensemble over seeds, calibrated", "k": k,
                 "nominal_coverage": cal["level"],
                 "band": "mean +- k * <name>_std, <name>_std calibrated (split-conformal "
                         "scaling of the members' spread)",
                 "calibration": {"file": source, "method": cal.get("method"),
                                 "variables": {n: {key: e[key]
                                                   for key in ("units", "scale", "floor")}
                                               for n, e in cal["variables"].items()},
                                 "provenance": cal.get("provenance")},
                 "caveat": "calibrated on the provenance's scenarios and cells; coverage on "
                           "other conditions: scripts/bench_estimate.py"})
    band.pop("range_nominal_coverage", None)
    out.attrs["uncertainty"] = json.dumps(band)
    return out


def check_calibration_path(path: str, inputs: Sequence[str]) -> None:
    """Refuse a --write-calibration path that is an input or an existing non-calibration file."""
    p = Path(path).expanduser().resolve()
    if any(p == Path(i).expanduser().resolve() for i in inputs):
        raise EstimateError(f"--write-calibration {path!r} is an input: choose another path")
    if p.exists():
        try:
            kind = json.loads(p.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind != uncertainty.CALIBRATION_KIND:
            raise EstimateError(f"--write-calibration {path!r} exists and is not a band "
                                f"calibration; refusing to replace it: choose another path")


def write(ds: xr.Dataset, out: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> Path:
    return predict.write_predictions(ds, out, inputs)


# ---- command line ------------------------------------------------------------------------------
def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="packtwin estimate",
        description="Estimate every cell of any pack (measured or simulated store, any cell "
                    "count), each cell fitted as a new cell from its V/I/T alone; several "
                    "checkpoints give an ensemble mean and spread.")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="TwinModule checkpoint; repeat for an ensemble over seeds")
    p.add_argument("--store", required=True, help="measured (packtwin ingest) or simulated store")
    p.add_argument("--out", required=True, help="output estimate store (.zarr)")
    p.add_argument("--steps", type=int, default=300, help="embedding fit: maximum Adam steps")
    p.add_argument("--lr", type=float, default=0.05, help="embedding fit: learning rate")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="embedding fit: relative improvement below which it stops")
    p.add_argument("--level", type=float, default=None,
                   help=f"nominal coverage of the band mean +- k std recorded in the attrs "
                        f"(default {DEFAULT_LEVEL}, or the --calibration file's)")
    p.add_argument("--calibration", metavar="CAL.json",
                   help="apply a band calibration (from --write-calibration): <name>_std becomes "
                        "the calibrated uncertainty")
    p.add_argument("--write-calibration", metavar="CAL.json",
                   help="calibrate the band against the --store's hidden truth (a simulated "
                        "store) and write the calibration file; --out gets the raw estimate")
    p.add_argument("--scenarios", type=_ints, help="positional scenarios to estimate, e.g. 0,3 "
                   "(default: every usable one; a measured store has one)")
    p.add_argument("--snapshots", type=_ints, help="positional snapshots (default: all)")
    p.add_argument("--quiet", action="store_true")
    return p


def calibration_args(args: argparse.Namespace, inputs: Sequence[str]
                     ) -> tuple[dict | None, float]:
    """The calibration to apply (None: none) and the band's level; every refusal before any
    fit."""
    n = len(args.checkpoint)
    cal, level = None, DEFAULT_LEVEL if args.level is None else args.level
    if args.calibration and args.write_calibration:
        raise EstimateError("give --calibration (apply one) or --write-calibration (make one), "
                            "not both")
    if (args.calibration or args.write_calibration) and n < 2:
        raise uncertainty.CalibrationError("a band calibration needs an ensemble: give at "
                                           "least 2 --checkpoint")
    if args.calibration:
        units = {v: schema.units(v) for v in quantities.ESTIMATED}  # the calibrated ones
        cal = uncertainty.load_calibration(args.calibration, units, n)
        if args.level is not None and args.level != cal["level"]:
            raise EstimateError(f"--level {args.level} differs from calibration "
                                f"{args.calibration!r}'s level {cal['level']}")
        level = cal["level"]
    if args.write_calibration:
        check_calibration_path(args.write_calibration, inputs)
        has = store.open_store(args.store, check=False).variables
        missing = [v for v in quantities.ESTIMATED if v not in has]
        if missing:
            raise uncertainty.CalibrationError(
                f"--write-calibration: store {args.store!r} has no truth for {missing}: "
                f"calibrate on a simulated store")
    return cal, level


def write_calibration(ds: xr.Dataset, args: argparse.Namespace, level: float, say) -> None:
    """The calibration of ``ds`` against the store's truth, written to --write-calibration."""
    made = make_calibration(ds, store.open_store(args.store, check=False), level,
                            source=str(args.store))
    Path(args.write_calibration).write_text(json.dumps(made, indent=1) + "\n")
    if say:
        for v, e in made["variables"].items():
            say(f"{v}: scale {e['scale']:.4g}, floor {e['floor']:.4g} {e['units']}; coverage "
                f"at {level:g} raw {e['coverage_raw']:.3f} -> {e['coverage_calibrated']:.3f}")
        say(f"wrote {args.write_calibration}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    inputs = [args.store, *args.checkpoint]
    outputs.guard(args.out, predict.PREDICTION_KIND, inputs, what="--out")
    say = None if args.quiet else print
    cal, level = calibration_args(args, inputs)
    ds = estimate(args.checkpoint, args.store, steps=args.steps, lr=args.lr, tol=args.tol,
                  level=level, scenarios=args.scenarios, snapshots=args.snapshots,
                  log=say)
    if cal is not None:
        ds = apply_calibration(ds, cal, source=str(args.calibration))
    write(ds, args.out, inputs)  # before the calibration: the estimate is kept if that fails
    if args.write_calibration:
        write_calibration(ds, args, level, say)
    if say:
        say(f"wrote {args.out}: {ds.sizes[schema.CELL]} cells x {ds.sizes[schema.TIME]} samples, "
            f"{len(args.checkpoint)} checkpoint(s)"
            + (", mean and spread over the ensemble" if len(args.checkpoint) > 1 else ""))
    return 0
