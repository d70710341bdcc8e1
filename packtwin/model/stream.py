"""Streaming twin: one sample for every cell of a pack in, the per-cell estimates out.

:meth:`TwinNet.forward` is causal, so the estimate at sample k of a window is a function of the
samples up to k through a state that a recurrence carries: the GRU hidden state, the initial
state the physics twin inverts from the first voltage sample, the charge passed and the time since
the first sample, and the single-particle prior's flux state (``spm_prior.flux_step``). This module
carries that state from one sample to the next:

* :class:`StreamStart` (``start``): the state before the first sample of a cycle, from its
  voltage (the rested cell's open-circuit voltage; a bisection, run once per cycle).
* :class:`StreamStep` (``step_fn``): one sample -> (estimates, new state), tensors in and out and
  no Python state, so the same graph is exported to TorchScript and ONNX
  (:mod:`packtwin.eval.export_stream`). The estimates come from ``TwinNet.decode``, the code the
  window forward runs, so streaming a window equals the window forward (tested).
* :class:`TwinStream`: the object a caller holds (``reset()``, ``step(V, I, T, dt)``).

Every tensor has the cells first ([n_cells, ...]); the GRU state is [n_cells, layers, hidden].
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from packtwin.model import spm_prior
from packtwin.model.twinnet import TwinNet
from packtwin.quantities import ELECTRODES, Features

# The exported graphs' names, in order (the ONNX/TorchScript signature).
STEP_INPUTS = ("voltage", "current", "temperature", "dt", "ambient_temperature", "cycle",
               "embedding")
STATE = ("gru", "h0", "theta0", "flux", "time", "charge", "steps")
OUTPUTS = ("theta_n", "theta_p", "surf_n", "surf_p", "avg_n", "avg_p", "sei_thickness_avg",
           "plating_margin", "soc", "voltage")
START_INPUTS = ("voltage", "time0")
# Graph names must be unique: the estimated voltage is not the measured one, the new state is not
# the old.
EXPORT_OUTPUTS = (tuple("voltage_estimate" if n == "voltage" else n for n in OUTPUTS)
                  + tuple(f"{s}_next" for s in STATE))


class StreamStart(nn.Module):
    """The state before a cycle's first sample: zeros, the clock at ``time0`` and, for the
    physics twin, the initial stoichiometries inverted from the first voltage (``voltage`` [n])."""

    def __init__(self, net: TwinNet):
        super().__init__()
        self.net = net

    def forward(self, voltage: Tensor, time0: Tensor) -> tuple[Tensor, ...]:
        net, n = self.net, voltage.shape[0]
        zeros = voltage.new_zeros(n)
        if net.physics:
            theta0 = net.ocv_initial_state(voltage)
        else:
            theta0 = voltage.new_zeros(n, len(ELECTRODES))
        gru = voltage.new_zeros(n, net.encoder.num_layers, net.encoder.hidden_size)
        return (gru, voltage.new_zeros(n, net.encoder.hidden_size), theta0,
                voltage.new_zeros(n, len(ELECTRODES)), zeros + time0, zeros, zeros)


class StreamStep(nn.Module):
    """``step_fn``: one sample of every cell and the state -> (:data:`OUTPUTS`, new :data:`STATE`).

    Inputs (each [n] unless said): voltage [V], current [A] (discharge > 0), temperature [K],
    dt [s] since the previous sample (ignored on a cycle's first sample, as the window forward's
    dt[0] = 0), ambient_temperature [K], cycle number [1], embedding [n, d]. Outputs: theta_n,
    theta_p [n, X, R] (c / c_max on the stored grid), surf_* and avg_* (x-averaged surface and
    volume-average stoichiometry) [n], sei_thickness_avg [nm], plating_margin [V], soc [1],
    voltage [V].

    The decoder's grid constants are computed once here (``TwinNet.bases``) and kept as buffers:
    the graph never reads the grid as numbers (what ``torch.export`` refuses).
    """

    def __init__(self, net: TwinNet):
        super().__init__()
        self.net = net
        with torch.no_grad():
            self._bases = net.bases()
        for key, b in self._bases.items():  # buffers: they follow .to() and are saved
            self.register_buffer(f"phi_{key}", b.phi.detach().clone(), persistent=False)
            self.register_buffer(f"rho_{key}", b.rho.detach().clone(), persistent=False)
            self.register_buffer(f"weights_{key}", b.weights.detach().clone(), persistent=False)

    def bases(self) -> dict:
        """``TwinNet.bases`` of the net, its tensors this module's buffers."""
        return {k: dataclasses.replace(b, phi=getattr(self, f"phi_{k}"),
                                       rho=getattr(self, f"rho_{k}"),
                                       weights=getattr(self, f"weights_{k}"))
                for k, b in self._bases.items()}

    def forward(self, voltage: Tensor, current: Tensor, temperature: Tensor, dt: Tensor,
                ambient_temperature: Tensor, cycle: Tensor, embedding: Tensor,
                gru: Tensor, h0: Tensor, theta0: Tensor, flux: Tensor, time: Tensor,
                charge: Tensor, steps: Tensor) -> tuple[Tensor, ...]:
        net = self.net
        first = steps == 0
        dt = torch.where(first, torch.zeros_like(dt), dt)
        time = time + dt
        # The stores' convention: current[k] is the mean current of the period ending at k.
        charge = charge + current * dt
        feats = Features(voltage, current, temperature, ambient_temperature, time, charge,
                         cycle).pack(torch.stack)
        x = (feats - net.feat_mean) / net.feat_std
        h, gru_new = net.encoder(torch.cat([x, embedding], -1)[:, None, :],
                                 gru.transpose(0, 1).contiguous())
        if net.running_initial_state:
            h0_new = h[:, 0]
        else:
            h0_new = torch.where(first[:, None], h[:, 0], h0)
        bases = self.bases()
        flux_new, fluxes = [], {}
        if net.physics:
            for e in ELECTRODES:
                b = bases[e.key]
                G, lam = spm_prior.flux_coefficients(current, temperature, b.electrode, b.c_max)
                H = spm_prior.flux_step(flux[:, e.index], G, torch.exp(-lam * dt))
                flux_new.append(H)
                fluxes[e.key] = (G[:, None], H[:, None])
            flux = torch.stack(flux_new, -1)
        out = net.decode(h, h0_new[:, None], embedding, current[:, None], temperature[:, None],
                         charge[:, None], theta0, fluxes, bases)
        result = []
        for name in OUTPUTS:
            if name.startswith("avg_"):
                b = bases[name[-1]]
                v = (out[f"theta_{name[-1]}"] * b.weights.to(h)).sum(-1).mean(-1)
            else:
                v = out[name]
            result.append(v[:, 0])
        state = (gru_new.transpose(0, 1), h0_new, theta0, flux, time, charge, steps + 1)
        return (*result, *state)


