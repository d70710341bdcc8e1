"""Residual audit: how well an estimate satisfies the cell's physics, next to PyBaMM's own output.

The same residual functions of :mod:`packtwin.physics` are applied to the twin's estimated fields
and to the truth store (PyBaMM's DFN output), with finite differences on the stored grids. PyBaMM's
residual is not zero (its own finite-volume grid, float32 storage, side reactions), so it is the
floor to read the twin's against. Per-cell parameters (diffusivity, radius, active fraction,
solvent diffusivity) are the generator's truth where the store has them, else OKane2022's; the
same values serve both rows, so the comparison is about the fields only.

Residuals (per cell and pooled over the pack, valid samples only):

- ``fick_n_rel`` / ``fick_p_rel`` [1]: RMS of dc/dt - D/R^2 lap(c) over the RMS of its two terms
  (interior radial nodes; the surface row is a boundary condition, not Fick's law).
- ``li_balance_n_pct`` / ``li_balance_p_pct`` [% of c_max]: RMS of the mean particle
  concentration's change less the change the measured charge implies, side reactions not
  subtracted (PyBaMM's negative electrode drifts by what SEI and plating take).
- ``sei_rel`` [1]: mean |dL/dt - growth law| over mean |growth law| (solvent-diffusion limited).
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from packtwin import quantities, schema
from packtwin.data.windows import charge_passed  # the stores' current convention, one place
from packtwin.physics import conservation, derivatives, diffusion, sei
from packtwin.physics.constants import CellConstants, okane2022

AUDIT_UNITS = {"fick_n_rel": "1", "fick_p_rel": "1", "li_balance_n_pct": "% of c_max",
               "li_balance_p_pct": "% of c_max", "sei_rel": "1"}


def _param(truth: xr.Dataset, key: str, default: float, cells) -> np.ndarray:
    name = schema.param_var(key)
    if name in truth:
        return np.asarray(truth[name].sel({schema.CELL: cells}).values, float)
    return np.full(len(cells), float(default))


def _fields(ds: xr.Dataset, name: str, dims: tuple[str, ...]) -> np.ndarray:
    """[cell, scenario, snapshot, ..] float64 with padding set to NaN."""
    da = ds[name].where(ds["valid"] > 0)
    order = (schema.CELL, schema.SCENARIO, schema.SNAPSHOT) + dims
    return np.asarray(da.transpose(*order).values, dtype=np.float64)


def _pool(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-cell and pooled ratio of sums (cells on axis 0), NaN where the denominator is 0."""
    n, d = np.nansum(num.reshape(len(num), -1), 1), np.nansum(den.reshape(len(den), -1), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)
        pack = float(n.sum() / d.sum()) if d.sum() > 0 else float("nan")
    return per, pack


