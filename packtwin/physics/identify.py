"""Per-cell parameters of the reduced core identified from measured V/I/T alone.

A real pack has no truth table: each cell's parameters must come from its own log. This fits, for
a batch of cells at once, the parameters of :class:`CoreParams` that the voltage sees and that do
not trade off one for one against another, by gradient descent (L-BFGS, torch autograd) through
the differentiable :class:`ReducedCore` itself:

* ``c_n_init`` (with the design's ``c_p_init``: the lithium inventory, i.e. where the two
  electrodes' stoichiometry windows sit against each other), ``eps_s_n`` and ``eps_s_p`` (each
  electrode's capacity);
* ``D_n``, ``D_p`` (diffusivities at T_ref: Arrhenius prefactors), ``k_n``, ``k_p`` (exchange
  current prefactors), ``R_contact``.

The particle radii stay nominal: the core only sees D / R^2 in the particles and eps / R in the
reaction area, so a radius error is absorbed by D and k (their errors are therefore reported both
raw and as the time constant R^2 / D, :func:`parameter_errors`).

Parameterisation: each parameter is ``nominal * exp(prior_std * z)`` with ``z`` a standard
normal prior (``prior_std``: the generator's cell-to-cell spreads, ``packtwin.sim.config``), so the
objective is a maximum-a-posteriori fit,
``0.5 sum_k ((V_model - V) / sigma_V)^2 + 0.5 |z|^2`` per cell: well conditioned (every
coordinate is O(1)) and pulled toward nominal where the log says nothing about a parameter.

Start: the first step's state is a rest state on the cell's inventory line, its negative
stoichiometry fitted jointly (initialised from the first voltage on the nominal core,
:func:`start_from_voltage`; ``start_std`` its prior std). A log whose first sample is under load
starts with the particles' load profile missing: give ``skip_s`` to leave its first samples out
of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import Tensor

from packtwin.errors import PacktwinError
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CellDesign, CoreParams, okane2022_design
from packtwin.physics.observer_stream import cell_lines
from packtwin.physics.ocv_inversion import invert_ocv

IDENTIFIED = ("c_n_init", "eps_s_n", "eps_s_p", "D_n", "D_p", "k_n", "k_p", "R_contact")
# Relative std of the generator's default cell-to-cell draws (packtwin.sim.config._default_varied);
# the prior's std of each parameter's log.
PRIOR_STD = {"c_n_init": 0.01, "eps_s_n": 0.01, "eps_s_p": 0.01, "D_n": 0.10, "D_p": 0.10,
             "k_n": 0.10, "k_p": 0.10, "R_contact": 0.10}


class IdentifyError(PacktwinError, ValueError):
    """The log cannot be used for identification; the message names the problem."""


@dataclass(frozen=True)
class IdentifyConfig:
    names: tuple[str, ...] = IDENTIFIED
    prior_std: dict[str, float] = field(default_factory=lambda: dict(PRIOR_STD))
    voltage_noise_v: float = 0.01  # measurement noise std [V] (the data term's scale)
    start_std: float = 0.05  # prior std of the start's negative stoichiometry [1]
    # L-BFGS iterations (each up to ~1.25 forward + backward passes). 40 since stop 39: 20
    # stopped short of the optimum on the whole identification cycle (a point half-way to
    # the truth table scores lower, scripts/diag_identify_truth.py); on development draws 13-14
    # 40 took the subspace filter's split means from 0.74-0.99 to 0.53-0.67 % of c_max
    # (negative) at about stop 38's cost, the gradient now being implicit
    iterations: int = 40
    min_samples: int = 20  # fewer fitted samples than this: refused
    skip_s: float = 0.0  # leading seconds left out of the fit (a start under load)
    # Differentiate the core's Newton solves implicitly (CoreConfig.implicit_grad): the same
    # objective values, gradients equal to the unrolled iteration's where it has converged,
    # about half the backward pass's cost (scripts/bench_identify.py)
    implicit_grad: bool = True


class IdentifyResult(NamedTuple):
    params: CoreParams  # identified, detached
    z: Tensor  # [B, P] whitened log-factors of ``names`` (0 = nominal)
    start_sto: Tensor  # [B] fitted negative stoichiometry at the start
    voltage_rmse: Tensor  # [B] fitted model voltage against the measured [V]
    loss_history: list[float]
    names: tuple[str, ...]


def _check_log(V: Tensor, I: Tensor, T: Tensor, period: float, cfg: IdentifyConfig,
               n_cells: int, I_end: Tensor) -> int:
    """The number of leading samples to skip; raises on a log that cannot be used."""
    for name, x in (("voltage", V), ("current", I), ("temperature", T), ("current_end", I_end)):
        if x.dim() != 2 or x.shape[0] != n_cells:
            raise IdentifyError(f"identify: {name!r} must be [cells={n_cells}, samples], found "
                                f"shape {tuple(x.shape)}")
        bad = ~torch.isfinite(x)
        if bad.any():
            b, k = (int(i) for i in torch.nonzero(bad)[0])
            raise IdentifyError(f"identify: {int(bad.sum())} NaN/inf {name!r} values (first: "
                                f"cell {b}, sample {k}); identification needs a gap-free window "
                                f"of V, I and T: cut the log at the gap")
    if V.shape != I.shape or V.shape != T.shape or V.shape != I_end.shape:
        raise IdentifyError(f"identify: voltage, current, temperature and current_end shapes "
                            f"differ: {tuple(V.shape)}, {tuple(I.shape)}, {tuple(T.shape)}, "
                            f"{tuple(I_end.shape)}")
    if not period > 0:
        raise IdentifyError(f"identify: the sample period must be > 0 s, got {period}")
    skip = int(round(cfg.skip_s / period))
    if V.shape[1] - skip < cfg.min_samples:
        raise IdentifyError(f"identify: the window is too short: {V.shape[1]} samples of "
                            f"{period:g} s, {skip} skipped, {V.shape[1] - skip} fitted; at least "
                            f"{cfg.min_samples} needed (IdentifyConfig.min_samples)")
    unknown = sorted(set(cfg.names) - set(PRIOR_STD))
    if unknown:
        raise IdentifyError(f"identify: names {list(cfg.names)}: unknown {unknown}; choose "
                            f"some of {list(IDENTIFIED)} (or none: the start alone)")
    return skip


def _params_of(nominal: CoreParams, z: Tensor, cfg: IdentifyConfig) -> CoreParams:
    vals = {n: getattr(nominal, n) for n in nominal.names()}
    for i, n in enumerate(cfg.names):
        vals[n] = vals[n] * torch.exp(cfg.prior_std[n] * z[:, i])
    return CoreParams(**vals)


def _start(core: ReducedCore, sto_n: Tensor):
    c = core.design.constants
    sto_p = cell_lines(core).sto_p(sto_n)
    return core.initial_state(sto_n * c.neg.c_max, sto_p * c.pos.c_max)


def model_voltage(params: CoreParams, start_sto: Tensor, I: Tensor, T: Tensor, period: float,
                  core_config: CoreConfig = CoreConfig(), design: CellDesign | None = None,
                  I_end: Tensor | None = None) -> Tensor:
    """The core's voltage [B, K] over a log from a rest state at negative stoichiometry
    ``start_sto`` [B] on each cell's inventory line (I, T [B, K]: the value over the step ending
    at each sample; ``I_end``: the current at the sample's instant, where V is read, None: I)."""
    core = ReducedCore(params, core_config, design)
    _, out = core.simulate(_start(core, start_sto), I, T, period, I_end)
    return out["voltage"]


