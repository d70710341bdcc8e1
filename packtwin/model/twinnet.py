"""TwinNet: one network shared by every cell of a pack, with a learned embedding per cell.

Why this architecture
---------------------
* Encoder: a causal (unidirectional) GRU over the measured history plus the cell embedding, so the
  estimate at t uses measurements up to t only, as a battery-management system would.
* c_s decoder: a DeepONet-style separable coordinate decoder per electrode,
  c(x, rho, t) = mean(t) + sum_k a_k(h_t) psi_k(x, rho). The trunk psi is an MLP over the
  coordinates (continuous in x and rho, exact derivatives d/drho, d2/drho2 propagated through
  the MLP for the diffusion residual) evaluated once per batch on the grid, not once per (sample, time, point):
  a PCA of real c_s shows 24 modes per electrode reconstruct it within 0.02 % of c_max, so a
  low-rank decoder loses nothing and costs ~K/(X R) of a pointwise MLP.
* Structural physics (``physics=True``): each electrode's mean stoichiometry follows the measured
  charge passed from an estimated initial state (lithium conservation, with a per-cell capacity
  factor from the embedding and a bounded side-reaction drift in the negative electrode). The
  initial state is OCV-consistent: each cycle starts after a rest, so its first voltage sample is
  inverted along the fresh cell's stoichiometry line, U_p(theta_p) - U_n(theta_n) = V_0
  (``packtwin.physics.ocv_inversion``, the baseline's physics), and the network learns only a
  bounded correction to it (re-estimated from the whole history so far by default), and the
  radial shape starts from the single-particle polynomial profile of the measured current with an
  Arrhenius diffusivity at the measured temperature (``spm_prior``); the terminal voltage is the
  SPM voltage of the estimated surface concentrations plus a learned correction, SOC is the
  estimated negative-electrode mean stoichiometry between the fresh cell's 0 % and 100 %
  stoichiometries (the same initial state + coulomb counting, no free head). With ``physics=False`` the *same modules* are used
  without the physics: the mean, SOC and voltage come straight from the heads, so the data-only
  twin is the same network, parameter for parameter, minus the physics.
* Voltage is reconstructed from the *estimated states* (surface concentrations, I, T, embedding),
  not from the encoder state that has seen the measured voltage: this is what makes voltage
  reconstruction informative when fitting embeddings of new cells.
* Parameter head: embedding -> normalised per-cell physical parameters (log10 for positive ones).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from packtwin.model import spm_prior
from packtwin.quantities import (ELECTRODES, FEATURES, NEG, POS, SCALAR_TARGETS, Electrode,
                                 Features)
from packtwin.physics import ocv_inversion
from packtwin.physics.conservation import volume_weights
from packtwin.physics.constants import ElectrodeConstants


@dataclasses.dataclass(frozen=True)
class ElectrodeBasis:
    """What :meth:`TwinNet.decode` reads of one electrode: its decoder modes on the stored grid
    (zero-mean for the physics twin) with their rho derivatives, and its constants as numbers."""

    phi: Tensor  # [X * rho, K] modes on the (x, rho) grid
    d1: Tensor | None  # d phi / d rho (derivs only)
    d2: Tensor | None
    rho: Tensor  # radial grid, the stored nodes extended with the surface
    weights: Tensor  # volume weights of the stored radial nodes (conservation.volume_weights)
    n_x: int
    n_r: int  # stored radial nodes (a prefix of rho)
    electrode: ElectrodeConstants
    c_max: float  # the store's maximum concentration [mol/m3]
    kappa: float  # d theta_mean / dQ [1/C]


def mlp(n_in: int, width: int, n_out: int, depth: int = 2, act=nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class Trunk(nn.Module):
    """Basis functions psi_k(x, rho) of one electrode with their rho derivatives.

    The derivatives are propagated forward through the tanh MLP alongside the values (exact,
    differentiable, one pass): far cheaper than 2K reverse-mode autograd calls with create_graph.
    The test suite checks them against finite differences.
    """

    def __init__(self, n_modes: int, width: int):
        super().__init__()
        self.net = mlp(2, width, n_modes, depth=2)

    def forward(self, x: Tensor, rho: Tensor, derivs: bool = False):
        """x, rho: [P] (x normalised to [0, 1] in the electrode). Returns [P, K] (x3 if derivs)."""
        z = torch.stack([x, rho], -1)
        if not derivs:
            return self.net(z)
        d1 = torch.zeros_like(z)
        d1[:, 1] = 1.0  # tangent along rho
        d2 = torch.zeros_like(z)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                z = layer(z)
                d1 = d1 @ layer.weight.T
                d2 = d2 @ layer.weight.T
            else:  # tanh: a' = (1 - a^2) z', a'' = (1 - a^2) z'' - 2 a (1 - a^2) z'^2
                a = torch.tanh(z)
                g = 1.0 - a * a
                d2 = g * d2 - 2.0 * a * g * d1 * d1
                d1 = g * d1
                z = a
        return z, d1, d2


class TwinNet(nn.Module):
    """The shared twin network (plain nn.Module; Lightning only wraps it).

    Args:
        n_cells: number of per-cell embeddings (cells of the training store).
        store_info: grids, c_max and parameter keys of the store (``datamodule.store_info``).
        physics: structural physics on (see module docstring); False = data-only twin.
        embed_dim, hidden, layers: embedding size, GRU width and depth.
        n_modes, trunk_width: decoder modes per electrode and trunk MLP width.
        side_reaction_max: bound on the negative electrode's drift from coulomb counting
            (side reactions) as a stoichiometry fraction.
        running_initial_state: physics twin: re-estimate the initial state from the whole history
            so far (True) or from the first sample only (False).
        initial_correction_max: physics twin: bound on the learned correction to the
            OCV-inverted initial stoichiometry of each electrode (stoichiometry fraction).
    """

    def __init__(self, n_cells: int, store_info: dict, physics: bool = True, embed_dim: int = 8,
                 hidden: int = 64, layers: int = 1, n_modes: int = 16, trunk_width: int = 32,
                 side_reaction_max: float = 0.03, running_initial_state: bool = True,
                 initial_correction_max: float = 0.05):
        super().__init__()
        from packtwin.physics.constants import okane2022

        self.n_cells, self.physics, self.embed_dim = int(n_cells), bool(physics), embed_dim
        self.param_keys = list(store_info.get("param_keys", []))
        self.side_reaction_max = side_reaction_max
        self.running_initial_state = running_initial_state
        self.constants = okane2022()
        self.initial_correction_max = initial_correction_max
        self.line = ocv_inversion.StoichiometryLine.of(self.constants)
        # SOC window in the constants' stoichiometry (rescaled to the store's c_max in forward).
        self.soc_window = ocv_inversion.soc_window(self.constants, self.line)
        n_f = len(FEATURES)
        self.embedding = nn.Embedding(self.n_cells, embed_dim)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.encoder = nn.GRU(n_f + embed_dim, hidden, num_layers=layers, batch_first=True)
        self.trunk = nn.ModuleDict({e.key: Trunk(n_modes, trunk_width) for e in ELECTRODES})
        self.coef = nn.ModuleDict({e.key: nn.Linear(hidden, n_modes) for e in ELECTRODES})
        self.mean_head = nn.ModuleDict({e.key: nn.Linear(hidden, 1) for e in ELECTRODES})
        self.drift_head = nn.Linear(hidden, 1)  # negative electrode side reactions (physics)
        self.capacity_head = nn.Linear(embed_dim, 3)  # per-cell factors: neg, pos, SOC capacity
        self.scalar_head = nn.Linear(hidden, len(SCALAR_TARGETS))
        self.voltage_head = mlp(4 + embed_dim, 32, 1, depth=2)
        self.r_ohm_head = nn.Linear(embed_dim, 1)
        self.param_head = mlp(embed_dim, 32, max(len(self.param_keys), 1), depth=1)
        for head in (*self.coef.values(), *self.mean_head.values(), self.drift_head,
                     self.capacity_head, self.scalar_head, self.r_ohm_head):
            nn.init.zeros_(head.bias)
            head.weight.data.mul_(0.1)
        # Normalisation (training split statistics, set by set_stats; saved in the state dict).
        self.register_buffer("feat_mean", torch.zeros(n_f))
        self.register_buffer("feat_std", torch.ones(n_f))
        self.register_buffer("target_mean", torch.zeros(len(SCALAR_TARGETS) + 1))  # + voltage
        self.register_buffer("target_std", torch.ones(len(SCALAR_TARGETS) + 1))
        self.register_buffer("theta_ref", torch.tensor([0.5] * len(ELECTRODES)))
        self.register_buffer("param_mean", torch.zeros(len(self.param_keys)))
        self.register_buffer("param_std", torch.ones(len(self.param_keys)))
        self.register_buffer("param_log", torch.zeros(len(self.param_keys), dtype=torch.bool))
        self.register_buffer("stats_set", torch.tensor(False))
        self.register_buffer("c_max", torch.tensor([store_info[e.c_max_info] for e in ELECTRODES]))
        for dim in (d for e in ELECTRODES for d in (e.x_dim, e.r_dim)):
            self.register_buffer(dim, torch.tensor(store_info[dim], dtype=torch.float32))

    # ---- normalisation --------------------------------------------------------------------------
    def set_stats(self, stats: dict) -> None:
        """Copy the training split's statistics into the buffers (once, before training)."""
        f = stats["features"]
        self.feat_mean.copy_(torch.tensor(f["mean"]))
        self.feat_std.copy_(torch.tensor(f["std"]))
        names = list(SCALAR_TARGETS) + ["voltage"]
        self.target_mean.copy_(torch.tensor([stats[n]["mean"] for n in names]))
        self.target_std.copy_(torch.tensor([stats[n]["std"] for n in names]))
        self.theta_ref.copy_(torch.tensor([stats[e.theta]["mean"] for e in ELECTRODES]))
        p = stats["params"]
        if self.param_keys:
            self.param_mean.copy_(torch.tensor([p[k]["mean"] for k in self.param_keys]))
            self.param_std.copy_(torch.tensor([p[k]["std"] for k in self.param_keys]))
            self.param_log.copy_(torch.tensor([p[k]["transform"] == "log10"
                                               for k in self.param_keys]))
        self.stats_set.fill_(True)

    def normalise_params(self, raw: Tensor) -> Tensor:
        t = torch.where(self.param_log, torch.log10(raw.clamp_min(1e-300)), raw)
        return (t - self.param_mean) / self.param_std

    def denormalise_params(self, z: Tensor) -> Tensor:
        t = z * self.param_std + self.param_mean
        return torch.where(self.param_log, 10.0 ** t, t)

    # ---- forward --------------------------------------------------------------------------------
    def nodes(self, e: Electrode) -> tuple[Tensor, Tensor]:
        """An electrode's stored x [m] and normalised r nodes."""
        return getattr(self, e.x_dim), getattr(self, e.r_dim)

    def grid(self, e: Electrode) -> tuple[Tensor, Tensor, Tensor]:
        """Flattened (x normalised to [0, 1], rho) points of an electrode's stored grid, extended
        with the surface rho = 1 when the store's radial nodes are cell centres; and that rho."""
        x, r = self.nodes(e)
        if float(r[-1]) < 1.0 - 1e-9:  # the continuous decoder reaches the true surface
            r = torch.cat([r, r.new_ones(1)])
        span = (x.max() - x.min()).clamp_min(1e-12)
        xn = (x - x.min()) / span
        xx, rr = torch.meshgrid(xn, r, indexing="ij")
        return xx.reshape(-1), rr.reshape(-1), r

    def bases(self, derivs: bool = False) -> dict[str, "ElectrodeBasis"]:
        """Each electrode's decoder basis on its stored grid and the constants the decoder reads
        (Python floats read from the buffers here, once, not inside :meth:`decode`)."""
        out = {}
        for e in ELECTRODES:
            xg, rg, rho = self.grid(e)
            x_nodes, r = self.nodes(e)  # stored nodes (r is a prefix of rho)
            n_x, n_r, n_rho = x_nodes.numel(), r.numel(), rho.numel()
            d1 = d2 = None
            if derivs:
                phi, d1, d2 = self.trunk[e.key](xg, rg, derivs=True)
            else:
                phi = self.trunk[e.key](xg, rg)
            weights = volume_weights(r).to(phi.dtype)
            if self.physics:
                # Zero-mean modes on the stored grid: the electrode's lithium is then exactly
                # the conserved mean.
                phi = phi - (phi.T.reshape(-1, n_x, n_rho)[..., :n_r] * weights).sum(-1).mean(-1)
            electrode = e.constants(self.constants)
            c_max = float(self.c_max[e.index])
            out[e.key] = ElectrodeBasis(phi, d1, d2, rho, weights, n_x, n_r, electrode, c_max,
                                        spm_prior.charge_to_stoichiometry(electrode, c_max))
        return out

    def forward(self, features: Tensor, cell: Tensor, valid: Tensor | None = None,
                embeddings: Tensor | None = None, derivs: bool = False) -> dict[str, Tensor]:
        """Estimates for a batch of sequences.

        Args:
            features: raw measured features [B, T, F] (order ``FEATURES``).
            cell: cell index [B] into the embedding table.
            valid: [B, T] mask (1 inside the cycle).
            embeddings: optional [B, d] embeddings replacing the table's (new-cell fitting).
            derivs: also return d theta/d rho and d2 theta/d rho2 (physics losses).
        Returns:
            dict with theta_n/theta_p [B, T, X, R] (c / c_max), sei_thickness_avg [nm],
            plating_margin [V], soc [1], voltage [V] (each [B, T]), params_z [B, P] (normalised),
            and helpers (surface stoichiometries, derivatives) for the losses.
        """
        B, T, _ = features.shape
        if valid is None:
            valid = torch.ones(B, T, device=features.device)
        emb = self.embedding(cell) if embeddings is None else embeddings
        x = (features - self.feat_mean) / self.feat_std * valid[..., None]
        h, _ = self.encoder(torch.cat([x, emb[:, None, :].expand(B, T, -1)], -1))
        # The initial-state heads read either the state after the first sample only, or (running)
        # the current state: a re-estimate of the *initial* state from all data so far (a
        # constant target, refined as voltage information accumulates, as a BMS corrects
        # coulomb counting); either way the change since the start is the measured charge.
        h0 = h if self.running_initial_state else h[:, :1]
        f = Features.unpack(features)
        i_feat = f.current * valid
        temp = torch.where(valid > 0, f.temperature, torch.full_like(f.temperature, 298.15))
        q = f.charge_passed - f.charge_passed[:, :1]  # [C] since the first sample of this window
        theta0 = self.ocv_initial_state(f.voltage[:, 0]) if self.physics else None
        # Time is zeroed in the padding: negative steps there are clamped to 0 (no dynamics).
        time = f.time.max(0).values
        dt = torch.diff(time, prepend=time[:1]).clamp_min(0.0)
        bases = self.bases(derivs)
        flux = {}
        if self.physics:
            for key, b in bases.items():
                flux[key] = spm_prior.flux_state(i_feat, temp, dt, b.electrode, b.c_max)
        out = self.decode(h, h0, emb, i_feat, temp, q, theta0, flux, bases, derivs)
        out["dt"] = dt
        out["temperature"] = temp
        out["current"] = i_feat
        return out

    def decode(self, h: Tensor, h0: Tensor, emb: Tensor, current: Tensor, temp: Tensor,
               q: Tensor, theta0: Tensor | None, flux: dict[str, tuple[Tensor, Tensor]],
               bases: dict[str, "ElectrodeBasis"], derivs: bool = False) -> dict[str, Tensor]:
        """The estimates from the encoder state: every step on its own (no recurrence), so a
        whole window ([B, T, ...]) and one streamed sample (T = 1) share this code.

        Args:
            h: encoder output [B, T, hidden]; h0: what the initial-state heads read ([B, T or 1,
                hidden]).
            emb: embeddings [B, d]; current [A], temp [K], q [C] since the first sample: [B, T].
            theta0: physics twin: OCV-inverted initial stoichiometries [B, 2] (else None).
            flux: physics twin: each electrode's (G, H) [B, T] from ``spm_prior``.
            bases: :meth:`bases`.
        """
        B, T = h.shape[:2]
        cap = 1.0 + 0.1 * torch.tanh(self.capacity_head(emb))  # [B, 3] within +-10 %
        out: dict[str, Tensor] = {}
        for e in ELECTRODES:
            k, b = e.index, bases[e.key]
            n_x, n_r, rho = b.n_x, b.n_r, b.rho
            n_rho = rho.numel()
            a = 0.05 * self.coef[e.key](h)  # [B, T, K]; profiles deviate a few % of c_max
            mode = torch.einsum("btk,pk->btp", a, b.phi).reshape(B, T, n_x, n_rho)
            if self.physics:
                corr = self.initial_correction_max * torch.tanh(self.mean_head[e.key](h0)[..., 0])
                mean = theta0[:, k:k + 1] + corr + b.kappa * q / cap[:, k:k + 1]
                if e is NEG:
                    mean = mean + self.side_reaction_max * torch.tanh(self.drift_head(h)[..., 0])
                G, H = flux[e.key]
                shape, s1, s2 = spm_prior.profile_shape(G, H, rho, n_avg=n_r, weights=b.weights)
                theta = mean[..., None, None] + shape[:, :, None, :] + mode
                if e is NEG:
                    mean_n = mean
            else:
                mean = self.theta_ref[k] + self.mean_head[e.key](h)[..., 0]
                theta = mean[..., None, None] + mode
            out[e.theta] = theta[..., :n_r]
            out[f"surf_{e.key}"] = theta[..., -1].mean(-1)  # at rho = 1, averaged through x
            out[f"rho_{e.key}"] = rho
            if derivs:
                out[f"{e.theta}_ext"] = theta
                dm1 = torch.einsum("btk,pk->btp", a, b.d1).reshape(B, T, n_x, n_rho)
                dm2 = torch.einsum("btk,pk->btp", a, b.d2).reshape(B, T, n_x, n_rho)
                if self.physics:
                    dm1 = dm1 + s1[:, :, None, :]
                    dm2 = dm2 + s2[:, :, None, :]
                out[f"dtheta_{e.key}_drho"], out[f"d2theta_{e.key}_drho2"] = dm1, dm2
        surf_n, surf_p = out["surf_n"], out["surf_p"]
        z = self.scalar_head(h)  # normalised sei, plating, soc
        mean_t, std_t = self.target_mean, self.target_std
        out["sei_thickness_avg"] = mean_t[0] + std_t[0] * z[..., 0]
        out["plating_margin"] = mean_t[1] + std_t[1] * z[..., 1]
        mean_f, std_f = Features.unpack(self.feat_mean), Features.unpack(self.feat_std)
        i_norm = (current - mean_f.current) / std_f.current
        t_norm = (temp - mean_f.temperature) / std_f.temperature
        v_in = torch.stack([surf_n, surf_p, i_norm, t_norm], -1)
        v_corr = self.voltage_head(torch.cat([v_in, emb[:, None, :].expand(B, T, -1)], -1))[..., 0]
        if self.physics:
            # SOC from the same state: the negative mean stoichiometry on the SOC window.
            scale = self.constants.neg.c_max / bases[NEG.key].c_max
            s0, s100 = (s * scale for s in self.soc_window)
            out["soc"] = (mean_n - s0) / (s100 - s0)
            from packtwin.physics.voltage import spm_terminal_voltage

            r_ohm = 0.02 * nn.functional.softplus(self.r_ohm_head(emb) + 1.0)  # [B, 1] Ohm
            c_max_n, c_max_p = (bases[e.key].c_max for e in (NEG, POS))
            c_n = (surf_n * c_max_n).clamp(1.0, c_max_n - 1.0)
            c_p = (surf_p * c_max_p).clamp(1.0, c_max_p - 1.0)
            v_spm = spm_terminal_voltage(c_n, c_p, current, temp, self.constants, R_ohm=r_ohm)
            out["voltage_spm"] = v_spm
            out["voltage"] = v_spm + 0.1 * std_t[3] * v_corr
        else:
            out["soc"] = mean_t[2] + std_t[2] * z[..., 2]
            out["voltage"] = mean_t[3] + std_t[3] * v_corr
        out["params_z"] = self.param_head(emb)[:, :len(self.param_keys)]
        return out

    def ocv_initial_state(self, v0: Tensor) -> Tensor:
        """Initial stoichiometries [B, 2] (negative, positive; c / the store's c_max) from the first
        voltage sample [B] taken as the open-circuit voltage on the fresh cell's line."""
        sto_n = ocv_inversion.invert_ocv(v0.detach(), self.line)
        sto_p = self.line.sto_p(sto_n)
        const = (self.constants.neg.c_max, self.constants.pos.c_max)
        theta0 = torch.stack([sto_n * const[0], sto_p * const[1]], -1) / self.c_max.to(sto_n)
        return theta0.to(v0.dtype)

    def identified_params(self, cells: Tensor | None = None,
                          embeddings: Tensor | None = None) -> Tensor:
        """Per-cell physical parameters [n, P] in the schema's units (order ``param_keys``)."""
        emb = self.embedding.weight if embeddings is None else embeddings
        if cells is not None and embeddings is None:
            emb = emb[cells]
        return self.denormalise_params(self.param_head(emb)[:, :len(self.param_keys)])
