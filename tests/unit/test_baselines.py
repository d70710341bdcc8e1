"""The trivial baseline: OCV inversion, coulomb counting, sqrt-of-time SEI, on the synthetic store."""

import numpy as np
import pytest
import torch

from packtwin import schema
from packtwin.data import store
from packtwin.eval import baselines, metrics
from packtwin.physics import ocv_inversion
from packtwin.physics.constants import F, okane2022


@pytest.fixture(scope="module")
def truth(synthetic_store):
    return store.open_store(synthetic_store).load()


def test_ocv_inversion_round_trips():
    const = okane2022()
    line = ocv_inversion.StoichiometryLine.of(const)
    sto = np.array([0.1, 0.3, 0.5, 0.7, 0.85])
    v = ocv_inversion.ocv(torch.as_tensor(sto, dtype=torch.float64), line).numpy()
    np.testing.assert_allclose(baselines.invert_ocv(v, line), sto, atol=1e-9)
    s0, s100 = ocv_inversion.soc_window(const, line)
    v0, v100 = ocv_inversion.ocv(torch.tensor([s0, s100], dtype=torch.float64), line).numpy()
    assert v0 == pytest.approx(const.v_min, abs=1e-6) and v100 == pytest.approx(const.v_max, abs=1e-6)
    # the fresh cell's initial concentrations sit on the line
    assert float(line.sto_p(const.neg.c_init / const.neg.c_max)) == pytest.approx(
        const.pos.c_init / const.pos.c_max)


def test_coulomb_counting_follows_the_charge_passed(truth):
    """Constant-current discharge (first half of synthetic scenario 0): mean c changes by I t / (F V_active)."""
    const = okane2022()
    b = baselines.baseline_dataset(truth, train_scenarios=[0, 1], train_cells=[0, 1, 2],
                                   scenarios=[0], cells=[1])
    cur = truth["current"].isel(scenario=0, cell=1, snapshot=0).values
    t = truth[schema.TIME].values
    n_cc = int(np.argmax(cur < 0))  # the discharge phase: constant positive current
    assert n_cc > 3 and np.allclose(cur[:n_cc], cur[0]) and cur[0] > 0
    c_n = b["c_s_n"].isel(scenario=0, cell=0, snapshot=0).values  # [time, x, r]
    c_p = b["c_s_p"].isel(scenario=0, cell=0, snapshot=0).values
    # uniform particles: one value per time sample
    assert np.allclose(c_n, c_n[:, :1, :1], equal_nan=True)
    q = cur[0] * (t[:n_cc] - t[0])  # [C]
    exp_n = -q / (F * const.neg.eps_s * const.neg.L * const.neg.A)
    exp_p = q / (F * const.pos.eps_s * const.pos.L * const.pos.A)
    np.testing.assert_allclose(c_n[:n_cc, 0, 0] - c_n[0, 0, 0], exp_n, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(c_p[:n_cc, 0, 0] - c_p[0, 0, 0], exp_p, rtol=1e-5, atol=1e-2)
    # start on the OCV: the first voltage sample inverted on the fresh cell's line
    line = ocv_inversion.StoichiometryLine.of(const)
    v0 = truth["voltage"].isel(scenario=0, cell=1, snapshot=0).values[0]
    assert c_n[0, 0, 0] / const.neg.c_max == pytest.approx(
        float(baselines.invert_ocv([v0], line)[0]), rel=1e-5)


def test_padding_is_nan_and_dataset_follows_the_schema(truth):
    b = baselines.baseline_dataset(truth, [0, 1], [0, 1, 2], scenarios=[2, 3])
    assert not schema.validate(b, kind="prediction")
    assert b.attrs["variant"] == "baseline"
    valid = truth["valid"].isel(scenario=[2, 3]).values > 0  # [scenario, snapshot, time]
    assert (~valid).any(), "the synthetic store should have padding in these scenarios"
    for name in ("soc", "c_s_n", "sei_thickness_avg"):
        da = b[name].transpose(schema.SCENARIO, schema.CELL, schema.SNAPSHOT, schema.TIME, ...)
        finite = np.isfinite(da.values).reshape(da.shape[:4] + (-1,)).all(-1)
        np.testing.assert_array_equal(finite, np.broadcast_to(valid[:, None], finite.shape))
    m = metrics.compute_metrics(truth, b)  # scores without errors: finite where valid
    assert np.isfinite(float(m["pack_c_s_n_rmse"]))


def test_sei_sqrt_fit_recovers_synthetic_growth(truth):
    """Synthetic SEI is exactly L = 5 + 2 rel sqrt(n): the fit must recover it per cell."""
    a, b, pooled = baselines.sei_fits(truth, train_scenarios=[0, 1], train_cells=[0, 1, 2])
    L = truth["sei_thickness_end"].isel(scenario=0).values  # [cell, cycle]
    rel = (L[:, 0] - 5.0) / 2.0  # cycle 1: sqrt(1) = 1
    np.testing.assert_allclose(a[:3], 5.0, atol=1e-6)
    np.testing.assert_allclose(b[:3], 2.0 * rel[:3], rtol=1e-6)
    assert pooled.tolist() == [False, False, False, True]  # cell 3 was not trained on
    # the estimate at the end of a snapshot cycle k is the fitted L(k)
    ds = baselines.baseline_dataset(truth, [0, 1], [0, 1, 2], scenarios=[0], cells=[0])
    valid = truth["valid"].isel(scenario=0).values > 0
    for k, cyc in enumerate(truth["snapshot_cycle"].values):
        last = int(np.flatnonzero(valid[k])[-1])
        est = float(ds["sei_thickness_avg"].isel(scenario=0, cell=0, snapshot=k, time=last))
        assert est == pytest.approx(5.0 + 2.0 * rel[0] * np.sqrt(cyc), rel=1e-5)


def test_parameters_are_the_training_mean(truth):
    ds = baselines.baseline_dataset(truth, [0], [0, 1], scenarios=[0], cells=[2, 3])
    mean = float(truth["param_neg_diffusivity"].isel(cell=[0, 1]).mean())
    np.testing.assert_allclose(ds["param_neg_diffusivity"].values, mean)


def test_fresh_init_and_bad_init(truth):
    const = okane2022()
    ds = baselines.baseline_dataset(truth, [0], [0], scenarios=[0], cells=[0], init="fresh")
    assert float(ds["c_s_n"].isel(scenario=0, cell=0, snapshot=0, time=0, x_n=0, r_n=0)) == \
        pytest.approx(const.neg.c_init, rel=1e-6)
    with pytest.raises(ValueError, match="init must be one of"):
        baselines.baseline_dataset(truth, [0], [0], init="magic")