class TwinStream:
    """A pack's twin fed one sample at a time (eager; :mod:`packtwin.eval.export_stream`
    exports the same step).

    Args:
        net: a TwinNet (put in eval mode here).
        embeddings: [n_cells, d] per-cell embeddings (e.g. the ones ``packtwin estimate`` fits);
            default: the table's rows ``cells``, or the table's mean for every cell when
            ``n_cells`` is given instead (new cells, nothing known about them).
        cells: rows of the embedding table (the training cells this pack's cells are).
        n_cells: pack size when neither embeddings nor cells are given.
    """

    def __init__(self, net: TwinNet, embeddings: Tensor | None = None,
                 cells: Tensor | list[int] | None = None, n_cells: int | None = None):
        self.net = net.eval()
        table = net.embedding.weight.detach()
        if embeddings is not None:
            emb = torch.as_tensor(embeddings, dtype=table.dtype)
        elif cells is not None:
            emb = table[torch.as_tensor(cells, dtype=torch.long)]
        elif n_cells is not None:
            emb = table.mean(0, keepdim=True).expand(int(n_cells), -1)
        else:
            raise ValueError("TwinStream: give embeddings, cells or n_cells")
        if emb.ndim != 2 or emb.shape[1] != net.embed_dim:
            raise ValueError(f"TwinStream: embeddings have shape {tuple(emb.shape)}, expected "
                             f"[n_cells, {net.embed_dim}]")
        self.embedding = emb.contiguous()
        self.n_cells = emb.shape[0]
        self.start_fn = StreamStart(self.net)
        self.step_fn = StreamStep(self.net)
        self.state: tuple[Tensor, ...] | None = None
        self.reset()

    def reset(self, time0: float = 0.0, ambient_temperature=None, cycle=1.0) -> None:
        """Start a new cycle: the next sample is read as the rested cell's first sample.

        ``ambient_temperature`` [K] (default: the first sample's temperature) and ``cycle`` are
        the features the network reads besides V, I, T; they may also be given per step."""
        self.state = None
        self._time0 = float(time0)
        self._ambient, self._cycle = ambient_temperature, cycle

    def _cells(self, x, name: str) -> Tensor:
        t = torch.as_tensor(x, dtype=self.embedding.dtype)
        if t.ndim == 0:
            t = t.expand(self.n_cells)
        if t.shape != (self.n_cells,):
            raise ValueError(f"TwinStream.step: {name} has shape {tuple(t.shape)}, expected "
                             f"({self.n_cells},) (one value per cell) or a scalar")
        return t

    @torch.no_grad()
    def step(self, voltage, current, temperature, dt, ambient_temperature=None,
             cycle=None) -> dict[str, Tensor]:
        """Estimates after one sample of every cell ([n_cells] tensors or scalars; see
        :class:`StreamStep` for units). Returns :data:`OUTPUTS` by name, each [n_cells, ...]."""
        v = self._cells(voltage, "voltage")
        i = self._cells(current, "current")
        temp = self._cells(temperature, "temperature")
        if self.state is None:
            if self._ambient is None and ambient_temperature is None:
                self._ambient = temp.clone()
            self.state = self.start_fn(v, torch.tensor(self._time0))
        amb = self._cells(self._ambient if ambient_temperature is None else ambient_temperature,
                          "ambient_temperature")
        cyc = self._cells(self._cycle if cycle is None else cycle, "cycle")
        res = self.step_fn(v, i, temp, self._cells(dt, "dt"), amb, cyc, self.embedding,
                           *self.state)
        self.state = tuple(res[len(OUTPUTS):])
        return dict(zip(OUTPUTS, res[:len(OUTPUTS)]))
