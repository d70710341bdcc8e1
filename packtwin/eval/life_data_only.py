"""The data-only life estimator: the physics life twin's own per-cycle inputs mapped to SEI, lost
lithium and capacity by a learned regressor, with no growth law and no Arrhenius factor.

The ablation of :mod:`packtwin.physics.life_pack`: the same measured signals per cycle
(:func:`packtwin.physics.life_pack.cell_life`: the cell's temperature samples, its counted
discharge capacity, optionally its discharge-start resistance) and the cycle index become
features (:func:`features`); a small MLP (torch) is fitted to the truth of the calibration runs'
cycles 2..upto only (:func:`fit`), then applied to every cycle of every run (:func:`predict`).

Features of cycle c use the measurements of cycles <= c for temperature and of cycles < c for
capacity and resistance: the capacity of cycle c is predicted before it is counted, as the
physics twin's is (its SEI and lithium also read cycle c's own capacity: this estimator is one
cycle behind there, a negligible lag over hundreds of cycles). Stochastic (initial weights): run
it for several seeds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from packtwin import schema

TARGETS = ("sei", "lli", "capacity")  # nm, %, A h: the keys of packtwin.eval.life.run_metrics
FEATURES = ("cycle", "cycle_mean_T_K", "cum_time_h", "cum_T_time_Kh", "last_capacity_ah",
            "capacity_fade_ah", "last_resistance_ohm")
# Smallest scale of each feature: a temperature the calibration holds constant (one ambient) is
# scaled by 1 K, not by float noise (which would make any other temperature astronomically far).
FEATURE_FLOOR = np.array([1.0, 1.0, 1e-6, 1.0, 1e-6, 1e-6, 1e-6])
REF_CYCLE = 2  # cycle 1 starts from the parameter set's initial state, not a CV-full cell


@dataclass(frozen=True)
class DataOnlyConfig:
    """The regressor and its fit (the ``data_only`` keys of the ``life`` config section)."""

    hidden: int = 32
    """units per hidden layer"""
    layers: int = 2
    """hidden layers"""
    steps: int = 1500
    """full-batch Adam steps"""
    lr: float = 3e-3
    """Adam learning rate"""
    weight_decay: float = 1e-4
    """Adam weight decay"""


def _last_before(values: np.ndarray) -> np.ndarray:
    """For each cycle, the latest finite value of an earlier cycle (NaN where none)."""
    out = np.full(values.shape, np.nan)
    last = np.nan
    for k in range(len(values)):
        out[k] = last
        if np.isfinite(values[k]):
            last = values[k]
    return out


def features(one, use_resistance: bool = False) -> np.ndarray:
    """(cycles, features) of one run as :func:`packtwin.physics.life_pack.cell_life` returns it
    (measured signals only). Unused or unknown features (resistance off, no earlier capacity)
    are 0 after the fit's standardisation: see :func:`_standardise`."""
    from packtwin.physics.life_state import cycle_duration

    sel = {schema.SCENARIO: 0, schema.CELL: 0}
    T = one["life_temperature"].isel(sel).values.astype(float)
    period = float(one.attrs["period_s"])
    dur_h = cycle_duration(T, period) / 3600.0
    with warnings.catch_warnings():  # a cycle not run: all NaN, mean NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_T = np.nanmean(T, axis=-1)
    q = one["capacity"].isel(sel).values.astype(float)
    last_q = _last_before(q)
    q_ref = q[REF_CYCLE - 1] if len(q) >= REF_CYCLE else np.nan
    fade = np.where(one[schema.CYCLE].values > REF_CYCLE, q_ref - last_q, 0.0)
    res = (_last_before(one["life_resistance"].isel(sel).values.astype(float))
           if use_resistance else np.full(len(q), np.nan))
    cols = [one[schema.CYCLE].values.astype(float), mean_T, np.cumsum(dur_h),
            np.cumsum(np.nan_to_num(mean_T) * dur_h), last_q, fade, res]
    return np.stack(cols, axis=1)


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.nan_to_num((x - mean) / std, nan=0.0)


@dataclass
class DataOnlyModel:
    """A fitted regressor with its standardisation."""

    net: object
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    use_resistance: bool
    rows: int


def fit(runs: Sequence[tuple], upto: int, seed: int, config: DataOnlyConfig = DataOnlyConfig(),
        use_resistance: bool = False) -> DataOnlyModel:
    """Fit on the calibration runs: ``runs`` is a list of (measured one-cell run, truth dict of
    :func:`packtwin.eval.life.run_truth`); only their cycles REF_CYCLE..upto enter (truth of
    later cycles is never read)."""
    import torch

    X, Y = [], []
    for one, truth in runs:
        cyc = one[schema.CYCLE].values
        keep = (cyc >= REF_CYCLE) & (cyc <= upto)
        X.append(features(one, use_resistance)[keep])
        Y.append(np.stack([np.asarray(truth[k], float)[:len(cyc)][keep] for k in
                           ("sei_thickness_end", "lli", "capacity")], axis=1))
    X, Y = np.concatenate(X), np.concatenate(Y)
    if not len(X):
        raise ValueError(f"data-only life estimator: no calibration cycles {REF_CYCLE}..{upto}")
    with warnings.catch_warnings():  # an unused feature (resistance off) is all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        x_mean, x_std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
        y_mean, y_std = np.nanmean(Y, axis=0), np.nanstd(Y, axis=0)
    x_mean, y_mean = np.nan_to_num(x_mean), np.nan_to_num(y_mean)
    x_std = np.maximum(np.where(np.isfinite(x_std), x_std, 1.0), FEATURE_FLOOR)
    y_std = np.where(np.isfinite(y_std) & (y_std > 0), y_std, 1.0)
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's RNG state untouched
        torch.manual_seed(int(seed))
        layers, width = [], X.shape[1]
        for _ in range(config.layers):
            layers += [torch.nn.Linear(width, config.hidden), torch.nn.ReLU()]
            width = config.hidden
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, len(TARGETS))).double()
    xt = torch.as_tensor(_standardise(X, x_mean, x_std))
    yn = (Y - y_mean) / y_std
    mask = torch.as_tensor(np.isfinite(yn))
    yt = torch.as_tensor(np.nan_to_num(yn))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a net this small: threads only spin against each other
    try:
        for _ in range(config.steps):
            opt.zero_grad()
            loss = (((net(xt) - yt) ** 2) * mask).sum() / mask.sum()  # check-ups: no capacity
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return DataOnlyModel(net.eval(), x_mean, x_std, y_mean, y_std, use_resistance, len(X))


def predict(model: DataOnlyModel, one) -> dict:
    """Estimates of every cycle of one measured run, in :func:`packtwin.eval.life.run_metrics`'
    keys (SEI nm, lost lithium %, capacity A h)."""
    import torch

    x = _standardise(features(one, model.use_resistance), model.x_mean, model.x_std)
    with torch.no_grad():
        y = model.net(torch.as_tensor(x)).numpy() * model.y_std + model.y_mean
    return {k: y[:, i] for i, k in enumerate(TARGETS)}
