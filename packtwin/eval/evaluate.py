"""``packtwin evaluate``: held-out splits, physics vs data-only ablation, baselines, report.

Run as ``packtwin evaluate --config configs/experiments/<name>.yaml [--key value ...]``.

For each variant (physics, data_only) and seed the twin is trained in-process with
``packtwin.train.fit`` (the same fit configs and overrides for every variant: only the variant's
own config files differ) or loaded from a given checkpoint. New embeddings are fitted, from V/I/T alone,
for every evaluated cell that was not trained on. Each split is then predicted and scored against
the truth, next to the trivial baseline (``packtwin.eval.baselines``), the configured classical
``observers`` (``packtwin.eval.observer_predict``: the EKF on the reduced core with the store's true
per-cell parameters) and, for the residual audit, PyBaMM's own output. Written to ``output``:

- ``metrics.zarr``: dims (split, variant, seed, cell); ``pack_*`` variables pooled over cells;
- ``report.md``: tables of every split x variant, mean +- spread over seeds, physics/data-only ratio;
- ``plots/*.png``: bar charts of the headline metrics (Pillow; skipped with a note if absent);
- ``runs/<variant>/seed<k>/model.ckpt``: the evaluated checkpoints (reused when ``resume``).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import xarray as xr

from packtwin import schema
from packtwin.data import outputs, splits, store
from packtwin.eval import audit, baselines, metrics, observer_predict, report
from packtwin.eval.observer_identify import WINDOW_S as IDENTIFY_WINDOW_S

BASELINE, PYBAMM = "baseline", "pybamm"
METRICS_KIND, EVALUATION_KIND = "metrics", "evaluation"


@dataclass
class Adapt:
    """Embedding fit for cells never trained on (``packtwin.model.adapt``)."""

    steps: int = 300
    """maximum optimiser steps"""
    lr: float = 0.05
    """Adam learning rate"""
    tol: float = 1e-4
    """relative loss-improvement tolerance for stopping"""
    selection: Optional[dict[str, Any]] = None
    """scenarios whose measured V/I/T the fit may use (default: the training scenarios)"""


@dataclass
class Config:
    """Everything an evaluation needs; every field is a config key."""

    store: str
    """truth store (``packtwin generate``)"""
    output: str
    """output folder (metrics.zarr, report.md, plots/, runs/)"""
    train: Optional[dict[str, Any]] = None
    """training selection (``packtwin.data.splits``): every variant and seed trains on it
    (None with no ``splits``: a life-only evaluation)"""
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """held-out splits: name -> selection (cells outside ``train.cells`` get fitted embeddings)"""
    life: Optional[dict[str, Any]] = None
    """the twin over life on a store made with ``cycle_series``
    (``packtwin.eval.life_evaluate``: calibration, life splits, seeds, data_only); written to
    ``life_report.json`` and ``life_report.md``"""
    val: Optional[dict[str, Any]] = None
    """validation selection for early stopping (default: the training selection)"""
    generate: Optional[str] = None
    """generate config run with ``packtwin generate --config`` when ``store`` does not exist"""
    fit_configs: list[str] = field(default_factory=list)
    """``packtwin fit`` config files shared by every variant (same data, epochs, early stopping)"""
    fit: dict[str, Any] = field(default_factory=dict)
    """overrides of the fit configuration shared by every variant, e.g.
    ``{data: {batch_size: 4}, model: {lr: 0.003}}``"""
    variants: dict[str, list[str]] = field(default_factory=lambda: {
        "physics": ["configs/model/physics.yaml"], "data_only": ["configs/model/data_only.yaml"]})
    """variant name -> its own fit config files (the only difference between variants)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """seeds per variant"""
    checkpoints: Optional[dict[str, list[str]]] = None
    """variant -> checkpoints (one per seed, in order) to evaluate instead of training"""
    monitor: str = "val/c_s_n_rmse_pct"
    """validation metric for the best checkpoint and early stopping, the same for every variant
    (a data metric: the physics twin's val/loss also holds physics terms)"""
    patience: Optional[int] = 5
    """early-stopping patience in validation epochs (None: train every epoch)"""
    adapt: Adapt = field(default_factory=Adapt)
    baseline_init: str = "ocv"
    """baseline start: "ocv" (first voltage sample inverted on the OCV) or "fresh" """
    observers: list[str] = field(default_factory=list)
    """classical state estimators scored next to the baseline, one row each
    (``packtwin.eval.observer_predict.OBSERVERS``: "ekf", with the store's true per-cell
    parameters: the oracle-parameter setting; "ekf_identified", with each cell's parameters
    identified from its own measured V/I/T; "subspace", the Kalman filter that corrects only
    the SOC (``packtwin.physics.subspace_observer``), oracle parameters;
    "subspace_identified", that filter with identified parameters); default none"""
    observer_core: dict[str, Any] = field(default_factory=dict)
    """``CoreConfig`` overrides of the observers' reduced core
    (``packtwin.eval.observer_predict.OBSERVER_CORE``: plating, 12 particles per electrode),
    e.g. ``{n_x_n: 8, n_x_p: 8}`` (the core before stop 31, faster)"""
    observer_subspace: dict[str, Any] = field(default_factory=dict)
    """``SubspaceConfig`` overrides of the "subspace*" observers' filter
    (``packtwin.physics.subspace_observer``; its defaults include the line search), e.g.
    ``{reprior_soc: 0.1}`` or ``{line_search: false}``"""
    observer_ekf: dict[str, Any] = field(default_factory=dict)
    """``EKFConfig`` overrides of the "ekf*" observers' filter (``packtwin.physics.ekf``),
    e.g. ``{salt_neutral: false, ce_guard: 0, gate_sigma: 1e9, bounded_step: false}`` (the
    EKF before stop 27)"""
    observer_identify: dict[str, Any] = field(default_factory=dict)
    """``IdentifyConfig`` overrides of the "*_identified" observers' parameter fit
    (``packtwin.physics.identify``), e.g. ``{iterations: 10}``"""
    observer_identify_window_s: float = IDENTIFY_WINDOW_S
    """[s] the "*_identified" observers fit each cell's parameters on this much of its
    identification cycle from the cycle's (rested) start
    (``packtwin.eval.observer_identify``); the default, inf (or anything longer than the
    cycle): the whole cycle, which pins the diffusivities and exchange currents better than its
    first 30 min (1800, the default before stop 38) at ~6x the fit's cost"""
    observer_start_s: Optional[float] = None
    """[s] the ``observers`` start this far into every evaluated cycle, as on a BMS stream that
    begins mid-drive (usually under load), from the prior they use for an unknown start (that
    sample's voltage read as an OCV, 30 % SOC prior std, the loaded prior); EVERY row (twins,
    baseline, observers, PyBaMM's audit) is then scored from that time on, on the same samples.
    The twins and the baseline still read each cycle from its (rested) start, and so does
    the "*_identified" observers' parameter fit (only their filters start late). A multiple of the
    store's period inside every evaluated cycle; needs ``observers``. None: the cycle's first
    sample (a rested start)"""
    observer_prior: str = "loaded_window"
    """how the ``observers`` read their start sample (and a restart's) into a SOC prior
    (``packtwin.physics.loaded_inversion.PRIORS``): "loaded": the voltage inverted
    through the reduced core carrying the measured current after a while at it, so that a
    loaded start's IR drop and polarisation are not read as lost charge; "loaded_window"
    (default): the same, except where that loaded voltage is not monotonic in SOC (the cold
    under load, packtwin/physics/start_window.py): there the SOC whose loaded state fits the
    next 300 s of samples best (a fixed-lag choice: data after the start decide it);
    "ocv": the voltage read as an open-circuit voltage (the behaviour before both)"""
    observer_prior_offset: float = 0.0
    """a deliberate initial error: the observers' start prior (not a restart's, not a carried
    cycle's) moved by this fraction of each cell's SOC window, the other way where it would
    leave the window (``packtwin.physics.loaded_inversion.offset_stoichiometry``); 0.3: issue
    #9's "from an unknown start with a 30 % SOC error". Within [-0.5, 0.5]"""
    observer_carry: bool = True
    """the ``observers`` filter consecutive snapshot cycles of a scenario and cell as one stream:
    a cycle whose ``snapshot_cycle`` follows the previous selected one's and whose first sample
    repeats that cycle's last (V, I, T: the same instant, as the generator records them) goes
    on from that cycle's final estimate (state, covariance, biases) instead of restarting from
    a prior, as a BMS that never restarts does; other cycles (snapshots every 50 cycles, a
    split's first cycle) start from the prior. With ``observer_start_s`` only a run's first
    cycle starts late; a carried cycle is filtered AND every row scored on it from its sample 0.
    The counts go into the report (observer_carry). Default true (the stream); false: every
    cycle from a prior, as before"""
    plating_threshold: float = 0.0
    """[V] plating event where the margin is below this"""
    save_predictions: bool = False
    """also write every prediction dataset under ``output/predictions``"""
    full_predictions: bool = False
    """also write each variant's first-seed estimates of every scenario and cell to
    ``output/predictions/<variant>.zarr`` (what ``packtwin app --predictions`` shows)"""
    plots: bool = True
    resume: bool = True
    """reuse ``runs/<variant>/seed<k>/model.ckpt`` when trained with the same fit arguments"""
    note: str = ""
    """free text printed at the top of the report (e.g. "1 seed: a demo, not a result")"""


