"""A learned voltage closure: the reduced core's model-form voltage error as a function of its own
state, added to its terminal voltage in the subspace filter's measurement model.

Why: with each cell's true parameters, 12 particles and plating, the core still misses the DFN's
voltage by 5-20 mV where the electrolyte polarises (3C, the cold): through-thickness and radial
resolution, the lumped thermal model's gradients, the plated lithium's distribution. The filter
spends that error on the SOC (or, the line search, leaves it in the innovation). The error is a
smooth function of what the core already carries (its surface stoichiometries, the electrolyte's
polarisation, current, temperature), so a small network read from those, fitted once on
development draws of the DFN, takes it up; lithium is untouched (the closure enters the voltage
only), and the filter's Jacobian sees the closure through the same finite differences as the core.

The features are dimensionless and physical (:func:`closure_features`), so the closure does not
depend on the cell count, the sampling period or the pack: any core with the same particle
counts reads it. It is fitted on the core's own open-loop trajectories from the DFN's true state
at each cycle's start (:mod:`packtwin.eval.closure_data`), the states a filter that tracks the SOC
sees, and is bounded (:data:`MAX_CLOSURE_V`) so that a state outside what it was fitted on costs
at most that much voltage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from packtwin.physics.core import CoreOutputs, ReducedCore

FEATURES = ("c_rate", "temperature", "sto_n", "sto_p", "surf_n_sep", "surf_n_cc", "surf_p_sep",
            "surf_p_cc", "ln_ce_n_cc", "ln_ce_p_cc", "plating_margin")
NOMINAL_CAPACITY_AH = 5.0  # OKane2022 (LG M50): the C-rate's scale
# the closure's output is bounded to this [V]: a state unlike its training costs at most this
MAX_CLOSURE_V = 0.05
FORMAT = "packtwin-voltage-closure-1"


def closure_features(core: ReducedCore, out: CoreOutputs, c_e: Tensor, I: Tensor, T: Tensor
                     ) -> Tensor:
    """[B, len(FEATURES)] from the core's outputs ``out`` at a state with electrolyte ``c_e``
    [B, X], current I [B] [A] (discharge > 0) and temperature T [B] [K]: C-rate, temperature
    [(T - 298.15 K) / 10 K], electrode-mean and end particles' surface stoichiometries, the
    electrolyte's log at both current collectors relative to its rest value, and the negative
    electrode's phi_s - phi_e at the separator [V] (plating's driver)."""
    c = core.design.constants
    c0 = core.design.c_e0
    cols = [I / NOMINAL_CAPACITY_AH, (T - 298.15) / 10.0,
            out.c_n_avg / c.neg.c_max, out.c_p_avg / c.pos.c_max,
            out.c_n_surf[:, -1] / c.neg.c_max, out.c_n_surf[:, 0] / c.neg.c_max,
            out.c_p_surf[:, 0] / c.pos.c_max, out.c_p_surf[:, -1] / c.pos.c_max,
            torch.log(c_e[:, 0].clamp_min(1.0) / c0), torch.log(c_e[:, -1].clamp_min(1.0) / c0),
            out.plating_margin]
    return torch.stack([t.to(c_e.dtype) for t in cols], 1)


@dataclass
class ClosureInfo:
    """What a closure was fitted on (kept with its weights)."""

    n_x_n: int
    n_x_p: int
    plating: bool
    stores: list[str] = field(default_factory=list)
    samples: int = 0
    train_rmse_mv: float = float("nan")  # the core's error before -> after, on the fit samples
    train_rmse_before_mv: float = float("nan")
    val_rmse_mv: float = float("nan")  # on the validation stores
    val_rmse_before_mv: float = float("nan")


class VoltageClosure(nn.Module):
    """dV [V] = MAX_CLOSURE_V tanh(MLP(standardised features) / MAX_CLOSURE_V)."""

    def __init__(self, hidden: int = 32, info: ClosureInfo | None = None):
        super().__init__()
        n = len(FEATURES)
        self.net = nn.Sequential(nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n, dtype=torch.float64))
        self.hidden = hidden
        self.info = info
        self.double()

    def forward(self, features: Tensor) -> Tensor:
        z = (features.to(self.mean.dtype) - self.mean) / self.std
        raw = self.net(z)[..., 0] * 0.01  # the network's unit is 10 mV
        return MAX_CLOSURE_V * torch.tanh(raw / MAX_CLOSURE_V)

    def check_core(self, core: ReducedCore, source: str = "voltage closure") -> None:
        """Refuse a core whose particle counts or plating differ from the fit's: the features'
        end particles and surface values mean other things there."""
        i, c = self.info, core.config
        if i is None:
            return
        if (i.n_x_n, i.n_x_p, i.plating) != (c.n_x_n, c.n_x_p, c.plating):
            raise ValueError(f"{source}: fitted on a core with n_x_n={i.n_x_n}, n_x_p={i.n_x_p}, "
                             f"plating={i.plating}; this core has n_x_n={c.n_x_n}, "
                             f"n_x_p={c.n_x_p}, plating={c.plating}")

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "features": list(FEATURES), "hidden": self.hidden,
                    "info": None if self.info is None else asdict(self.info),
                    "state_dict": self.state_dict()}, path)


def load_closure(path: str | Path) -> VoltageClosure:
    """A closure saved by :meth:`VoltageClosure.save`; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"voltage closure {path}: no such file (fit one with "
                                f"scripts/fit_voltage_closure.py)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"voltage closure {path}: not a {FORMAT} file")
    if blob["features"] != list(FEATURES):
        raise ValueError(f"voltage closure {path}: features {blob['features']}, this version "
                         f"reads {list(FEATURES)}")
    info = None if blob["info"] is None else ClosureInfo(**blob["info"])
    closure = VoltageClosure(blob["hidden"], info)
    closure.load_state_dict(blob["state_dict"])
    closure.eval()
    return closure


