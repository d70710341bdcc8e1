"""The observer on a PyBaMM DFN log (the core is no longer exact): the log path, a voltage-fed
correction that undoes a wrong prior (and fails without it), stream == whole sequence."""

import numpy as np
import pytest
import torch

from packtwin.eval.dfn_logs import Condition, dfn_logs, draw, to_core_grid
from packtwin.eval.observer_bench import field_errors, run_learned, run_open_loop, summarise
from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.learned_observer import ObserverNet
from packtwin.physics.observer_stream import PackStream, cell_soc_window
from packtwin.sim.reference import fine_model_config

SMALL = CoreConfig(n_x_n=4, n_x_s=2, n_x_p=4, n_r=8)
PERIOD = 10.0


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def dfn_case():
    """One drawn cell, 4 min of 1C after a 2 min 1C lead-in (the log starts under load), a
    prior 30 % SOC off; coarse DFN mesh (enough for a few-minute log)."""
    cells, nominal = draw(200, 1)
    core = ReducedCore(CoreParams.from_truth({k: [c[k] for c in cells] for k in cells[0]}),
                       SMALL)
    cond = Condition("test_1C", 25.0, profile=((1.0, 240.0),), lead_s=(120.0, 120.0))
    g = torch.Generator().manual_seed(0)
    log = dfn_logs(core, cells, nominal, cond, PERIOD, g, fine_model_config(12, 6))
    return core, log


def test_dfn_log_layout_and_truth_on_the_core_grid(dfn_case):
    core, log = dfn_case
    assert log["I"].shape == (1, 24) and float(log["I"][0, 0]) == pytest.approx(5.0)
    assert log["c_n"].shape == (1, 24, 4, 8) and log["c_p"].shape == (1, 24, 4, 8)
    assert abs(float(log["prior_soc_error"][0])) == pytest.approx(0.3, abs=1e-9) or \
        float(log["prior_soc"][0]) in (0.02, 0.98)
    # the core started from the DFN's own state follows the DFN: the log's truth is on the
    # core's grid in the core's units (a wrong interpolation or unit shows here)
    lo, hi = cell_soc_window(core)
    c_n, c_p, v = run_open_loop(core, log, lo, hi, PERIOD, start=log["true_start"])
    en, ep = field_errors(core, c_n, c_p, log)
    assert en.max() < 1.0 and ep.max() < 1.0
    assert float(((v - log["V_true"]) ** 2).mean().sqrt()) < 0.03


def test_to_core_grid_reproduces_a_linear_field():
    core = ReducedCore(CoreParams.nominal(1), SMALL)
    x = np.linspace(0.0, core.grid_x.L_n, 20)
    r = np.linspace(0.0, 1.0, 15)
    f = 100.0 * x[:, None] / core.grid_x.L_n + 7.0 * r[None, :]
    out = to_core_grid(core, f, x, r, "n")
    want = (100.0 * core.grid_x.x_n()[:, None] / core.grid_x.L_n
            + 7.0 * core.sphere["centres"][None, :])
    assert torch.allclose(out, want, atol=1e-9)


def _proportional_net(gain: float) -> ObserverNet:
    """A fixed proportional correction along the inventory line: d_soc = bound tanh(gain e /
    10 mV), no tilt (gain 0 switches the correction off)."""
    net = ObserverNet().double()
    with torch.no_grad():
        net.mlp[-1].bias.copy_(torch.tensor([gain, 0.0]))
    return net


def test_observer_corrects_a_wrong_prior_on_a_dfn_log(dfn_case):
    core, log = dfn_case
    lo, hi = cell_soc_window(core)
    on = summarise(core, *run_learned(core, _proportional_net(0.5), log, lo, hi, PERIOD), log,
                   PERIOD, last_s=60.0)
    off = summarise(core, *run_learned(core, _proportional_net(0.0), log, lo, hi, PERIOD), log,
                    PERIOD, last_s=60.0)
    # off: the wrong prior stays (~20 % of c_max); on: the voltage innovation pulls it in
    assert off["c_s_n_rmse_pct_last_5min"] > 10.0
    assert on["c_s_n_rmse_pct_last_5min"] < 0.25 * off["c_s_n_rmse_pct_last_5min"]
    assert on["c_s_p_rmse_pct_last_5min"] < 0.25 * off["c_s_p_rmse_pct_last_5min"]
    assert on["voltage_rmse_mV"] < off["voltage_rmse_mV"]


def test_stream_equals_whole_sequence_on_a_dfn_log(dfn_case):
    core, log = dfn_case
    state = log["true_start"]
    grid = {"x_n": core.grid_x.x_n().numpy(), "r_n": np.linspace(0.1, 1.0, 5),
            "x_p": core.grid_x.x_p().numpy(), "r_p": np.linspace(0.1, 1.0, 5)}
    whole = PackStream(core, state, grid).run(log["V"], log["I"], log["T"], PERIOD)
    stream = PackStream(core, state, grid)
    for k in range(log["I"].shape[1]):
        est = stream.step(log["V"][:, k], log["I"][:, k], log["T"][:, k], PERIOD)
        ref = whole[k]
        for name in ("voltage", "innovation", "soc", "c_s_n", "c_s_p", "plating_margin"):
            a, b = getattr(est, name), getattr(ref, name)
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-9), (k, name)
    # the DFN's current steps at the lead-in's end and the temperature drifts: not a trivial log
    assert float(log["T"].max() - log["T"].min()) > 0.0


def test_coulomb_counting_moves_the_same_lithium_as_the_core():
    """The baseline's uniform particles follow the charge exactly as the core's particles do
    (their mean concentrations agree), only without gradients."""
    from packtwin.eval.observer_bench import run_coulomb
    from packtwin.physics.particle_fv import particle_average

    core = ReducedCore(CoreParams.nominal(2), SMALL)
    lo, hi = cell_soc_window(core)
    I = torch.tensor([[5.0] * 10 + [-2.5] * 10, [10.0] * 20], dtype=torch.float64)
    log = {"I": I, "T": torch.full_like(I, 298.15),
           "prior_soc": torch.tensor([0.8, 0.7], dtype=torch.float64)}
    a, b = run_open_loop(core, log, lo, hi, PERIOD), run_coulomb(core, log, lo, hi, PERIOD)
    for k in (0, 1):
        mean_a = particle_average(a[k], core.sphere).mean(-1)
        mean_b = particle_average(b[k], core.sphere).mean(-1)
        assert torch.allclose(mean_a, mean_b, rtol=1e-9)
    # not vacuous: the charge moved the state, and the core's particles have gradients
    assert float((b[0][:, -1] - b[0][:, 0]).abs().max()) > 1000.0
    assert float((a[0][..., -1] - a[0][..., 0]).abs().max()) > 10.0
