"""Named loss terms of the twin, each weighted from config and logged by name.

Data terms need hidden truth (training stores); physics terms need only the measured I, V, T and
the network's own output, so they also apply to unlabelled sequences (new-cell fitting).
All terms are dimensionless mean squares over valid samples, scaled so that a typical error of
the size worth caring about is ~1 (1 % of c_max, one training standard deviation, the 1C rate).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from packtwin.physics import constants as pc
from packtwin.quantities import ELECTRODES, SCALAR_TARGETS, Features
from packtwin.physics.conservation import average_concentration, mean_interfacial_current
from packtwin.physics.diffusion import arrhenius, fick_residual_normalised, surface_flux_residual
from packtwin.physics.sei import sei_residual

PHYSICS_TERMS = ("fick_n", "fick_p", "flux_n", "flux_p", "bv_voltage", "sei_law",
                 "conservation_n", "conservation_p")
# The voltage's normalisation follows the scalar targets' in the network's target buffers.
VOLTAGE_STD = len(SCALAR_TARGETS)
# Defaults: data terms 1; physics terms chosen so each is ~1 for a plausible but wrong profile.
# The SPM voltage cannot match a DFN cell's exactly (no electrolyte polarisation), hence 0.1.
# Conservation is built into the output of the physics twin (it stays ~0), so it is a diagnostic.
DEFAULT_WEIGHTS: dict[str, float] = {
    "c_s_n": 1.0, "c_s_p": 1.0, "sei": 1.0, "plating": 1.0, "soc": 1.0, "voltage": 1.0,
    "params": 0.1, "fick_n": 0.1, "fick_p": 0.1, "flux_n": 0.1, "flux_p": 0.1,
    "bv_voltage": 0.1, "sei_law": 0.0, "conservation_n": 0.0, "conservation_p": 0.0,
}


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over entries where mask (broadcast to x's leading dims) is 1."""
    m = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)).expand_as(x)
    # where(), not x * m: padding may hold inf/NaN that must not leak into the mean.
    return torch.where(m > 0, x, torch.zeros_like(x)).sum() / m.sum().clamp_min(1.0)


def data_terms(net, out: Mapping[str, Tensor], batch: Mapping[str, Tensor],
               param_table: Tensor | None = None) -> dict[str, Tensor]:
    """Supervised terms against the store's hidden truth."""
    valid = batch["valid"]
    terms: dict[str, Tensor] = {}
    for e in ELECTRODES:
        target = batch[e.variable] / net.c_max[e.index]
        terms[e.variable] = masked_mean(((out[e.theta] - target) * 100.0) ** 2, valid)
    # Loss-term name of each scalar estimate (its order is the network's target buffers').
    for k, (name, term) in enumerate(zip(SCALAR_TARGETS, ("sei", "plating", "soc"))):
        terms[term] = masked_mean(((out[name] - batch[name]) / net.target_std[k]) ** 2, valid)
    terms.update(voltage_term(net, out, batch))
    if param_table is not None and param_table.shape[1] > 0:
        rows = param_table[batch["cell"]]
        known = torch.isfinite(rows).all(-1)  # cells without a truth row are not supervised
        if known.any():
            z_true = net.normalise_params(rows[known])
            terms["params"] = ((out["params_z"][known] - z_true) ** 2).mean()
    return terms


def voltage_term(net, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Reconstruction of the measured terminal voltage (needs no hidden truth)."""
    v = Features.unpack(batch["features"]).voltage
    return {"voltage": masked_mean(((out["voltage"] - v) / net.target_std[VOLTAGE_STD]) ** 2,
                                   batch["valid"])}


def _time_derivative(theta: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
    """Backward difference along time (dim 1) and the mask of steps where it is defined."""
    d = torch.zeros_like(theta)
    safe = torch.where(dt > 0, dt, torch.ones_like(dt))
    shape = (1, -1) + (1,) * (theta.ndim - 2)
    d[:, 1:] = (theta[:, 1:] - theta[:, :-1]) / safe[1:].reshape(shape)
    ok = torch.zeros_like(dt)
    ok[1:] = (dt[1:] > 0).to(dt)
    return d, ok


def physics_terms(net, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Residuals of the particle diffusion, surface flux, SPM voltage, SEI law and conservation.

    ``out`` must come from ``net(..., derivs=True)``.
    """
    valid = batch["valid"]
    cst = net.constants
    T = out["temperature"]
    I = out["current"]
    dt = out["dt"]
    pair_valid = valid.clone()
    pair_valid[:, 1:] = valid[:, 1:] * valid[:, :-1]
    pair_valid[:, 0] = 0.0
    terms: dict[str, Tensor] = {}
    f = Features.unpack(batch["features"])
    q_c = f.charge_passed - f.charge_passed[:, :1]  # [C] since the window's first sample
    for e in ELECTRODES:
        el = e.constants(cst)
        k = e.key
        c_max = net.c_max[e.index]
        rho = out[f"rho_{k}"]  # stored nodes, plus the surface rho = 1 if they stop short
        D = arrhenius(el.D_ref, el.Ea_D, T, el.T_ref)[..., None, None]  # [B, T, 1, 1]
        dtheta_dt, ok = _time_derivative(out[f"{e.theta}_ext"], dt)
        res = fick_residual_normalised(dtheta_dt, out[f"dtheta_{k}_drho"],
                                       out[f"d2theta_{k}_drho2"], rho, D, el.R)
        # Scale: the electrode's mean stoichiometry rate at 1C.
        rate_1c = 3600.0 / (pc.F * el.eps_s * el.L * el.A * float(c_max)) * \
            cst.nominal_capacity_ah / 3600.0
        terms[f"fick_{k}"] = masked_mean((res / rate_1c) ** 2, pair_valid * ok[None, :])
        j = mean_interfacial_current(I, el)
        grad_surf = out[f"dtheta_{k}_drho"][..., -1].mean(-1) * c_max  # x-averaged [mol/m3]
        flux = surface_flux_residual(grad_surf, D[..., 0, 0], j, el.R)
        j_1c = float(mean_interfacial_current(torch.tensor(cst.nominal_capacity_ah), el).abs())
        terms[f"flux_{k}"] = masked_mean((flux * pc.F / j_1c) ** 2, valid)
        _, r_stored = net.nodes(e)
        avg = average_concentration(out[e.theta], r_stored).mean(-1) * c_max  # [B, T]
        from packtwin.physics.conservation import lithium_balance_residual

        bal = lithium_balance_residual(avg, avg[:, :1], q_c, el) / c_max
        terms[f"conservation_{k}"] = masked_mean((bal * 100.0) ** 2, valid)
    if "voltage_spm" in out:
        terms["bv_voltage"] = masked_mean(
            ((out["voltage_spm"] - f.voltage) / net.target_std[VOLTAGE_STD]) ** 2, valid)
    L = (out["sei_thickness_avg"] * 1e-9).clamp_min(1e-10)
    dL_dt, ok = _time_derivative(L, dt)
    res = sei_residual(dL_dt, L, T, cst)
    g_ref = cst.sei.V_bar * cst.sei.D_sol * cst.sei.c_sol / cst.sei.z / cst.sei.L_0
    terms["sei_law"] = masked_mean((res / g_ref) ** 2, pair_valid * ok[None, :])
    return terms


def total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Weighted sum of the terms (terms without a weight count 0)."""
    out = None
    for name, value in terms.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        out = w * value if out is None else out + w * value
    if out is None:
        raise ValueError(f"no loss term has a non-zero weight; terms: {sorted(terms)}")
    return out
