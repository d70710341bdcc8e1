"""The guards shared by the filters' updates (packtwin/physics/robust_update.py)."""

import math

import torch

from packtwin.physics.core import CoreConfig, ReducedCore
from packtwin.physics.core_params import CoreParams
from packtwin.physics.ekf import CoreEKF, EKFConfig, soc_direction
from packtwin.physics.robust_update import huber_noise, scaled_step, shell_bounds

TINY = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=6)


def test_scaled_step_keeps_the_direction_and_the_bounds():
    c_max = torch.tensor([10.0, 10.0, float("inf")], dtype=torch.float64)
    lo, hi = shell_bounds(c_max)
    assert lo.tolist() == [0.05, 0.05, 0.0] and hi[:2].tolist() == [9.95, 9.95]
    assert math.isinf(float(hi[2]))
    x = torch.tensor([[5.0, 5.0, 100.0], [5.0, 5.0, 100.0]], dtype=torch.float64)
    dx = torch.tensor([[1.0, -1.0, 10.0], [8.0, -8.0, -50.0]], dtype=torch.float64)
    out = scaled_step(x, dx, lo, hi)
    assert torch.equal(out[0], x[0] + dx[0])  # inside: the whole step
    a = (out[1] - x[1]) / dx[1]  # outside: one factor for the whole row, at the first bound
    assert torch.allclose(a, a[0].expand(3)) and abs(float(a[0]) - 4.95 / 8.0) < 1e-12
    assert float(out[1, 0]) == 9.95 and float((out[1, 0] - x[1, 0]) + (out[1, 1] - x[1, 1])) == 0.0


def test_huber_noise_inflates_only_beyond_the_gate():
    e = torch.tensor([0.0, 0.02, 0.2], dtype=torch.float64)
    S0 = torch.full((3,), 0.01 ** 2, dtype=torch.float64)
    R = huber_noise(e, S0, 1e-4, 4.0)
    assert R[:2].tolist() == [1e-4, 1e-4]  # 0 and 2 sigma: untouched
    assert abs(float(R[2]) - 1e-4 * 20.0 / 4.0) < 1e-15  # 20 sigma: R x 5
    assert torch.equal(huber_noise(e, S0, 1e-4, float("inf")), torch.full((3,), 1e-4,
                                                                        dtype=torch.float64))


def _one_step(config: EKFConfig, ce: float = 1000.0, offset_v: float = 0.3):
    core = ReducedCore(CoreParams.nominal(1), TINY)
    s = core.initial_state()
    s = s._replace(c_e=torch.full_like(s.c_e, ce))
    ekf = CoreEKF(core, config)
    est = ekf.init(s, torch.full((1,), 0.87, dtype=torch.float64), 5.0, 298.15)
    V = core.measure(s, torch.tensor([5.0], dtype=torch.float64),
                     torch.tensor([298.15], dtype=torch.float64)).voltage + offset_v  # 300 mV
    new, innov = ekf.step(est, torch.tensor([5.0], dtype=torch.float64),
                          torch.tensor([298.15], dtype=torch.float64), V, 10.0)
    pred = core.step(ekf.state(est), torch.tensor([5.0], dtype=torch.float64),
                     torch.tensor([298.15], dtype=torch.float64), 10.0)
    return core, ekf, est, new, pred, innov


def test_ekf_guards(one_torch_thread):
    # the electrolyte guard: no update at all, the state is the core's prediction
    core, ekf, _, new, pred, _ = _one_step(EKFConfig(ce_guard=2000.0))
    assert float(pred.c_e.min()) < 2000.0
    # ... also where the voltage is not a number: a blocked cell moves by exactly nothing
    core, ekf, est, new, pred, _ = _one_step(EKFConfig(ce_guard=2000.0), offset_v=float("nan"))
    assert torch.isfinite(new.x).all() and torch.isfinite(new.P).all()
    assert torch.allclose(ekf.state(new).c_n, pred.c_n)
    assert torch.allclose(ekf.state(new).c_n, pred.c_n) and torch.allclose(ekf.state(new).c_e,
                                                                          pred.c_e)
    # a 300 mV innovation many sigma outside a confident prior: the Huber weight moves the
    # state less than the plain update does
    moved = {}
    for name, cfg in {"plain": EKFConfig(prior_soc_std=0.01, gate_sigma=float("inf")),
                      "gated": EKFConfig(prior_soc_std=0.01, gate_sigma=4.0)}.items():
        core, ekf, est, new, pred, innov = _one_step(cfg)
        assert abs(float(innov[0])) > 0.2
        moved[name] = float((ekf.state(new).c_n - pred.c_n).abs().max())
    assert moved["gated"] < 0.8 * moved["plain"], moved
    # the bounded step keeps every shell inside [0.5 %, 99.5 %] of c_max; the clamp does not
    core, ekf, est, new, pred, _ = _one_step(EKFConfig(prior_soc_std=3.0, bounded_step=False))
    assert float(ekf.state(new).c_n.max()) > 0.999 * core.design.constants.neg.c_max
    core, ekf, est, new, pred, _ = _one_step(EKFConfig(bounded_step=True, prior_soc_std=3.0))
    st = ekf.state(new)
    for c, cm in ((st.c_n, core.design.constants.neg.c_max), (st.c_p, core.design.constants.pos.c_max)):
        assert float(c.min()) >= 0.005 * cm - 1e-9 and float(c.max()) <= 0.995 * cm + 1e-9
    assert soc_direction(core, torch.full((1,), 0.87, dtype=torch.float64)).shape[1] == ekf.n


def test_stripping_rest_marks_only_rests_within_the_window_after_a_charge():
    from packtwin.physics.robust_update import since_charge, stripping_rest

    I = torch.tensor([-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 5.0, 0.0, -0.1, 0.0], dtype=torch.float64)
    since = torch.full((1,), float("inf"), dtype=torch.float64)
    marks = []
    for k in range(len(I)):
        since = since_charge(since, I[k:k + 1], 10.0, 0.25)
        marks.append(bool(stripping_rest(since, I[k:k + 1], 0.25, 25.0)))
    # charging: 0 s; rests at 10, 20 s: marked; 30 s: past the window; charge again, rest
    # marked; a discharge ends it at once: the rest after it is not marked, nor after a -0.1 A
    # balancing current (not a charge)
    assert marks == [False, True, True, False, False, True, False, False, False, False]
    assert float(since) == float("inf")
    # before any charge: never marked
    fresh = since_charge(torch.full((1,), float("inf"), dtype=torch.float64),
                         torch.zeros(1, dtype=torch.float64), 10.0, 0.25)
    assert not bool(stripping_rest(fresh, torch.zeros(1, dtype=torch.float64), 0.25, 1e9))


def test_strip_window_is_on_only_for_a_core_without_plating():
    from packtwin.physics.robust_update import STRIP_GUARD_S, strip_window

    assert strip_window(None, False) == STRIP_GUARD_S == 1800.0
    assert strip_window(None, True) == 0.0  # the core's own plated lithium explains the rest
    assert strip_window(600.0, True) == 600.0 and strip_window(0.0, False) == 0.0
