"""``packtwin export --stream``: the streaming twin's step as a CPU artefact (TorchScript, ONNX).

The artefact is the per-sample step of :mod:`packtwin.model.stream` (state in, estimates and the
new state out) and the start of a cycle (the state from the first, rested voltage sample):

* TorchScript: one file, ``forward`` = the step, ``start`` = the start.
* ONNX: ``OUT`` holds the step, ``OUT`` with ``.start.onnx`` the start; both with a dynamic cell
  axis (any pack size in one graph), run by onnxruntime.

Inputs and outputs are named as :mod:`packtwin.model.stream` declares them (``STEP_INPUTS`` +
``STATE`` -> ``EXPORT_OUTPUTS``), and recorded in ``OUT.json``. Every export is checked against the
eager step on *another* input than the traced one: another pack size, another seed, a state some
samples into a cycle; an export beyond ``rtol`` (max |error| / max |eager| per output) is not
written.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from packtwin.data import outputs
from packtwin.eval import export
from packtwin.model import stream

STREAM_FORMATS = ("torchscript", "onnx")


class StreamGraph(nn.Module):
    """The exported module: ``forward`` is the step, ``start`` the start of a cycle."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.step = stream.StreamStep(net)
        self.begin = stream.StreamStart(net)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.step(*args)

    def start(self, voltage: torch.Tensor, time0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.begin(voltage, time0)


def example(net: nn.Module, n_cells: int, period_s: float, seed: int, warm: int = 3
            ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """(step inputs, start inputs) of a plausible pack ``warm`` samples into a cycle (so the
    state is not the start's zeros), every tensor its own copy (``torch.export`` would merge
    inputs that are one object)."""
    from packtwin.quantities import Features

    feats, cells, _ = export.example_inputs(net, n_cells, warm + 1, period_s, seed=seed)
    f = Features.unpack(feats)
    twin = stream.TwinStream(net, cells=cells)
    twin.reset(ambient_temperature=f.ambient_temperature[:, 0], cycle=f.cycle[:, 0])
    dt = torch.full((n_cells,), float(period_s))
    for k in range(warm):
        twin.step(f.voltage[:, k], f.current[:, k], f.temperature[:, k], dt)
    step = (f.voltage[:, warm], f.current[:, warm], f.temperature[:, warm], dt,
            f.ambient_temperature[:, warm], f.cycle[:, warm], twin.embedding, *twin.state)
    start = (f.voltage[:, 0], torch.tensor(0.0))
    return tuple(t.detach().clone() for t in step), tuple(t.detach().clone() for t in start)


def start_path(out: str | Path) -> Path:
    """The ONNX start graph next to the step graph ``out``."""
    return Path(out).with_suffix(".start.onnx")


def export_stream(net: nn.Module, out: str | Path, fmt: str = "onnx", n_cells: int = 16,
                  period_s: float = 20.0, rtol: float = 1e-5, meta: dict | None = None,
                  inputs: Sequence[str | Path] = ()) -> dict:
    """Export the streaming step (and start) of ``net`` and check it; returns the report.

    Args:
        net: a TwinNet (CPU).
        out: output file (``.pt`` TorchScript, ``.onnx`` ONNX by convention).
        fmt: ``"torchscript"`` or ``"onnx"``.
        n_cells: pack size of the traced example (ONNX: any size runs; TorchScript: checked on
            another size too).
        period_s: sample period of the example inputs [s].
        rtol: tolerated max |export - eager| / max |eager| per output.
        meta, inputs: recorded facts; files ``out`` must not replace (as ``export_model``).
    """
    if fmt not in STREAM_FORMATS:
        raise ValueError(f"stream export format must be one of {STREAM_FORMATS}, got {fmt!r}")
    net = net.cpu().eval()
    graph = StreamGraph(net).eval()
    trace_step, trace_start = example(net, n_cells, period_s, seed=0)
    check_step, check_start = example(net, n_cells + 3, period_s, seed=1)
    with torch.no_grad():
        ref = list(graph(*check_step)) + list(graph.start(*check_start))
    names = list(stream.EXPORT_OUTPUTS) + [f"start_{s}" for s in stream.STATE]
    final = outputs.guard(out, export.EXPORT_KIND, inputs, what="export output")
    info = {"format": fmt, "kind": "stream", "inputs": list(stream.STEP_INPUTS + stream.STATE),
            "outputs": list(stream.EXPORT_OUTPUTS), "start_inputs": list(stream.START_INPUTS),
            "start_outputs": list(stream.STATE), "traced_cells": n_cells,
            "checked_cells": n_cells + 3, "period_s": period_s,
            "physics": bool(getattr(net, "physics", False)), "n_cells": int(net.n_cells),
            "embed_dim": int(net.embed_dim), "torch_version": torch.__version__, **(meta or {})}
    if fmt == "onnx":
        start_final = outputs.guard(start_path(final), export.EXPORT_KIND, inputs,
                                    what="export output (start graph)")
        info["start_path"] = str(start_final)
        info["cell_axis"] = "dynamic (axis 0 of every input and output)"
        with outputs.replace(final, export.EXPORT_KIND) as tmp, \
                outputs.replace(start_final, export.EXPORT_KIND) as tmp_start:
            got = _onnx(graph.step, trace_step, check_step, tmp,
                        list(stream.STEP_INPUTS + stream.STATE), list(stream.EXPORT_OUTPUTS),
                        info)
            got += _onnx(graph.begin, trace_start, check_start, tmp_start,
                         list(stream.START_INPUTS), [f"start_{s}" for s in stream.STATE], info,
                         dynamic=({0: "cells"}, None))
            info["max_rel_error"] = export._compare(ref, got, rtol, names)
    else:
        info["cell_axis"] = "traced at traced_cells, checked at checked_cells"
        with outputs.replace(final, export.EXPORT_KIND) as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing warns on constant buffers read
                traced = torch.jit.trace_module(graph, {"forward": trace_step,
                                                        "start": trace_start}, check_trace=False)
            traced.save(str(tmp), _extra_files={"packtwin.json": json.dumps(info)})
            loaded = export.load_torchscript(tmp)
            with torch.no_grad():
                got = [o.numpy() for o in (*loaded(*check_step), *loaded.start(*check_start))]
            info["max_rel_error"] = export._compare(ref, got, rtol, names)
    info["path"] = str(final)
    outputs.write_text(str(final) + ".json", json.dumps(info, indent=2))
    return info


def onnx_session(path: str | Path, threads: int = 1):
    """An onnxruntime session on the CPU with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _onnx(module: nn.Module, trace_in, check_in, path: Path, in_names: list[str],
          out_names: list[str], info: dict, dynamic=None) -> list[np.ndarray]:
    """Export ``module`` to ONNX at ``path`` (cells axis dynamic) and run ``check_in`` through
    onnxruntime."""
    import onnx

    cells = torch.export.Dim("cells", min=1, max=1 << 20)
    shapes = tuple({0: cells} if d is not None else None
                   for d in (dynamic or [{0: "cells"}] * len(trace_in)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, trace_in, str(path), dynamo=True, input_names=in_names,
                              output_names=out_names, dynamic_shapes=shapes, verbose=False)
    except Exception as exc:
        raise export.ExportError(
            f"ONNX export of the stream {type(module).__name__} failed for the "
            f"{'physics' if info['physics'] else 'data-only'} twin ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}); --format torchscript may work") from exc
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"packtwin": json.dumps(info)})
    onnx.save(model, str(path))
    sess = onnx_session(path)
    given = dict(zip(in_names, check_in))
    feeds = {i.name: given[i.name].numpy() for i in sess.get_inputs()}
    return sess.run(None, feeds)
