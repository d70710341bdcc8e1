"""A tiny, PyBaMM-free store that follows the schema, for fast tests of data, model, app and eval.

The fields are shaped like a real cell's (particle lithium follows the charge passed, a parabolic
radial profile whose depth scales with current, SEI growing with the square root of cycle count)
but they are *not* a battery model: anything physical is tested on PyBaMM stores instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from packtwin import schema
from packtwin.data import store

C_MAX_N, C_MAX_P = 33133.0, 63104.0  # OKane2022 maximum concentrations [mol/m3]
Q_NOM = 5.0  # nominal capacity [A.h]


def _x_grid(points: tuple[int, int, int] | None) -> dict:
    if points is None:
        return {"x_n": np.linspace(0, 85e-6, 5), "x_p": np.linspace(97e-6, 173e-6, 5),
                "x": np.linspace(0, 173e-6, 13)}
    n, s, p = points
    x_n, x_p = np.linspace(0, 85e-6, n), np.linspace(97e-6, 173e-6, p)
    return {"x_n": x_n, "x_p": x_p,
            "x": np.concatenate([x_n, np.linspace(85e-6, 97e-6, s + 2)[1:-1], x_p])}


def make_store(path: str | Path, n_series: int = 2, n_parallel: int = 2, n_time: int = 48,
               n_snapshots: int = 2, n_cycles: int = 4, seed: int = 0,
               scenarios: list[dict] | None = None,
               x_points: tuple[int, int, int] | None = None) -> xr.Dataset:
    """``x_points``: (x_n, x_s, x_p) points of the store's x grid (default 5, 5 and 13 in all)."""
    rng = np.random.default_rng(seed)
    scenarios = scenarios or [
        dict(ambient_temperature=t, charge_c_rate=c, discharge_c_rate=c, protocol=p)
        for t, c, p in [(10.0, 1.0, "cccv"), (25.0, 1.0, "cccv"), (25.0, 2.0, "pulse"),
                        (40.0, 1.0, "cccv")]]
    keys = ["neg_c_init", "neg_diffusivity", "pos_diffusivity", "sei_solvent_diffusivity"]
    grid = schema.Grid(
        scenarios=scenarios, n_series=n_series, n_parallel=n_parallel,
        snapshot_cycles=list(range(1, n_cycles + 1, max(1, n_cycles // n_snapshots)))[:n_snapshots],
        n_cycles=n_cycles, n_time=n_time, period_s=3600.0 / (n_time / 2.2), **_x_grid(x_points),
        r_n=np.linspace(0, 1, 6), r_p=np.linspace(0, 1, 6), param_keys=keys)
    attrs = {"pybamm_version": "synthetic", "parameter_set": "synthetic", "model": "synthetic",
             "model_options": {}, "seed": seed, "generator_config": {"synthetic": True},
             "nominal_capacity_ah": Q_NOM}
    ds = schema.template(grid, attrs=attrs).compute().copy(deep=True)  # own, writable arrays
    n_sc, n_cells, n_snap = len(scenarios), grid.n_cells, len(grid.snapshot_cycles)
    t = ds[schema.TIME].values
    rel = 1 + 0.02 * rng.standard_normal((n_cells, len(keys)))
    for i, k in enumerate(keys):
        nominal = {"neg_c_init": 29866.0, "neg_diffusivity": 3.3e-14, "pos_diffusivity": 4e-15,
                   "sei_solvent_diffusivity": 2.5e-22}[k]
        ds[schema.param_var(k)].values[:] = nominal * rel[:, i]
    rn = ds[schema.R_N].values
    for s, sc in enumerate(scenarios):
        crate = sc["discharge_c_rate"]
        n_valid = min(n_time, int(np.ceil(2 * 3600 / crate / grid.period_s)))
        half = n_valid // 2
        i_prof = np.zeros(n_time)
        i_prof[:half] = crate * Q_NOM
        i_prof[half:n_valid] = -crate * Q_NOM
        if sc["protocol"] == "pulse":
            i_prof[:n_valid] *= 1 + 0.5 * np.sign(np.sin(np.arange(n_valid) * 0.9))
        q = np.clip(np.cumsum(i_prof) * grid.period_s / 3600.0, 0, 0.95 * Q_NOM)  # A.h discharged
        for snap in range(n_snap):
            valid = np.arange(n_time) < n_valid
            ds["valid"].values[s, snap] = valid.astype("uint8")
            for c in range(n_cells):
                share = rel[c, 0]
                theta_n = 0.9 * share - 0.75 * q / Q_NOM
                theta_p = 0.27 + 0.7 * q / Q_NOM
                depth = 0.02 * i_prof / Q_NOM
                c_n = C_MAX_N * (theta_n[:, None] - depth[:, None] * (rn[None, :] ** 2 - 0.6))
                c_p = C_MAX_P * (theta_p[:, None] + depth[:, None] * (rn[None, :] ** 2 - 0.6))
                v = (4.1 - 0.9 * (theta_p - 0.27) - 0.3 * (0.9 - theta_n)
                     - 0.02 * i_prof * (1 + 0.01 * (25 - sc["ambient_temperature"])))
                sei = 5.0 + 2.0 * np.sqrt(grid.snapshot_cycles[snap] + t / 7200.0) * rel[c, 3]
                fields = {
                    "voltage": v, "current": i_prof / n_parallel,
                    "current_end": i_prof / n_parallel,  # piecewise constant on the grid
                    "temperature": 273.15 + sc["ambient_temperature"] + 0.5 * np.abs(i_prof),
                    "sei_thickness_avg": sei, "plated_lithium": 0.0 * t,
                    "plating_margin": 0.1 - 0.01 * np.clip(-i_prof, 0, None), "soc": 1 - q / Q_NOM,
                }
                for name, val in fields.items():
                    ds[name].values[s, c, snap] = np.where(valid, val, np.nan)
                ds["c_s_n"].values[s, c, snap] = np.where(valid[:, None, None], c_n[:, None, :], np.nan)
                ds["c_s_p"].values[s, c, snap] = np.where(valid[:, None, None], c_p[:, None, :], np.nan)
                ds["c_e"].values[s, c, snap] = np.where(valid[:, None], 1000.0, np.nan)
                ds["sei_thickness"].values[s, c, snap] = np.where(valid[:, None], sei[:, None], np.nan)
            ds["pack_current"].values[s, snap] = np.where(valid, i_prof, np.nan)
            ds["pack_voltage"].values[s, snap] = ds["voltage"].values[s, ::n_parallel, snap].sum(0)
        cyc = ds[schema.CYCLE].values
        for c in range(n_cells):
            ds["capacity"].values[s, c] = Q_NOM * rel[c, 0] * (1 - 0.001 * cyc)
            ds["lli"].values[s, c] = 0.1 * cyc
            ds["sei_thickness_end"].values[s, c] = 5.0 + 2.0 * np.sqrt(cyc) * rel[c, 3]
            ds["plated_lithium_end"].values[s, c] = 0.0
            ds["temperature_max"].values[s, c] = 273.15 + sc["ambient_temperature"] + 3
        ds["status"].values[s] = schema.STATUS_OK
        ds["cycles_done"].values[s] = n_cycles
    ds["c_s_n"].attrs["c_max"] = C_MAX_N
    ds["c_s_p"].attrs["c_max"] = C_MAX_P
    ds = ds.chunk({schema.SCENARIO: 1, schema.CELL: 1})
    store.create_store(path, ds)
    ds.to_zarr(path, mode="w", encoding=store.encoding_for(ds), **store.ZARR_KW)
    return store.open_store(path)
