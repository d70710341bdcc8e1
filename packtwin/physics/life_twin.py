"""The life estimator on life data: measured signals in, per-cycle estimates out (xarray).

Reads from a :func:`packtwin.sim.life_reference.run_life` Dataset only what a cycler measures:
``life_temperature`` (the growth law's driver) and the per-cycle discharge ``capacity`` (a
cycler's own per-step coulomb count). Truth variables (``lli``, ``sei_thickness_end``) are read
only by :func:`calibrate`, on the calibration runs and cycles it is given. ``life_resistance`` (the
voltage step at each discharge's start over its current, logged at the step change) measures the
SEI film.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from packtwin import schema
from packtwin.physics.life_state import (AH_PER_MOL, LifeModel, charge_transfer_factor,
                                         cycle_duration, cycle_exposure, estimate, life_model)
from packtwin.physics.lli import plated_mol


def _one_cell(ds):
    if ds.sizes.get(schema.SCENARIO, 1) != 1 or ds.sizes.get(schema.CELL, 1) != 1:
        raise ValueError(f"life data must hold one scenario and one cell, found sizes "
                         f"{dict(ds.sizes)}")
    missing = [v for v in ("life_temperature", "capacity") if v not in ds.variables]
    if missing:
        raise ValueError(f"life data lacks {missing} (expected run_life output)")
    return ds.isel({schema.SCENARIO: 0, schema.CELL: 0})


def exposure_of(ds) -> tuple[np.ndarray, np.ndarray]:
    """Per-cycle growth-law exposure g_c and cycle length [s] from a one-cell run's measured
    temperature."""
    one = _one_cell(ds)
    if one["life_temperature"].attrs.get("units") != "K":
        raise ValueError(f"life_temperature has units {one['life_temperature'].attrs.get('units')!r}, "
                         f"expected 'K'")
    T, period = one["life_temperature"].values, float(ds.attrs["period_s"])
    return cycle_exposure(T, period), cycle_duration(T, period)


def step_temperature(ds) -> np.ndarray:
    """Each cycle's coolest measured temperature [K]: the rested cell when its discharge starts."""
    return np.nanmin(_one_cell(ds)["life_temperature"].values, axis=-1)


def track(ds, model: LifeModel, update_until: int | None = None):
    """Estimates for every cycle of a one-cell run as a Dataset on (scenario, cell, cycle)."""
    import xarray as xr

    one = _one_cell(ds)
    g, d = exposure_of(ds)
    res = one["life_resistance"].values if "life_resistance" in one.variables else None
    n_ck = one["checkup_lithium"].values if "checkup_lithium" in one.variables else None
    pulse = (one["checkup_pulse_resistance"].values
             if "checkup_pulse_resistance" in one.variables else None)
    est = estimate(g, d, one["capacity"].values, model, resistance_ohm=res,
                   step_temperature_k=step_temperature(ds), update_until=update_until,
                   checkup_lithium_mol=n_ck, pulse_resistance_ohm=pulse)
    out = xr.Dataset({
        name: (schema.SUMMARY_DIMS, np.asarray(val, dtype=float)[None, None, :])
        for name, val in (("sei_thickness_est", est.sei_nm), ("lli_est", est.lli_pct),
                          ("capacity_est", est.capacity_ah),
                          ("sei_diffusivity_est", est.D))},
        coords={d: ds[d] for d in (schema.SCENARIO, schema.CELL, schema.CYCLE)})
    out.attrs["update_until"] = -1 if update_until is None else int(update_until)
    return schema.apply_attrs(out)


def fit_rate(ds, upto_cycle: int, L_0: float) -> float:
    """A calibration run's own SEI solvent diffusivity D [m2/s] from its truth SEI of cycles
    <= upto_cycle: least squares through the origin of L^2 - L_0^2 on the cumulative exposure
    (the growth law integrated over the measured temperature, :func:`exposure_of`)."""
    one = _one_cell(ds)
    if "sei_thickness_end" not in one.variables:
        raise ValueError("fit_rate: the calibration run lacks the truth 'sei_thickness_end' (nm)")
    L = one["sei_thickness_end"].values[:upto_cycle] * 1e-9
    g, _ = exposure_of(ds)
    G = np.cumsum(g)[:len(L)]
    ok = np.isfinite(L) & np.isfinite(G)
    if ok.sum() < 2:
        raise ValueError(f"fit_rate: fewer than 2 cycles with truth SEI in cycles <= {upto_cycle}")
    y = L[ok] ** 2 - L_0 ** 2
    D = float(G[ok] @ y / (G[ok] @ G[ok]))
    if not D > 0:
        raise ValueError(f"fit_rate: the truth SEI of cycles <= {upto_cycle} does not grow "
                         f"(fitted D = {D:g} m2/s)")
    return D


