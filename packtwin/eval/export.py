"""``packtwin export``: the trained twin as a CPU deployment artefact (TorchScript or ONNX).

The exported graph is the plain :class:`~packtwin.model.twinnet.TwinNet` forward behind a thin
wrapper with tensor inputs ``(features [B, T, F] raw, cell [B] int64, valid [B, T])`` and a tuple
of outputs :data:`OUTPUTS`. Both formats are produced by tracing, so the artefact is specialised
to the traced (batch, time) shape: the physics twin's single-particle prior integrates the current
with a loop over time steps, which tracing unrolls. The shape is recorded with the artefact.

Every export is checked numerically against the eager model on a *second* input of the same shape
(not the one traced), so a data-dependent branch frozen by tracing shows up as a mismatch.
ONNX is checked with ``onnx.reference.ReferenceEvaluator``.
ONNX export uses ``torch.export``; it works for the data-only twin, while the physics twin's
window forward fails there (``TwinNet.bases`` reads its grid and c_max as Python floats on every
call, a data-dependent guard for ``torch.export``): use TorchScript for it. The streaming step
(``--stream``, :mod:`packtwin.eval.export_stream`) computes those constants once, outside the
graph, and exports to ONNX for both twins.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from packtwin import quantities
from packtwin.data import outputs
from packtwin.errors import PacktwinError

FORMATS = ("torchscript", "onnx")
OUTPUTS = quantities.NET_OUTPUTS
INPUTS = ("features", "cell", "valid")
EXPORT_KIND = "export"


# Mean and spread of raw inputs for an untrained network (a 5 Ah cell near 25 C).
_PLAUSIBLE = {"voltage": (3.7, 0.3), "current": (5.0, 4.0), "temperature": (298.15, 4.0),
              "ambient_temperature": (298.15, 0.0), "cycle": (1.0, 0.0)}


class ExportError(PacktwinError, RuntimeError):
    """The model could not be exported or the export disagrees with the eager model."""


class ExportedTwin(nn.Module):
    """TwinNet with tensor-only inputs and a tuple of the deployed outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor, cell: torch.Tensor, valid: torch.Tensor):
        out = self.net(features, cell, valid)
        return tuple(out[k] for k in OUTPUTS)


def load_net(ckpt: str | os.PathLike) -> nn.Module:
    """The TwinNet of a TwinModule checkpoint, in eval mode on the CPU."""
    from packtwin.model.checkpoint import load_twin

    return load_twin(ckpt).net


