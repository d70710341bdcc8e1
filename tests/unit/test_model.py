import pytest
import torch

from packtwin.quantities import Features
from packtwin.data.datamodule import TwinDataModule
from packtwin.model import losses
from packtwin.model.module import TwinModule
from packtwin.model.twinnet import TwinNet
from packtwin.physics.conservation import average_concentration, lithium_balance_residual


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dm(synthetic_store):
    d = TwinDataModule(str(synthetic_store), train={"cells": [0, 1, 2]}, batch_size=4)
    d.setup("fit")
    return d


@pytest.fixture(scope="module")
def batch(dm):
    return next(iter(dm.train_dataloader()))


def make_net(dm, physics=True, **kw):
    torch.manual_seed(0)
    net = TwinNet(dm.n_cells, dm.info, physics=physics, hidden=16, n_modes=4, trunk_width=8, **kw)
    net.set_stats(dm.stats)
    return net


@pytest.mark.parametrize("physics", [True, False])
def test_outputs_have_the_store_shapes(dm, batch, physics):
    net = make_net(dm, physics)
    out = net(batch["features"], batch["cell"], batch["valid"], derivs=physics)
    B, T = batch["valid"].shape
    assert out["theta_n"].shape == batch["c_s_n"].shape
    assert out["theta_p"].shape == batch["c_s_p"].shape
    for name in ("sei_thickness_avg", "plating_margin", "soc", "voltage"):
        assert out[name].shape == (B, T)
        assert torch.isfinite(out[name]).all()
    assert out["params_z"].shape == (B, len(dm.info["param_keys"]))


def test_physics_switch_keeps_the_same_network(dm):
    n_on = sum(p.numel() for p in make_net(dm, True).parameters())
    n_off = sum(p.numel() for p in make_net(dm, False).parameters())
    assert n_on == n_off