@torch.no_grad()
def start_from_voltage(core: ReducedCore, V0: Tensor, I0: Tensor, T0: Tensor,
                       iterations: int = 30) -> Tensor:
    """[B] negative stoichiometry of uniform particles on each cell's inventory line whose
    voltage at current I0 and temperature T0 is V0 (bisection through :meth:`ReducedCore.measure`;
    at rest: the OCV inversion). Under load it includes the overpotentials, which the OCV
    inversion alone would read as a SOC error."""
    line = cell_lines(core)
    lo0 = invert_ocv(torch.full_like(V0, -10.0), line)  # the line's ends
    hi0 = invert_ocv(torch.full_like(V0, 10.0), line)
    lo, hi = lo0.clone(), hi0.clone()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        above = core.measure(_start(core, mid), I0, T0).voltage > V0
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


def identify(nominal: CoreParams, V: Tensor, I: Tensor, T: Tensor, period: float,
             config: IdentifyConfig = IdentifyConfig(),
             core_config: CoreConfig = CoreConfig(),
             design: CellDesign | None = None, I_end: Tensor | None = None) -> IdentifyResult:
    """Fit each cell's parameters (``config.names``) to its measured voltage (with none
    named: the start's stoichiometry alone, at the given parameters).

    Args:
        nominal: [B] parameters to start from and regularise toward (their values of the
            parameters not identified are kept).
        V, I, T: [B, K] measured voltage [V], current [A] (discharge > 0) and temperature [K];
            I and T the value over the step ending at each sample, V at its end. The state
            before the first step is taken at rest.
        period: sample period [s].
        I_end: [B, K] the current at each sample's instant [A] (a store's ``current_end``),
            where the model's voltage is read; None: I. Where a cut-off falls inside a
            period the mean current and the voltage read after the switch disagree by up to
            the whole overpotential (~0.2 V after a 1C discharge's cut-off): one such sample
            would outweigh the rest of the cycle in the fit.

    Raises:
        IdentifyError: NaN/inf in V/I/T, mismatched shapes, too few samples, unknown names, or
            a fit that ends non-finite.
    """
    design = design or okane2022_design()
    dtype = nominal.c_n_init.dtype
    V, I, T = (torch.as_tensor(x, dtype=dtype) for x in (V, I, T))
    I_end = I if I_end is None else torch.as_tensor(I_end, dtype=dtype)
    B = nominal.n_cells
    skip = _check_log(V, I, T, period, config, B, I_end)
    nominal = CoreParams(**{n: getattr(nominal, n).detach() for n in nominal.names()})
    sto0 = start_from_voltage(ReducedCore(nominal, core_config, design), V[:, 0], I_end[:, 0],
                              T[:, 0])
    z = torch.zeros(B, len(config.names), dtype=dtype, requires_grad=True)
    zs = torch.zeros(B, dtype=dtype, requires_grad=True)
    opt = torch.optim.LBFGS([z, zs], lr=1.0, max_iter=config.iterations,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20)
    sigma = config.voltage_noise_v
    history: list[float] = []
    fit_core = replace(core_config, implicit_grad=config.implicit_grad)

    def objective() -> Tensor:
        opt.zero_grad()
        params = _params_of(nominal, z, config)
        v = model_voltage(params, sto0 + config.start_std * zs, I, T, period, fit_core, design,
                          I_end)
        resid = ((v - V) / sigma)[:, skip:]
        loss = 0.5 * (resid ** 2).sum() + 0.5 * (z ** 2).sum() + 0.5 * (zs ** 2).sum()
        if not torch.isfinite(loss):  # a line-search probe too far: reject it, keep going
            return torch.tensor(float("inf"), dtype=dtype, requires_grad=True)
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    if config.iterations > 0:
        opt.step(objective)
    with torch.no_grad():
        params = _params_of(nominal, z.detach(), config)
        start = sto0 + config.start_std * zs.detach()
        v = model_voltage(params, start, I, T, period, core_config, design, I_end)
        rmse = ((v - V)[:, skip:] ** 2).mean(1).sqrt()
    if not (torch.isfinite(z).all() and torch.isfinite(rmse).all()):
        raise IdentifyError("identify: the fit ended non-finite (the core's voltage could not be "
                            "computed at the fitted parameters); check the log's units (V, A, K)")
    return IdentifyResult(params, z.detach(), start, rmse, history, tuple(config.names))


def parameter_errors(identified: CoreParams, truth: CoreParams,
                     names: tuple[str, ...] = IDENTIFIED) -> dict[str, Tensor]:
    """Relative errors (identified / true - 1) [B] of ``names``, plus those of the particles'
    time constants R^2 / D (``tau_n``, ``tau_p``: what the core's diffusion sees) and of the
    reaction area times exchange current eps k / R (``ak_n``, ``ak_p``)."""
    out = {n: getattr(identified, n) / getattr(truth, n) - 1.0 for n in names}
    for e in ("n", "p"):
        def tau(p, e=e):
            return getattr(p, f"R_{e}") ** 2 / getattr(p, f"D_{e}")

        def ak(p, e=e):
            return getattr(p, f"eps_s_{e}") * getattr(p, f"k_{e}") / getattr(p, f"R_{e}")

        out[f"tau_{e}"] = tau(identified) / tau(truth) - 1.0
        out[f"ak_{e}"] = ak(identified) / ak(truth) - 1.0
    return out
