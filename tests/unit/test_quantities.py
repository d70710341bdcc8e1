"""The twin's quantities are declared once and agree with the store's schema."""

import numpy as np
import pytest
import torch

from packtwin import quantities, schema
from packtwin.physics.constants import okane2022


def test_features_are_named_not_positional():
    packed = torch.arange(2 * 3 * len(quantities.FEATURES), dtype=torch.float32).reshape(
        2, 3, len(quantities.FEATURES))
    f = quantities.Features.unpack(packed)
    for name in quantities.FEATURES:
        torch.testing.assert_close(getattr(f, name), packed[..., quantities.feature_index(name)])
    torch.testing.assert_close(f.pack(torch.stack), packed)
    assert set(quantities.FEATURES) & set(schema.HIDDEN) == set()  # no hidden state as input
    assert quantities.FEATURE_UNITS["charge_passed"] == quantities.CHARGE_UNITS == "C"
    with pytest.raises(ValueError, match="features have 3 channels"):
        quantities.Features.unpack(torch.zeros(1, 2, 3))
    with pytest.raises(KeyError, match="unknown feature 'soc'"):
        quantities.feature_index("soc")


def test_electrodes_agree_with_the_schema_and_the_constants():
    cell = okane2022()
    for e in quantities.ELECTRODES:
        assert schema.VARIABLES[e.variable].dims[-2:] == (e.x_dim, e.r_dim)
        assert e.constants(cell) is cell.electrode(e.domain)
        assert e.param("radius") in schema.PARAMETERS
        assert quantities.electrode_of(e.variable) is e
    assert [e.index for e in quantities.ELECTRODES] == list(range(len(quantities.ELECTRODES)))
    assert quantities.NEG.domain == "negative" and quantities.POS.domain == "positive"


def test_estimated_outputs_are_declared_hidden_or_measured_variables():
    for name in quantities.ESTIMATED:
        assert schema.VARIABLES[name].kind in ("hidden", "measured"), name
    assert len(quantities.NET_OUTPUTS) == len(quantities.ESTIMATED)
    assert quantities.NET_OUTPUTS[:2] == ("theta_n", "theta_p")


def test_charge_passed_is_in_coulombs(synthetic_store):
    from packtwin.data import splits, store, windows

    ds = store.open_store(synthetic_store)
    seq = windows.load_sequences(ds, splits.select(ds, {"scenario": [0], "cells": [0]}),
                                 with_targets=False)
    f = quantities.Features.unpack(seq.features)
    dt = float(np.diff(ds[schema.TIME].values)[0])
    ok = seq.valid[0]
    np.testing.assert_allclose(f.charge_passed[0][ok][1:],
                               np.cumsum(f.current[0][1:] * dt)[ok[1:]], rtol=1e-4)
