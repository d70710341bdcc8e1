"""A trivial estimator a battery engineer would start from, as a prediction dataset.

Particles: uniform profiles (no radial or through-thickness gradient) whose concentration follows
coulomb counting of the *measured* cell current from an OCV-consistent start:

- ``init="ocv"`` (default): the first valid voltage sample of each cycle is taken as the open-circuit
  voltage and inverted along the fresh cell's stoichiometry line (lithium inventory of the parameter
  set: c_n eps_n L_n + c_p eps_p L_p constant), i.e. solve ocp_p(sto_p) - ocp_n(sto_n) = V0. Under
  load V0 includes the overpotential, and ageing moves the line: both are errors of this baseline.
- ``init="fresh"``: the parameter set's initial concentrations (a fresh, fully charged cell).

Then c(t) = c(0) + delta c(Q(t)) with :func:`packtwin.physics.conservation.expected_concentration_change`
(no side reactions), SOC from the negative stoichiometry between the fresh cell's 0 % / 100 %
stoichiometries (where the OCV meets the voltage limits on the line), plating margin = negative
OCP at the counted stoichiometry (no overpotential), voltage = OCV at the counted state.

SEI: per cell, L_end(n) = a + b sqrt(n) fitted by least squares to the training scenarios'
``sei_thickness_end`` summaries; a cell without training cycles gets the fit pooled over the
training cells. Within a snapshot cycle n the cycle count advances linearly in time from n - 1 to n.
Per-cell parameters: the mean of the training cells' truth values (no identification at all).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr

from packtwin import quantities, schema
from packtwin.eval import audit
from packtwin.physics import conservation, ocp, ocv_inversion
from packtwin.physics.constants import CellConstants, okane2022
from packtwin.physics.ocv_inversion import StoichiometryLine

INITS = ("ocv", "fresh")


def invert_ocv(voltage, line: StoichiometryLine, iters: int = 60) -> np.ndarray:
    """numpy view of :func:`packtwin.physics.ocv_inversion.invert_ocv` (the one implementation)."""
    v = torch.as_tensor(np.asarray(voltage, dtype=np.float64))
    return ocv_inversion.invert_ocv(v, line, iters=iters).numpy()


def fit_sqrt_growth(n: np.ndarray, L: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) of L = a + b sqrt(n) over the finite points; NaNs if fewer than 2."""
    ok = np.isfinite(n) & np.isfinite(L)
    if ok.sum() < 2 or np.ptp(n[ok]) == 0:
        return float("nan"), float("nan")
    A = np.stack([np.ones(ok.sum()), np.sqrt(n[ok])], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, L[ok], rcond=None)
    return float(a), float(b)