def fit_config(cfg: Config, variant: str, seed: int, run_dir: Path) -> dict:
    """The ``packtwin.train.fit`` configuration of one variant and seed.

    The variant's configs first, then the shared ``fit`` overrides, then what this evaluation
    fixes itself, so that nothing a variant says can change the data, seed, budget or selection
    criterion.
    """
    from packtwin import train

    config = train.load_config([*cfg.fit_configs, *cfg.variants[variant]], cfg.fit, {
        "seed_everything": int(seed),
        "data": {"store": cfg.store, "train": cfg.train,
                 "val": cfg.val if cfg.val is not None else cfg.train},
        "trainer": {"default_root_dir": str(run_dir), "logger": [{
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": "csv"}}]},
        "checkpoint": {"dirpath": str(run_dir / "checkpoints"), "monitor": cfg.monitor,
                       "mode": "min"},
        "prediction": {"output": str(run_dir / "predictions.zarr")}})
    if cfg.patience:
        config["trainer"]["callbacks"] = [*config["trainer"].get("callbacks", []), {
            "class_path": "lightning.pytorch.callbacks.EarlyStopping",
            "init_args": {"monitor": cfg.monitor, "mode": "min",
                          "patience": int(cfg.patience)}}]
    return config


def _fit(cfg: Config, variant: str, seed: int, run_dir: Path) -> Path:
    """Train one twin in-process; returns the evaluated checkpoint (best by ``cfg.monitor``).

    With ``resume`` a checkpoint of an earlier run is reused only if it was trained with exactly
    the same configuration (recorded in ``fit_config.json``).
    """
    from packtwin import train

    ckpt = run_dir / "model.ckpt"
    config = fit_config(cfg, variant, seed, run_dir)
    record = run_dir / "fit_config.json"
    if cfg.resume and ckpt.exists() and record.exists() and \
            json.loads(record.read_text()) == json.loads(json.dumps(config)):
        return ckpt
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.unlink(missing_ok=True)
    record.write_text(json.dumps(config, indent=1))
    shutil.copyfile(train.fit(config), ckpt)
    return ckpt


def _load(ckpt: Path):
    from packtwin.model.checkpoint import load_twin

    return load_twin(ckpt).module


def _adapt(module, ds: xr.Dataset, cfg: Config, new_cells: list[int]) -> dict:
    if not new_cells:
        return {}
    from packtwin.model.adapt import fit_new_cell_embeddings

    sel_spec = cfg.adapt.selection if cfg.adapt.selection is not None else {
        k: v for k, v in cfg.train.items() if k != "cells"}
    scen = splits.select(ds, sel_spec, name="adapt selection").scenarios
    emb, _ = fit_new_cell_embeddings(module, ds, new_cells, steps=cfg.adapt.steps,
                                     lr=cfg.adapt.lr, tol=cfg.adapt.tol,
                                     scenarios=[int(s) for s in scen])
    return {int(c): emb[i].detach() for i, c in enumerate(new_cells)}


def _score(ds: xr.Dataset, pred: xr.Dataset, cfg: Config, sei0: float, start: int = 0
           ) -> xr.Dataset:
    ds = from_sample(ds, start)
    m = metrics.compute_metrics(ds, pred, cfg.plating_threshold, sei0)
    return m.merge(audit.residual_audit(ds, pred), join="outer")


def _start(ds: xr.Dataset, cfg: Config, selections, links=None) -> int:
    """The sample every row is scored from (``observer_start_s``; 0 without it), inside every
    cycle of ``selections`` that starts from a prior (``links``: :func:`_carry_links`)."""
    if cfg.observer_start_s is None:
        return 0
    if not cfg.observers:
        raise ValueError(f"{observer_predict.START_KEY} = {cfg.observer_start_s} needs "
                         f"'observers' to start mid-log; none are configured")
    period = float(ds.attrs.get("period_s", np.nan))
    links = list(links) if links is not None else [None] * len(list(selections))
    lengths = np.concatenate([
        (ds["valid"].isel({schema.SCENARIO: s.scenarios, schema.SNAPSHOT: s.snapshots}) > 0)
        .sum(schema.TIME).values[prev < 0 if prev is not None else slice(None)].ravel()
        for s, prev in zip(selections, links)])
    return observer_predict.start_sample(period, cfg.observer_start_s, lengths[lengths > 0],
                                         source=repr(cfg.store))


def from_sample(ds: xr.Dataset, start: int | xr.DataArray) -> xr.Dataset:
    """``ds`` with every cycle's samples before ``start`` marked invalid (not scored);
    ``start`` may differ per cycle (:func:`_split_start`: dims scenario, snapshot)."""
    if isinstance(start, xr.DataArray):
        start = start.reindex_like(ds["valid"], fill_value=int(start.max())).drop_vars(
            [c for c in start.coords if c not in ds["valid"].coords], errors="ignore")
    elif not start:
        return ds
    keep = xr.DataArray(np.arange(ds.sizes[schema.TIME]), dims=schema.TIME) >= start
    return ds.assign(valid=ds["valid"].where(keep, 0).astype(ds["valid"].dtype))


def _carry_links(ds: xr.Dataset, cfg: Config, sel) -> np.ndarray | None:
    """:func:`observer_predict.carried_selection` of a split when the observers carry (None:
    every cycle starts from a prior)."""
    if not (cfg.observers and cfg.observer_carry):
        return None
    return observer_predict.carried_selection(ds, sel.scenarios, sel.cells, sel.snapshots,
                                              source=repr(cfg.store))


def _split_start(ds: xr.Dataset, sel, start: int, links: np.ndarray | None
                 ) -> int | xr.DataArray:
    """The sample each cycle of a split is scored from: ``start``, except the cycles the
    observers go on into with ``observer_carry`` (``links``, :func:`_carry_links`): from their
    sample 0, a carried estimate has no unknown start; the same for every row."""
    if not start or links is None or not (links >= 0).any():
        return start
    return xr.DataArray(np.where(links >= 0, 0, start), dims=(schema.SCENARIO, schema.SNAPSHOT),
                        coords={schema.SCENARIO: ds[schema.SCENARIO].values[sel.scenarios],
                                schema.SNAPSHOT: ds[schema.SNAPSHOT].values[sel.snapshots]})


def _stack(results: dict[tuple[str, str, int], xr.Dataset], split_names, variants, seeds
           ) -> xr.Dataset:
    """One dataset with dims (split, variant, seed, cell) from per-run metric datasets."""
    rows = []
    for (sp, var, seed), m in results.items():
        rows.append(m.expand_dims({"split": [sp], "variant": [var], "seed": [seed]}))
    out = xr.merge(rows, join="outer", compat="no_conflicts", combine_attrs="drop")
    return out.reindex(split=list(split_names), variant=list(variants), seed=list(seeds))


def _never_written(path: str) -> list[int]:
    """Scenarios of a generated store that no generation wrote (status NaN: an interrupted run);
    a failed or partial scenario was written, with its reason."""
    from packtwin.sim.generate import pending

    status = Path(path) / "status"
    if not status.exists():
        return []  # not a generated store (e.g. an ingested one): nothing to resume
    import zarr

    return pending(Path(path), int(zarr.open_array(str(status), mode="r").shape[0]), False)


def run(cfg: Config, progress: bool = True) -> Optional[xr.Dataset]:
    """Run the whole evaluation described by ``cfg``; returns the metrics dataset (None for a
    life-only evaluation)."""
    from tqdm.auto import tqdm

    if cfg.train is None and not cfg.splits and cfg.life is None:
        raise ValueError("config has neither 'train' + 'splits' (the twin's held-out splits) nor "
                         "'life' (the twin over life): nothing to evaluate")
    if cfg.splits and cfg.train is None:
        raise ValueError("config 'splits' needs 'train' (the selection every variant trains on)")
    if cfg.life is not None:
        from packtwin.eval import life_evaluate

        life_evaluate.parse(cfg.life)  # a malformed section fails before any generation
    out = Path(cfg.output)
    outputs.claim_folder(out, EVALUATION_KIND, [cfg.store, *_given_checkpoints(cfg)])
    if not Path(cfg.store).exists():
        if cfg.generate is None:
            raise store.StoreError(f"store {cfg.store!r} does not exist and no 'generate' config "
                                   f"is given to make it")
        from packtwin.sim import generate

        rc = generate.main(["--config", cfg.generate])
        if rc or not Path(cfg.store).exists():
            raise store.StoreError(f"'packtwin generate --config {cfg.generate}' (exit {rc}) did "
                                   f"not write the store {cfg.store!r} named in 'store'")
    elif cfg.generate is not None and _never_written(cfg.store):
        # An interrupted generation: resume it (finished scenarios are kept) rather than train
        # and judge on whatever scenarios happen to be there.
        from packtwin.sim import generate

        generate.main(["--config", cfg.generate])
    left = _never_written(cfg.store)
    if left:
        how = (f"'packtwin generate --config {cfg.generate}' did not finish them" if cfg.generate
               else "finish its generation with 'packtwin generate --config ...' (it resumes)")
        raise store.StoreError(f"store {cfg.store!r} is incomplete: scenarios {left} were never "
                               f"written; {how}")
    if cfg.life is not None:
        life_evaluate.run(cfg.life, cfg.store, out)
        if cfg.train is None:
            return None
    ds = store.open_store(cfg.store)
    if cfg.baseline_init not in baselines.INITS:
        raise ValueError(f"baseline_init must be one of {baselines.INITS}, got "
                         f"{cfg.baseline_init!r}")
    if not cfg.splits:
        raise ValueError("config 'splits' is empty: name at least one held-out selection")
    unknown = set(cfg.checkpoints or {}) - set(cfg.variants)
    if unknown:
        raise ValueError(f"checkpoints given for unknown variants {sorted(unknown)}; variants: "
                         f"{sorted(cfg.variants)}")
    observer_predict.check_observers(cfg.observers)
    observer_predict.check_prior(cfg.observer_prior)
    if not abs(cfg.observer_prior_offset) <= 0.5:
        raise ValueError(f"{observer_predict.PRIOR_OFFSET_KEY} must be within [-0.5, 0.5] of "
                         f"the SOC window, found {cfg.observer_prior_offset!r}")
    if not cfg.observer_identify_window_s > 0:
        raise ValueError(f"{observer_predict.IDENTIFY_WINDOW_KEY} must be a positive number of "
                         f"seconds, found {cfg.observer_identify_window_s!r}")
    taken = set(cfg.observers) & {*cfg.variants, BASELINE, PYBAMM}
    if taken or len(set(cfg.observers)) != len(cfg.observers):
        raise ValueError(f"observers {cfg.observers} repeat a name or reuse a variant, "
                         f"{BASELINE!r} or {PYBAMM!r}: {sorted(taken)}")
    if not isinstance(cfg.observer_carry, bool):
        raise ValueError(f"{observer_predict.CARRY_KEY} must be true or false, found "
                         f"{cfg.observer_carry!r}")
    if cfg.observers:  # refuse a store the observers cannot use before any training
        observer_predict.core_config(cfg.observer_core)
        observer_predict.subspace_config(cfg.observer_subspace)
        observer_predict.ekf_config(cfg.observer_ekf)
        observer_predict.identify_config(cfg.observer_identify)
        observer_predict.check_store(ds, source=repr(cfg.store), names=cfg.observers)
    if not cfg.variants and not cfg.observers:
        raise ValueError("config 'variants' is empty and no 'observers' are given: nothing to "
                         "evaluate next to the baseline")
    train_sel = splits.select(ds, cfg.train, name="train selection")
    train_cells = set(int(c) for c in train_sel.cells)
    split_sel, skipped = {}, {}
    for name, spec in cfg.splits.items():
        try:
            split_sel[name] = splits.select(ds, spec, name=f"split {name!r}")
        except splits.SelectionError as exc:
            # A held-out condition the simulator could not solve leaves its split empty: report
            # it as skipped (with the store's reason) rather than lose every other split.
            if "selects no" not in str(exc):
                raise
            skipped[name] = f"{exc}; store messages: {ds.attrs.get('messages', '')}"
    if not split_sel:
        raise splits.SelectionError(f"no split selects usable data: {skipped}")
    links = {name: _carry_links(ds, cfg, sel) for name, sel in split_sel.items()}
    # a bad start is refused before any training
    start = _start(ds, cfg, split_sel.values(), links.values())
    starts = {name: _split_start(ds, sel, start, links[name]) for name, sel in split_sel.items()}
    new_cells = sorted({int(c) for s in split_sel.values() for c in s.cells} - train_cells)
    sei0 = _initial_sei_nm(ds)
    results: dict[tuple[str, str, int], xr.Dataset] = {}
    jobs = [(v, i, s) for v in cfg.variants for i, s in enumerate(cfg.seeds)]
    bar = tqdm(total=len(jobs) * (1 + len(split_sel)) + (2 + len(cfg.observers)) * len(split_sel),
               desc="evaluate", disable=not progress, file=sys.stderr)
    ckpts: dict[str, list[str]] = {}
    restarts: dict[str, dict[str, int]] = {}
    repriors: dict[str, dict[str, int]] = {}  # subspace observers: re-priors per split
    carried: dict[str, dict[str, list[int]]] = {}  # observer -> split -> [carried, from a prior]
    for variant, i, seed in jobs:
        given = (cfg.checkpoints or {}).get(variant)
        if given:
            if i >= len(given):
                raise ValueError(f"checkpoints[{variant!r}] has {len(given)} entries, seeds has "
                                 f"{len(cfg.seeds)}: give one checkpoint per seed")
            ckpt = Path(given[i])
            if not ckpt.exists():
                raise FileNotFoundError(f"checkpoints[{variant!r}][{i}] {str(ckpt)!r} does not exist")
        else:
            bar.set_postfix_str(f"fit {variant} seed {seed}")
            ckpt = _fit(cfg, variant, seed, out / "runs" / variant / f"seed{seed}")
        ckpts.setdefault(variant, []).append(str(ckpt))
        bar.update(1)
        module = _load(ckpt)
        emb = _adapt(module, ds, cfg, new_cells)
        from packtwin.eval.predict import predict_dataset

        if cfg.full_predictions and i == 0:
            bar.set_postfix_str(f"{variant}: every scenario and cell for the app")
            _save_prediction(predict_dataset(module, ds, embeddings=emb, checkpoint=str(ckpt),
                                             truth_store=cfg.store),
                             out / "predictions" / f"{variant}.zarr", cfg.store)

        for name, sel in split_sel.items():
            bar.set_postfix_str(f"{variant} seed {seed}: {name}")
            pred = predict_dataset(module, ds, scenarios=sel.scenarios, cells=sel.cells,
                                   snapshots=sel.snapshots, embeddings=emb,
                                   checkpoint=str(ckpt), truth_store=cfg.store)
            if cfg.save_predictions:
                _save_prediction(pred, out / "predictions" / f"{variant}_seed{seed}_{name}.zarr",
                                 cfg.store)
            results[(name, variant, seed)] = _score(ds, pred, cfg, sei0, starts[name])
            bar.update(1)
    for name, sel in split_sel.items():
        bar.set_postfix_str(f"baseline: {name}")
        base = baselines.baseline_dataset(ds, train_sel.scenarios, train_sel.cells,
                                          scenarios=sel.scenarios, cells=sel.cells,
                                          init=cfg.baseline_init)
        base = base.isel({schema.SNAPSHOT: sel.snapshots})
        baseline_desc = str(base.attrs.get("description", ""))
        results[(name, BASELINE, cfg.seeds[0])] = _score(ds, base, cfg, sei0, starts[name])
        bar.update(1)
        for obs in cfg.observers:
            bar.set_postfix_str(f"{obs}: {name}")
            pred = observer_predict.observer_dataset(
                obs, ds, sel.scenarios, sel.cells, sel.snapshots, source=cfg.store,
                core=cfg.observer_core, train_scenarios=train_sel.scenarios,
                train_cells=train_sel.cells, identify=cfg.observer_identify,
                subspace=cfg.observer_subspace, ekf=cfg.observer_ekf,
                identify_window_s=cfg.observer_identify_window_s,
                prior_offset=cfg.observer_prior_offset,
                start_s=start * float(ds.attrs["period_s"]), prior=cfg.observer_prior,
                carry=cfg.observer_carry)
            if cfg.save_predictions:
                _save_prediction(pred, out / "predictions" / f"{obs}_{name}.zarr", cfg.store)
            results[(name, obs, cfg.seeds[0])] = _score(ds, pred, cfg, sei0, starts[name])
            restarts.setdefault(obs, {})[name] = int(pred.attrs.get("resets", 0))
            if "repriors" in pred.attrs:
                repriors.setdefault(obs, {})[name] = int(pred.attrs["repriors"])
            carried.setdefault(obs, {})[name] = [int(pred.attrs.get("carried_cycles", 0)),
                                                 int(pred.attrs.get("prior_starts", 0))]
            bar.update(1)
        bar.set_postfix_str(f"PyBaMM audit: {name}")
        truth_sel = ds.isel({schema.SCENARIO: sel.scenarios, schema.CELL: sel.cells,
                             schema.SNAPSHOT: sel.snapshots})
        results[(name, PYBAMM, cfg.seeds[0])] = audit.residual_audit(from_sample(ds, starts[name]),
                                                                     truth_sel)
        bar.update(1)
    bar.close()
    variants = list(cfg.variants) + [BASELINE, *cfg.observers, PYBAMM]
    result = _stack(results, list(split_sel), variants, list(cfg.seeds))
    result.attrs.update({
        "store": cfg.store, "config": json.dumps(_jsonable(cfg)),
        "checkpoints": json.dumps(ckpts), "new_cells": json.dumps(new_cells),
        "train_cells": json.dumps(sorted(train_cells)),
        "skipped_splits": json.dumps(skipped),
        "plating_threshold_V": cfg.plating_threshold, "sei_initial_nm": sei0,
        "surface_r_n": float(ds[schema.R_N].values[-1]),
        "surface_r_p": float(ds[schema.R_P].values[-1]),
        "sei_label": metrics.SIMULATED_VS_SIMULATED,
        "baseline": baseline_desc,
        "baseline_init": cfg.baseline_init,
        "observers": json.dumps({o: observer_predict.DESCRIPTIONS[o] for o in cfg.observers}),
        "observer_restarts": json.dumps(restarts),
        "observer_repriors": json.dumps(repriors),
        "observer_carry": json.dumps(carried),
        "splits_resolved": json.dumps({n: {"scenarios": s.scenarios.tolist(),
                                           "cells": s.cells.tolist(),
                                           "snapshots": s.snapshots.tolist()}
                                       for n, s in split_sel.items()}),
    })
    for name in list(result.data_vars):
        base_name = name[len("pack_"):] if name.startswith("pack_") else name
        if base_name.startswith("audit_"):
            result[name].attrs.update({"units": audit.AUDIT_UNITS[base_name[len("audit_"):]]})
        else:
            result[name].attrs.update(metrics.metric_attrs(base_name))
    write_metrics(result, out / "metrics.zarr", inputs=[cfg.store, *_given_checkpoints(cfg)])
    report.write_report(result, out, plots=cfg.plots, note=cfg.note, truth=ds)
    return result


def write_metrics(ds: xr.Dataset, path: str | Path, inputs=()) -> Path:
    """Write a metrics dataset as Zarr (string labels as variable-length strings, which zarr v3
    specifies, unlike fixed-width ones), replacing only an earlier metrics store."""
    ds = ds.assign_coords({d: np.asarray(ds[d].values, dtype=object) for d in ("split", "variant")
                           if d in ds.coords})
    outputs.guard(path, METRICS_KIND, inputs, what="metrics output")
    with outputs.replace(path, METRICS_KIND) as tmp:
        ds.to_zarr(tmp, mode="w-", **store.ZARR_KW)
    return Path(path)


def _given_checkpoints(cfg: Config) -> list[str]:
    return [c for cks in (cfg.checkpoints or {}).values() for c in cks]


def _initial_sei_nm(ds: xr.Dataset) -> float:
    """Initial SEI thickness of the store's parameter set [nm] (store attr, else OKane2022's)."""
    if "sei_initial_thickness_nm" in ds.attrs:
        return float(ds.attrs["sei_initial_thickness_nm"])
    from packtwin.physics.constants import okane2022

    return okane2022().sei.L_0 * 1e9


def _save_prediction(pred: xr.Dataset, path: Path, store_path: str) -> None:
    from packtwin.eval.predict import write_predictions

    pred = pred.copy()
    pred.attrs = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                  for k, v in pred.attrs.items()}
    write_predictions(pred, path, inputs=[store_path])


def _jsonable(cfg: Config) -> dict:
    return json.loads(json.dumps(asdict(cfg), default=str))


def parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    p = ArgumentParser(prog="packtwin evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--config", action=ActionConfigFile, help="experiment YAML "
                   "(configs/experiments/*.yaml)")
    p.add_class_arguments(Config, nested_key=None, as_group=False)
    p.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    return p


def parse(argv: list[str]) -> tuple[Config, bool]:
    p = parser()
    ns = p.parse_args(argv)
    init = p.instantiate(ns) if hasattr(p, "instantiate") else p.instantiate_classes(ns)
    d = {k: v for k, v in vars(init).items() if k in Config.__dataclass_fields__}
    adapt = d.get("adapt")
    if isinstance(adapt, dict):
        d["adapt"] = Adapt(**adapt)
    elif adapt is not None and not isinstance(adapt, Adapt):
        d["adapt"] = Adapt(**vars(adapt))
    return Config(**d), bool(init.progress)


def main(argv: list[str] | None = None) -> int:
    """``packtwin evaluate --config configs/experiments/<name>.yaml [--key value ...]``."""
    cfg, progress = parse(list(sys.argv[1:] if argv is None else argv))
    result = run(cfg, progress=progress)
    if cfg.life is not None:
        from packtwin.eval.life_evaluate import REPORT_JSON, REPORT_MD

        print(f"wrote {Path(cfg.output) / REPORT_MD} and {Path(cfg.output) / REPORT_JSON}")
    if result is not None:
        print(f"wrote {Path(cfg.output) / 'report.md'} and {Path(cfg.output) / 'metrics.zarr'} "
              f"({', '.join(f'{k}={v}' for k, v in result.sizes.items())})")
    return 0