def example_inputs(net: nn.Module, batch: int, n_time: int, period_s: float, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plausible raw inputs from the network's own normalisation statistics.

    Measured channels are drawn around the training mean (within half a standard deviation, so
    the network sees the ranges it was trained on), time is uniform at ``period_s`` and the
    charge passed integrates the drawn current, as the data module computes it.
    """
    from packtwin.data.windows import charge_passed
    from packtwin.quantities import FEATURES, Features, feature_index

    g = torch.Generator().manual_seed(seed)
    mean, std = net.feat_mean.float().clone(), net.feat_std.float().clone()
    if not bool(getattr(net, "stats_set", True)):
        # An untrained network has mean 0 / std 1: use a plausible cell instead (0 K would be NaN).
        for name, (m, s) in _PLAUSIBLE.items():
            mean[feature_index(name)], std[feature_index(name)] = m, s
    f = Features.unpack(mean + 0.5 * std * torch.randn(batch, n_time, len(FEATURES), generator=g))
    time = torch.arange(n_time, dtype=torch.float64) * period_s
    # The data module's charge counting, so the traced graph sees inputs as training did.
    q = charge_passed(f.current.double().numpy(), time.numpy())
    f = dataclasses.replace(f, time=time.float().expand(batch, n_time),
                            charge_passed=torch.from_numpy(q).float())
    f = f.pack(torch.stack).contiguous()
    cell = torch.randint(0, max(int(net.n_cells), 1), (batch,), generator=g)
    valid = torch.ones(batch, n_time)
    return f, cell, valid


def _trace(wrapper: nn.Module, inputs) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # Tracing warns on every tensor->float conversion of constant buffers: expected here.
        warnings.simplefilter("ignore")
        return torch.jit.trace(wrapper, inputs, check_trace=False)


def load_torchscript(path: str | Path, extra_files: dict | None = None):
    """Load an exported TorchScript twin on the CPU (``extra_files`` receives its metadata).

    TorchScript is deprecated in favour of ``torch.export`` from torch 2.10 on, but ``torch.export``
    cannot yet take TwinNet's forward (data-dependent guards on its grids): silence the notice.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})


def _compare(ref: Sequence[torch.Tensor], got: Sequence, rtol: float,
             names: Sequence[str] = OUTPUTS) -> dict[str, float]:
    """Max |error| per output relative to that output's range; raises beyond ``rtol``."""
    errs = {}
    if len(got) != len(ref):
        raise ExportError(f"export returns {len(got)} outputs, eager {len(ref)}")
    for name, a, b in zip(names, ref, got):
        a = a.detach().numpy().astype(np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ExportError(f"export output {name!r} has shape {b.shape}, eager {a.shape}")
        if not np.isfinite(a).all():
            raise ExportError(f"the eager model's output {name!r} is not finite on the example "
                              f"inputs; cannot check the export")
        scale = max(float(np.abs(a).max()), 1e-12)
        errs[name] = float(np.abs(a - b).max() / scale)
    bad = {k: v for k, v in errs.items() if not v <= rtol}
    if bad:
        raise ExportError(f"exported model disagrees with the eager model beyond rtol={rtol}: "
                          f"{bad} (max |error| / max |eager output|)")
    return errs


def export_model(net: nn.Module, out: str | Path, fmt: str = "torchscript", batch: int = 16,
                 n_time: int | None = None, period_s: float | None = None, rtol: float = 1e-4,
                 meta: dict | None = None, inputs: Sequence[str | Path] = ()) -> dict:
    """Export ``net`` for CPU inference and check it numerically; returns the check report.

    Args:
        net: a TwinNet (eval mode, CPU).
        out: output file (``.pt`` for TorchScript, ``.onnx`` for ONNX by convention).
        fmt: ``"torchscript"`` or ``"onnx"``.
        batch, n_time: the traced shape (cells per call, samples per cycle); ``n_time`` defaults
            to one hour of samples at ``period_s``.
        period_s: sample period [s] (default: the store's, from the network's store info).
        rtol: tolerated max |export - eager| / max |eager| per output.
        meta: extra facts recorded with the artefact.
        inputs: files the export reads (the checkpoint): ``out`` may not be one of them; an
            existing ``out`` is replaced only if it is an earlier export (written complete, then
            renamed into place).
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, got {fmt!r}")
    net = net.cpu().eval()
    period_s = float(period_s or getattr(net, "period_s", 0) or 20.0)
    n_time = int(n_time or math.ceil(3600.0 / period_s))
    wrapper = ExportedTwin(net).eval()
    trace_in = example_inputs(net, batch, n_time, period_s, seed=0)
    check_in = example_inputs(net, batch, n_time, period_s, seed=1)
    final = outputs.guard(out, EXPORT_KIND, inputs, what="export output")
    with torch.no_grad():
        ref = wrapper(*check_in)
    info = {"format": fmt, "inputs": list(INPUTS), "outputs": list(OUTPUTS), "batch": batch,
            "n_time": n_time, "period_s": period_s, "physics": bool(getattr(net, "physics", False)),
            "n_cells": int(net.n_cells), "torch_version": torch.__version__, **(meta or {})}
    with outputs.replace(final, EXPORT_KIND) as out:
        got = _write(wrapper, fmt, out, trace_in, check_in, info)
        info["max_rel_error"] = _compare(ref, got, rtol)  # a failed check leaves no artefact
    info["path"] = str(final)
    outputs.write_text(str(final) + ".json", json.dumps(info, indent=2))
    return info


def _write(wrapper: nn.Module, fmt: str, out: Path, trace_in, check_in, info: dict) -> list:
    """Write the artefact at ``out``; returns its outputs on ``check_in``."""
    if fmt == "torchscript":
        traced = _trace(wrapper, trace_in)
        traced.save(str(out), _extra_files={"packtwin.json": json.dumps(info)})
        loaded = load_torchscript(out)
        with torch.no_grad():
            got = [o.numpy() for o in loaded(*check_in)]
    else:
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, trace_in, str(out), dynamo=True,
                                  input_names=list(INPUTS), output_names=list(OUTPUTS))
        except Exception as exc:
            raise ExportError(f"ONNX export failed for the {'physics' if info['physics'] else 'data-only'} "
                              f"twin ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                              f"use --format torchscript") from exc
        model = onnx.load(str(out))
        onnx.helper.set_model_props(model, {"packtwin": json.dumps(info)})
        onnx.save(model, str(out))
        names = [i.name for i in model.graph.input]
        feeds = {n: t.numpy() for n, t in zip(names, check_in)}
        got = ReferenceEvaluator(model).run(None, feeds)
    return got


def main(argv: list[str] | None = None) -> int:
    """``packtwin export --ckpt PATH --out PATH [--format torchscript|onnx] [--batch N] [--time T]
    [--stream]``."""
    from jsonargparse import ArgumentParser

    p = ArgumentParser(prog="packtwin export", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=str, required=True, help="TwinModule checkpoint (.ckpt)")
    p.add_argument("--out", type=str, required=True, help="output file (.pt or .onnx)")
    p.add_argument("--format", type=str, default="torchscript", choices=list(FORMATS))
    p.add_argument("--batch", type=int, default=16,
                   help="cells per call in the traced graph (--stream ONNX: any pack size runs)")
    p.add_argument("--time", type=int, default=None,
                   help="samples per cycle in the traced graph (default: one hour of samples)")
    p.add_argument("--rtol", type=float, default=None,
                   help="tolerated relative mismatch (default 1e-4; --stream 1e-5)")
    p.add_argument("--stream", action="store_true",
                   help="export the streaming step (one sample per call, state in and out; "
                        "packtwin.eval.export_stream) instead of the whole-window forward")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    outputs.guard(args.out, EXPORT_KIND, [args.ckpt], what="--out")  # before loading anything
    from packtwin.model.checkpoint import load_twin

    twin = load_twin(args.ckpt)
    meta = {"checkpoint": str(args.ckpt)}
    if args.stream:
        from packtwin.eval.export_stream import export_stream

        info = export_stream(twin.net, args.out, args.format, args.batch, twin.period_s,
                             args.rtol or 1e-5, meta=meta, inputs=[args.ckpt])
        keys = ("path", "format", "traced_cells", "cell_axis", "max_rel_error")
    else:
        info = export_model(twin.net, args.out, args.format, args.batch, args.time,
                            twin.period_s, args.rtol or 1e-4, meta=meta, inputs=[args.ckpt])
        keys = ("path", "format", "batch", "n_time", "max_rel_error")
    print(json.dumps({k: info[k] for k in keys}, indent=2))
    return 0
