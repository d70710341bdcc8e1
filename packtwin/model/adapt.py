"""Embeddings for cells never trained on, fitted from their measured V/I/T alone.

The network is frozen; only one embedding per new cell moves. The loss is the voltage
reconstruction (the voltage decoder reads the *estimated states*, so the embedding must make the
states consistent with the measured voltage) plus, for the physics twin, the physics terms. No
hidden truth is used.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from packtwin.data import splits, windows
from packtwin.model import losses


def fit_new_cell_embeddings(module, truth_ds, cells: Sequence[int], steps: int = 300,
                            lr: float = 0.05, tol: float = 1e-4,
                            scenarios: Sequence[int] | None = None,
                            weights: Mapping[str, float] | None = None,
                            patience: int = 20, snapshots: Sequence[int] | None = None
                            ) -> tuple[torch.Tensor, int]:
    """Fit one embedding per cell in ``cells`` (positional indices into ``truth_ds``).

    Args:
        module: TwinModule (or TwinNet); its parameters are left unchanged.
        truth_ds: store holding the new cells' measured signals (hidden variables unused).
        steps: maximum optimiser steps; lr: Adam learning rate.
        tol: stop once the best loss improved by less than ``tol`` (relative) over ``patience``
            steps.
        scenarios: positional scenarios to fit on (None: every usable one).
        snapshots: positional snapshots to fit on (None: all).
        weights: loss weights (default: the module's, physics terms only if it is a physics twin).
    Returns:
        (embeddings [len(cells), d], steps used).
    """
    net = getattr(module, "net", module)
    w = dict(getattr(module, "weights", losses.DEFAULT_WEIGHTS) if weights is None else weights)
    sel = {"cells": [int(c) for c in cells]}
    if scenarios is not None:
        sel["scenario"] = list(scenarios)
    if snapshots is not None:
        sel["snapshots"] = list(snapshots)
    seq = windows.load_sequences(truth_ds, splits.select(truth_ds, sel, "new-cell selection"),
                                 with_targets=False, source="new-cell store")
    device = net.embedding.weight.device
    feats = torch.from_numpy(seq.features).to(device)
    valid = torch.from_numpy(seq.valid.astype(np.float32)).to(device)
    order = np.argsort(np.asarray(cells))
    row = torch.as_tensor(order[np.searchsorted(np.asarray(cells)[order], seq.cell)],
                          device=device)
    start = net.embedding.weight.detach().mean(0)
    emb = start.repeat(len(cells), 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=lr)
    frozen = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    derivs = net.physics and any(w.get(k, 0) > 0 for k in losses.PHYSICS_TERMS)
    batch = {"features": feats, "valid": valid}
    best, best_step, used = float("inf"), 0, 0
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            for step in range(1, steps + 1):
                out = net(feats, torch.zeros_like(row), valid, embeddings=emb[row], derivs=derivs)
                terms = losses.voltage_term(net, out, batch)
                if net.physics:
                    terms.update(losses.physics_terms(net, out, batch) if derivs else {})
                loss = losses.total(terms, {k: v for k, v in w.items()
                                            if k == "voltage" or k in losses.PHYSICS_TERMS})
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"new-cell embedding fit: loss is {loss.item()} at "
                                             f"step {step}")
                opt.zero_grad()
                loss.backward()
                opt.step()
                used = step
                value = float(loss.detach())
                if value < best * (1 - tol):
                    best, best_step = value, step
                elif step - best_step >= patience:
                    break
    finally:
        for p, rg in zip(net.parameters(), frozen):
            p.requires_grad_(rg)
        net.train(was_training)
    return emb.detach(), used