def calibrate(runs: Sequence, model: LifeModel | None = None, upto_cycle: int = 100,
              ref_cycle: int = 2, plated_apart: bool = False) -> LifeModel:
    """Fit beta (capacity per lithium), the dead-lithium prior and the measurement noise on the
    calibration runs' cycles ref_cycle..upto_cycle, from their truth ``lli`` and SEI.

    ``plated_apart``: calibrated on the lithium lost to SEI and dead lithium only, each run's
    LLI less its true lithium still plated (``plated_lithium_end``, required then)
    (:func:`packtwin.physics.lli.plated_mol`): for a twin whose lost lithium gets the plated
    lithium from its own plating estimate (:func:`packtwin.eval.life.twin_estimates` with
    ``plating``), which the capacity fade it is corrected by hardly sees (reversibly plated
    lithium strips back in the discharge).

    beta: least squares through the origin of the capacity fade since the reference cycle on
    the true lithium lost (in A h); xi: least squares of the resistance rise the film
    (``model.kappa``, physical) does not explain on the Arrhenius-weighted true lithium lost. psi prior: the mean and spread (at least half the mean) of
    each run's fit of the lithium the SEI does not explain on int L_0 / L dt (true L). Noise:
    the fade's RMS residual, in mol (floored at 1e-7 mol). With ``model.lithium_from`` "checkup"
    (the runs then carry ``checkup_lithium``), also the check-up lithium's noise: the RMS of its
    changes since each run's first check-up against the truth's (floored at 0.002 LLI points).
    """
    model = model or life_model()
    fades, losses, psis, rises, grown, ck_err, lost = [], [], [], [], [], [], []
    r = ref_cycle - 1
    for ds in runs:
        one = _one_cell(ds)
        q = one["capacity"].values[:upto_cycle]
        n = one["lli"].values[:upto_cycle] / 100.0 * model.n_li0
        if plated_apart:  # the twin adds its own plated estimate
            if "plated_lithium_end" not in one.variables:
                raise ValueError("calibrate(plated_apart=True): a calibration run lacks the truth "
                                 "'plated_lithium_end' (mol/m3) it subtracts from 'lli'")
            n = n - plated_mol(one["plated_lithium_end"].values[:upto_cycle])
        L = one["sei_thickness_end"].values[:upto_cycle] * 1e-9
        _, d = exposure_of(ds)
        fades.append(q[r] - q[r + 1:])
        if "life_resistance" in one.variables:
            res = one["life_resistance"].values[:upto_cycle]
            ct = charge_transfer_factor(step_temperature(ds)[:upto_cycle], model)
            rises.append(res[r + 1:] - res[r])
            grown.append(np.stack([L[r + 1:] - L[r], -(ct[r + 1:] * n[r + 1:] - ct[r] * n[r])],
                                  axis=1))
        losses.append(AH_PER_MOL * (n[r + 1:] - n[r]))
        lost.append(100.0 * n / model.n_li0)
        if "checkup_lithium" in one.variables:
            ck_err.append(_checkup_residuals(one["checkup_lithium"].values[:upto_cycle], n))
        unexplained = n - model.gamma * (L - model.L_0)
        L_mid = 0.5 * (np.concatenate([[model.L_0], L[:-1]]) + L)
        U = np.cumsum(d[:len(L)] * model.L_0 / L_mid)
        du, dn = U[r:] - U[r], unexplained[r:] - unexplained[r]
        psis.append(float(du @ dn / (du @ du)))
    x, y = np.concatenate(losses), np.concatenate(fades)
    ok = np.isfinite(x) & np.isfinite(y)  # cycles without a capacity (check-ups) are left out
    x, y = x[ok], y[ok]
    if x.size == 0 or not np.any(x):
        raise ValueError(f"calibrate: no lithium loss in the calibration cycles "
                         f"{ref_cycle}..{upto_cycle} of {len(runs)} runs")
    beta = float(x @ y / (x @ x))
    noise = float(np.sqrt(np.mean((y - beta * x) ** 2)) / (beta * AH_PER_MOL))
    psi_mean = float(np.mean(psis))
    psi_std = max(float(np.std(psis)), 0.5 * abs(psi_mean))
    changes = {}
    if rises:
        # kappa stays the film's own rho / (a L A): with one temperature the film and the
        # charge-transfer terms are nearly collinear, so only xi is fitted, on what is left.
        X, yr_ = np.concatenate(grown), np.concatenate(rises)
        ok = np.isfinite(yr_) & np.isfinite(X).all(axis=1)
        X, yr_ = X[ok], yr_[ok]
        left = yr_ - model.kappa * X[:, 0]
        xi = float(X[:, 1] @ left / (X[:, 1] @ X[:, 1]))
        changes = dict(xi=xi, noise_ohm=max(float(np.sqrt(np.mean((left - xi * X[:, 1]) ** 2))),
                                            1e-7))
    if model.lithium_from == "checkup":
        err = np.concatenate(ck_err) if ck_err else np.empty(0)
        if err.size == 0:
            raise ValueError(f"calibrate: lithium_from='checkup' but no calibration run has "
                             f"two check-ups read in cycles <= {upto_cycle}")
        # floored at 0.002 LLI points: a few check-ups per run are too few to trust less
        changes["noise_checkup_mol"] = max(float(np.sqrt(np.mean(err ** 2))),
                                           2e-5 * model.n_li0)
    fitted = dataclasses.replace(model, beta=beta, noise_mol=max(noise, 1e-7),
                                 psi_prior=psi_mean, psi_prior_std=psi_std, **changes)
    return _choose_walk(fitted, runs, upto_cycle, lost)