def fit_closure(features: Tensor, residual: Tensor, info: ClosureInfo, hidden: int = 32,
                steps: int = 3000, lr: float = 3e-3, weight_decay: float = 1e-5,
                huber_v: float = 0.01, seed: int = 0,
                val: tuple[Tensor, Tensor] | None = None) -> VoltageClosure:
    """Least squares (Huber beyond ``huber_v``: a drained electrolyte's hundreds of mV must not
    set the fit) of ``residual`` [N] (measured minus core voltage [V]) on ``features`` [N, F],
    full batch with Adam; ``val``: (features, residual) the returned network is chosen on (the
    step with the lowest validation RMSE, checked every 50 steps)."""
    torch.manual_seed(seed)
    model = VoltageClosure(hidden, info)
    x = features.to(torch.float64)
    y = residual.to(torch.float64)
    model.mean.copy_(x.mean(0))
    model.std.copy_(x.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.HuberLoss(delta=huber_v)
    best, best_state = float("inf"), None
    for step in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        if val is not None and (step % 50 == 49 or step == steps - 1):
            with torch.no_grad():
                r = float(((model(val[0]) - val[1]) ** 2).mean().sqrt())
            if r < best:
                best, best_state = r, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        info.samples = int(x.shape[0])
        info.train_rmse_before_mv = 1e3 * float((y ** 2).mean().sqrt())
        info.train_rmse_mv = 1e3 * float(((model(x) - y) ** 2).mean().sqrt())
        if val is not None:
            info.val_rmse_before_mv = 1e3 * float((val[1] ** 2).mean().sqrt())
            info.val_rmse_mv = 1e3 * float(((model(val[0]) - val[1]) ** 2).mean().sqrt())
    return model


def info_json(closure: VoltageClosure) -> str:
    return json.dumps(None if closure.info is None else asdict(closure.info), indent=1)
