"""The shared OCV inversion (packtwin.physics.ocv_inversion): round trip, limits, the baseline's use."""

import numpy as np
import pytest
import torch

from packtwin.eval import baselines
from packtwin.physics import ocp, ocv_inversion
from packtwin.physics.constants import okane2022


def test_known_case_fresh_cell_initial_state():
    # The parameter set's initial concentrations lie on the line by construction: their OCV,
    # computed independently from the two OCP functions, must invert back to them.
    const = okane2022()
    line = ocv_inversion.StoichiometryLine.of(const)
    sto_n = torch.tensor(const.neg.c_init / const.neg.c_max, dtype=torch.float64)
    sto_p = torch.tensor(const.pos.c_init / const.pos.c_max, dtype=torch.float64)
    assert float(line.sto_p(sto_n)) == pytest.approx(float(sto_p), abs=1e-12)
    v0 = ocp.ocp_positive(sto_p) - ocp.ocp_negative(sto_n)
    assert float(ocv_inversion.invert_ocv(v0, line)) == pytest.approx(float(sto_n), abs=1e-9)


def test_round_trip_shape_and_clamping():
    const = okane2022()
    line = ocv_inversion.StoichiometryLine.of(const)
    lo, hi = line.bounds()
    sto = torch.linspace(lo + 0.05, hi - 0.05, 12, dtype=torch.float64).reshape(3, 4)
    v = ocv_inversion.ocv(sto, line)
    back = ocv_inversion.invert_ocv(v, line)
    assert back.shape == (3, 4) and back.dtype == torch.float64
    # The graphite OCP spline is not strictly monotonic everywhere (a nearly flat plateau), so the
    # exact property is the voltage match; the stoichiometry is recovered to the plateau's width.
    torch.testing.assert_close(ocv_inversion.ocv(back, line), v, atol=1e-9, rtol=0)
    torch.testing.assert_close(back, sto, atol=1e-3, rtol=0)
    # float32 voltages (the twin's inputs) are computed in float64: the OCV is matched to float32
    # round-off (on the graphite plateaus that is still a visible stoichiometry error).
    back32 = ocv_inversion.invert_ocv(v.float(), line)
    torch.testing.assert_close(ocv_inversion.ocv(back32, line), v.float().double(), atol=1e-6,
                               rtol=0)
    out = ocv_inversion.invert_ocv(torch.tensor([0.0, 10.0]), line)
    assert lo < float(out[0]) < lo + 1e-3 and hi - 1e-3 < float(out[1]) < hi


def test_soc_window_and_baseline_share_the_implementation():
    const = okane2022()
    line = ocv_inversion.StoichiometryLine.of(const)
    s0, s100 = ocv_inversion.soc_window(const, line)
    assert s0 < s100
    v = ocv_inversion.ocv(torch.tensor([s0, s100], dtype=torch.float64), line)
    np.testing.assert_allclose(v.numpy(), [const.v_min, const.v_max], atol=1e-6)
    np.testing.assert_allclose(baselines.invert_ocv([3.7], line),
                               ocv_inversion.invert_ocv(torch.tensor([3.7]), line).numpy())