def test_decoder_rho_derivatives_match_finite_differences(dm, batch):
    net = make_net(dm, True)
    trunk = net.trunk["n"].double()  # float64 so the second difference is not roundoff
    x = torch.full((5,), 0.3, dtype=torch.float64)
    rho = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    phi, d1, d2 = trunk(x, rho, derivs=True)
    h = 1e-3
    up, dn = trunk(x, rho + h), trunk(x, rho - h)
    torch.testing.assert_close(d1, (up - dn) / (2 * h), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d2, (up - 2 * phi + dn) / h ** 2, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("grid", ["nodes_0_to_1", "cell_centres"])
def test_structural_physics_conserves_lithium_exactly(dm, batch, grid):
    """With no side-reaction drift and the initial state estimated once, each electrode's
    lithium follows the measured charge, on a grid spanning [0, 1] and on PyBaMM's
    finite-volume cell centres (decoder extended to the surface rho = 1)."""
    info = dict(dm.info)
    if grid == "cell_centres":
        info["r_n"] = info["r_p"] = [0.1, 0.3, 0.5, 0.7, 0.9]
    torch.manual_seed(0)
    net = TwinNet(dm.n_cells, info, physics=True, hidden=16, n_modes=4, trunk_width=8,
                  side_reaction_max=0.0, running_initial_state=False)
    net.set_stats(dm.stats)
    out = net(batch["features"], batch["cell"], batch["valid"])
    q = Features.unpack(batch["features"]).charge_passed  # [C]
    q_c = q - q[:, :1]
    for k, (e, el) in enumerate((("n", net.constants.neg), ("p", net.constants.pos))):
        c_max = net.c_max[k]
        rho = net.r_n if e == "n" else net.r_p
        assert out[f"theta_{e}"].shape[-1] == rho.numel()
        avg = average_concentration(out[f"theta_{e}"], rho).mean(-1) * c_max
        cap = 1 + 0.1 * torch.tanh(net.capacity_head(net.embedding(batch["cell"])))[:, k:k + 1]
        res = lithium_balance_residual(avg, avg[:, :1], q_c / cap, el)
        ok = batch["valid"] > 0
        assert res[ok].abs().max() / c_max < 1e-5
    # the data-only twin has no such constraint
    off = make_net(dm, False)(batch["features"], batch["cell"], batch["valid"])
    assert torch.isfinite(off["theta_n"]).all()


def test_plain_module_step_reduces_the_loss(dm, batch):
    """TwinNet + losses train without Lightning."""
    net = make_net(dm, True)
    table = torch.as_tensor(dm.param_table(), dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(10):
        out = net(batch["features"], batch["cell"], batch["valid"], derivs=True)
        terms = losses.data_terms(net, out, batch, table)
        terms.update(losses.physics_terms(net, out, batch))
        assert set(losses.PHYSICS_TERMS) <= set(terms)
        loss = losses.total(terms, losses.DEFAULT_WEIGHTS)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        opt.step()
        first = float(loss.detach()) if first is None else first
    assert float(loss.detach()) < 0.7 * first


def test_lightning_module_training_step_and_nan_guard(dm, batch):
    m = TwinModule(dm.n_cells, dm.info, hidden=16, n_modes=4, trunk_width=8)
    m.net.set_stats(dm.stats)
    m.param_table.copy_(torch.as_tensor(dm.param_table(), dtype=torch.float32))
    loss = m.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    bad = dict(batch)
    bad["soc"] = batch["soc"].clone()
    bad["soc"][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"loss term 'soc' is nan at global step 0"):
        m.training_step(bad, 0)


def test_physics_off_disables_every_physics_term(dm):
    m = TwinModule(dm.n_cells, dm.info, physics=False, weights={"fick_n": 5.0})
    assert all(m.weights[k] == 0 for k in losses.PHYSICS_TERMS)
    with pytest.raises(ValueError, match="unknown loss terms"):
        TwinModule(dm.n_cells, dm.info, weights={"fick": 1.0})


def test_identified_params_round_trip_normalisation(dm):
    net = make_net(dm)
    raw = torch.as_tensor(dm.param_table(), dtype=torch.float32)
    back = net.denormalise_params(net.normalise_params(raw))
    torch.testing.assert_close(back, raw, rtol=1e-4, atol=0)
    assert net.identified_params().shape == raw.shape


def test_checkpoints_from_another_schema_or_pack_are_refused():
    from packtwin.model.module import CheckpointMismatchError, check_checkpoint

    good = {"packtwin_schema_version": "1.0", "hyper_parameters": {"n_cells": 4}}
    check_checkpoint(good, n_cells=4)
    with pytest.raises(CheckpointMismatchError, match="schema version '2.0'"):
        check_checkpoint({**good, "packtwin_schema_version": "2.0"}, n_cells=4)
    with pytest.raises(CheckpointMismatchError, match="not written by packtwin"):
        check_checkpoint({"hyper_parameters": {}})
    with pytest.raises(CheckpointMismatchError, match="n_cells=4, but the store has 8"):
        check_checkpoint(good, n_cells=8)


@pytest.mark.parametrize("physics", [True, False])
def test_estimates_are_causal(dm, batch, physics):
    # Changing measurements after sample k must not change any estimate at samples <= k (the
    # physics twin's OCV initial state reads the first sample, itself a measurement).
    net = make_net(dm, physics).eval()
    f, cell, valid = batch["features"], batch["cell"], batch["valid"]
    k = f.shape[1] // 2
    g = f.clone()
    g[:, k + 1:, :3] += 0.3  # voltage, current, temperature after k
    with torch.no_grad():
        a, b = net(f, cell, valid), net(g, cell, valid)
    for name in ("theta_n", "theta_p", "soc", "voltage", "sei_thickness_avg", "plating_margin"):
        torch.testing.assert_close(a[name][:, :k + 1], b[name][:, :k + 1])
        assert not torch.allclose(a[name][:, k + 1:], b[name][:, k + 1:]), name


def test_physics_initial_state_and_soc_follow_the_ocv_inversion(dm, batch):
    from packtwin.quantities import FEATURES
    from packtwin.physics import ocv_inversion

    net = make_net(dm, physics=True, initial_correction_max=0.0).eval()
    with torch.no_grad():
        out = net(batch["features"], batch["cell"], batch["valid"])
    v0 = batch["features"][:, 0, FEATURES.index("voltage")]
    sto_n0 = ocv_inversion.invert_ocv(v0, net.line)
    s0, s100 = ocv_inversion.soc_window(net.constants, net.line)
    scale = net.constants.neg.c_max / float(net.c_max[0])
    # No correction and no charge passed at the first sample: the OCV state up to the bounded
    # side-reaction drift (+-side_reaction_max) of the negative electrode.
    soc_ocv = ((sto_n0 - s0) / (s100 - s0)).float()
    tol = net.side_reaction_max * scale / (s100 - s0) + 1e-5
    assert (out["soc"][:, 0] - soc_ocv).abs().max() <= tol