def sei_fits(truth: xr.Dataset, train_scenarios: Sequence[int], train_cells: Sequence[int]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cell (a, b) of the sqrt fit over the training scenarios, and which cells were pooled.

    Cells outside ``train_cells`` (or with too few points) get the fit pooled over training cells.
    """
    L = np.asarray(truth["sei_thickness_end"].isel({schema.SCENARIO: list(train_scenarios)})
                   .transpose(schema.CELL, schema.SCENARIO, schema.CYCLE).values, float)
    cyc = np.asarray(truth[schema.CYCLE].values, float)
    n_grid = np.broadcast_to(cyc, L.shape[1:])
    n_cells = schema.n_cells(truth)
    a, b = np.full(n_cells, np.nan), np.full(n_cells, np.nan)
    for c in train_cells:
        a[c], b[c] = fit_sqrt_growth(n_grid.ravel(), L[c].ravel())
    tc = list(train_cells)
    pa, pb = fit_sqrt_growth(np.broadcast_to(cyc, L[tc].shape).ravel(), L[tc].ravel())
    pooled = ~np.isfinite(a) | ~np.isfinite(b)
    a[pooled], b[pooled] = pa, pb
    if not np.isfinite(pa):
        raise ValueError("baseline SEI fit: the training scenarios hold fewer than 2 finite "
                         "'sei_thickness_end' values over distinct cycles for the training cells")
    return a, b, pooled


def baseline_dataset(truth: xr.Dataset, train_scenarios: Sequence[int], train_cells: Sequence[int],
                     scenarios: Sequence[int] | None = None, cells: Sequence[int] | None = None,
                     init: str = "ocv", constants: CellConstants | None = None) -> xr.Dataset:
    """Trivial estimates for the chosen scenarios and cells (positional indices; all if None).

    Args:
        truth: truth store; only measured signals of the estimated cycles are read, plus the
            training scenarios' SEI summaries and the training cells' parameters.
        train_scenarios, train_cells: positional indices of the training data.
        init: ``"ocv"`` or ``"fresh"`` (see the module docstring).
        constants: cell constants (default OKane2022).
    """
    if init not in INITS:
        raise ValueError(f"baseline init must be one of {INITS}, got {init!r}")
    const = constants or okane2022()
    line = StoichiometryLine.of(const)
    sc = np.arange(truth.sizes[schema.SCENARIO]) if scenarios is None else np.asarray(scenarios)
    ce = np.arange(schema.n_cells(truth)) if cells is None else np.asarray(cells)
    t = truth.isel({schema.SCENARIO: sc, schema.CELL: ce})
    order = (schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME)
    valid = np.asarray(t["valid"].values > 0)  # [s, k, time]
    valid4 = np.broadcast_to(valid[:, None], (len(sc), len(ce)) + valid.shape[1:])
    volt = np.asarray(t["voltage"].transpose(*order).values, float)
    cur = np.nan_to_num(np.asarray(t["current"].transpose(*order).values, float))
    time = np.asarray(truth[schema.TIME].values, float)
    first = np.argmax(valid4, axis=-1)[..., None]  # first valid sample of each cycle
    if init == "ocv":
        sto_n0 = invert_ocv(np.take_along_axis(volt, first, -1), line)
    else:
        sto_n0 = np.full(first.shape, const.neg.c_init / const.neg.c_max)
    sto_p0 = line.sto_p(sto_n0)
    # Charge passed since the first valid sample [C], with the stores' current convention
    # (current[k] is the mean current of the period ending at sample k).
    q = audit.charge_passed(np.where(valid4, cur, 0.0), time)
    dn = conservation.expected_concentration_change(torch.as_tensor(q), const.neg).numpy()
    dp = conservation.expected_concentration_change(torch.as_tensor(q), const.pos).numpy()
    c_n = sto_n0 * const.neg.c_max + dn
    c_p = sto_p0 * const.pos.c_max + dp
    theta_n, theta_p = c_n / const.neg.c_max, c_p / const.pos.c_max
    s0, s100 = ocv_inversion.soc_window(const, line)
    u_n = ocp.ocp_negative(torch.as_tensor(theta_n)).numpy()
    u_p = ocp.ocp_positive(torch.as_tensor(theta_p)).numpy()
    # SEI: cycle count advancing linearly through each snapshot cycle's valid samples.
    a, b, pooled = sei_fits(truth, train_scenarios, train_cells)
    n_valid = np.maximum(valid.sum(-1, keepdims=True), 1)  # [s, k, 1]
    frac = np.clip((np.cumsum(valid, -1) - 1) / np.maximum(n_valid - 1, 1), 0, 1)
    snap_cyc = np.asarray(t["snapshot_cycle"].values, float)
    n_eff = snap_cyc[None, :, None] - 1.0 + frac  # [s, k, time]
    sei = a[ce][None, :, None, None] + b[ce][None, :, None, None] * np.sqrt(
        np.clip(n_eff, 0, None))[:, None]
    nan = np.where(valid4, 1.0, np.nan)
    fields = {"sei_thickness_avg": sei * nan, "plating_margin": u_n * nan,
              "soc": (theta_n - s0) / (s100 - s0) * nan, "voltage": (u_p - u_n) * nan}
    data = {name: xr.Variable(order, val.astype("float32"), schema.var_attrs(name))
            for name, val in fields.items()}
    for e, cfield in zip(quantities.ELECTRODES, (c_n, c_p)):
        xd, rd = e.x_dim, e.r_dim
        arr = np.broadcast_to((cfield * nan)[..., None, None],
                              cfield.shape + (t.sizes[xd], t.sizes[rd]))
        c_max = e.c_max_of(truth) or e.constants(const).c_max
        attrs = dict(schema.var_attrs(e.variable), c_max=float(c_max))
        data[e.variable] = xr.Variable(order + (xd, rd), arr.astype("float32"), attrs)
    train_vals = {}
    for key in schema.param_keys_in(truth):
        vals = np.asarray(truth[schema.param_var(key)].values, float)[list(train_cells)]
        data[schema.param_var(key)] = xr.Variable(
            (schema.CELL,), np.full(len(ce), np.nanmean(vals)), schema.var_attrs(schema.param_var(key)))
        train_vals[key] = float(np.nanmean(vals))
    coords = {k: v for k, v in t.coords.items()}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({
        "schema_version": schema.SCHEMA_VERSION, "variant": "baseline",
        "baseline_init": init,
        "description": ("coulomb counting of the measured current, uniform particles, start "
                        + ("from the first valid voltage sample inverted on the fresh cell's OCV"
                           if init == "ocv" else "at the parameter set's initial concentrations")
                        + "; SEI: per-cell sqrt(cycle) fit on training summaries; parameters: "
                          "training-cell mean"),
        "sei_pooled_cells": [int(c) for c in ce if pooled[c]],
        "soc_window_sto_n": [s0, s100],
    })
    return ds