def _checkup_residuals(n_ck: np.ndarray, n_true: np.ndarray) -> np.ndarray:
    """Check-up lithium changes since the first check-up read, less the true ones [mol]: check-up
    k reads the state at cycle k-1's end (0-based indices; n_true: lost lithium per cycle)."""
    read = np.flatnonzero(np.isfinite(n_ck))
    if read.size < 2:
        return np.empty(0)
    before = np.concatenate([[0.0], n_true])
    c0, later = read[0], read[1:]
    return (n_ck[c0] - n_ck[later]) - (before[later] - before[c0])


WALKS = (0.0, 0.005, 0.02, 0.05)  # psi random walk per cycle, as fractions of its prior mean


def _choose_walk(model: LifeModel, runs: Sequence, upto_cycle: int,
                 lost_pct: Sequence[np.ndarray]) -> LifeModel:
    """The psi random walk (of :data:`WALKS`) with the smallest SEI error on the calibration
    runs' own cycles <= upto_cycle; with ``rate_from_fade`` off, the smallest error of the
    capacity predicted before each cycle's own is read (the SEI does not depend on the walk then:
    the fade moves psi alone, and every walk would tie); with the lithium from check-ups, the
    smallest error of the lost lithium (``lost_pct``: each run's truth as calibrated on, [%])."""
    def error(m):
        errs = []
        for ds, truth_lost in zip(runs, lost_pct):
            est = track(ds.isel({schema.CYCLE: slice(0, upto_cycle)}), m)
            one = _one_cell(ds)
            if m.lithium_from == "checkup":
                # the lithium itself, against its truth as calibrate read it
                e = est["lli_est"].values.ravel() - truth_lost
            elif m.rate_from_fade:
                e = est["sei_thickness_est"].values.ravel() - one["sei_thickness_end"].values[
                    :upto_cycle]
            else:
                e = est["capacity_est"].values.ravel() - one["capacity"].values[:upto_cycle]
            errs.append(np.abs(e[np.isfinite(e)]))
        return float(np.mean(np.concatenate(errs)))

    options = [dataclasses.replace(model, psi_walk=w * abs(model.psi_prior)) for w in WALKS]
    return min(options, key=error)