def residual_audit(truth: xr.Dataset, est: xr.Dataset, constants: CellConstants | None = None
                   ) -> xr.Dataset:
    """Physics residuals of ``est`` (a prediction dataset, or the truth itself) on its samples.

    Args:
        truth: the truth store (grids, measured current/temperature, valid mask, parameters).
        est: estimates with the truth's dims for the evaluated scenarios/cells/snapshots.
        constants: cell constants (default OKane2022) for what the store does not vary per cell.

    Returns:
        Dataset: per-cell variables (dim ``cell``) and ``pack_*`` scalars (see module doc).
    """
    const = constants or okane2022()
    sel = {d: est[d].values for d in (schema.SCENARIO, schema.CELL, schema.SNAPSHOT)}
    t = truth.sel(sel)
    cells = sel[schema.CELL]
    time = torch.tensor(np.array(truth[schema.TIME].values, dtype=float))
    T = torch.as_tensor(_fields(t, "temperature", (schema.TIME,)))  # [c, s, k, time]
    cur = _fields(t, "current", (schema.TIME,))
    q = charge_passed(cur, np.asarray(truth[schema.TIME].values, float))
    per: dict[str, np.ndarray] = {}
    pack: dict[str, float] = {}
    for electrode in quantities.ELECTRODES:
        name, side = electrode.variable, electrode.key
        x_dim, r_dim = electrode.x_dim, electrode.r_dim
        if name not in est:
            continue
        el = electrode.constants(const)
        c_max = float(truth[name].attrs.get("c_max", el.c_max))
        e = est[[name]].assign(valid=t["valid"])
        c = torch.as_tensor(_fields(e, name, (x_dim, schema.TIME, r_dim)))  # [c,s,k,x,time,r]
        rho = torch.tensor(np.array(truth[r_dim].values, dtype=float))
        D_ref = _param(truth, electrode.param("diffusivity"), el.D_ref, cells)
        R = _param(truth, electrode.param("radius"), el.R, cells)
        eps = _param(truth, electrode.param("am_fraction"), el.eps_s, cells)
        bshape = (-1, 1, 1, 1, 1, 1)
        D = diffusion.arrhenius(torch.as_tensor(D_ref).reshape(bshape), el.Ea_D,
                                T[:, :, :, None, :, None], el.T_ref)
        d = derivatives.fd_derivs(c, time, rho)
        res = diffusion.fick_residual_normalised(d.dc_dt, d.dc_dr, d.d2c_dr2, rho, D,
                                                 torch.as_tensor(R).reshape(bshape))
        scale = diffusion.diffusion_term_scale(d.dc_dt, d.dc_dr, d.d2c_dr2, rho,
                                               D / torch.as_tensor(R).reshape(bshape) ** 2)
        inner = slice(0, rho.numel() - 1)
        res2 = np.nan_to_num(res[..., inner].numpy() ** 2)
        scl2 = np.nan_to_num(scale[..., inner].numpy() ** 2)
        p_cell, p_pack = _pool(res2, scl2)
        per[f"fick_{side}_rel"], pack[f"fick_{side}_rel"] = np.sqrt(p_cell), float(np.sqrt(p_pack))
        # Lithium balance on the x-averaged, volume-averaged concentration.
        c_avg = conservation.average_concentration(c, rho).mean(dim=3).numpy()  # [c,s,k,time]
        first = np.argmax(np.isfinite(c_avg), axis=-1)[..., None]
        c0 = np.take_along_axis(c_avg, first, -1)
        q0 = np.take_along_axis(q, first, -1)
        expected = conservation.expected_concentration_change(
            torch.as_tensor(q - q0), el, eps_s=torch.as_tensor(eps).reshape(-1, 1, 1, 1)).numpy()
        bal = (c_avg - c0 - expected) / c_max * 100.0
        ok = np.isfinite(bal)
        b_cell, b_pack = _pool(np.where(ok, bal ** 2, 0), ok.astype(float))
        per[f"li_balance_{side}_pct"] = np.sqrt(b_cell)
        pack[f"li_balance_{side}_pct"] = float(np.sqrt(b_pack))
    if "sei_thickness_avg" in est:
        e = est[["sei_thickness_avg"]].assign(valid=t["valid"])
        L = _fields(e, "sei_thickness_avg", (schema.TIME,)) * 1e-9  # [m]
        dL = np.gradient(L, np.asarray(truth[schema.TIME].values, float), axis=-1)
        D_sol = _param(truth, "sei_solvent_diffusivity", const.sei.D_sol, cells).reshape(-1, 1, 1, 1)
        rate = sei.sei_growth_rate(torch.as_tensor(L), T, const, torch.as_tensor(D_sol)).numpy()
        res = dL - rate
        ok = np.isfinite(res) & np.isfinite(rate)
        s_cell, s_pack = _pool(np.where(ok, np.abs(res), 0), np.where(ok, np.abs(rate), 0))
        per["sei_rel"], pack["sei_rel"] = s_cell, s_pack
    data = {}
    for k, v in per.items():
        attrs = {"units": AUDIT_UNITS[k], "long_name": f"residual audit {k}"}
        data[f"audit_{k}"] = xr.DataArray(v, dims=(schema.CELL,), coords={schema.CELL: cells},
                                          attrs=attrs)
        data[f"pack_audit_{k}"] = xr.DataArray(pack[k], attrs=attrs)
    return xr.Dataset(data)
