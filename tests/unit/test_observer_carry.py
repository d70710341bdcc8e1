"""evaluate's ``observer_carry`` (issue #9 item 7): consecutive snapshot cycles filtered as one
stream. A log cut into two contiguous cycles (cycle 2's sample 0 = cycle 1's last sample, the
generator's convention) and filtered with carry gives exactly what the uncut log gives; snapshots
that are not consecutive, or not contiguous, start from the prior; the key is validated. On the
synthetic store (not a battery model: the contracts only) with a coarse core to stay fast."""

import json

import numpy as np
import pytest
import xarray as xr

from packtwin.data import store, synthetic
from packtwin.eval import evaluate, observer_predict
from packtwin.physics.core import CoreConfig

COARSE = CoreConfig(n_x_n=2, n_x_s=1, n_x_p=2, n_r=4)
CCCV, PULSE = 1, 2  # synthetic scenarios: 25 C 1C (44 valid samples), 25 C 2C pulse (22)
PERIOD = 165.0  # the synthetic store's sample period [s]
CUT = 20  # cycle 1 = samples 0..20 of the log, cycle 2 = samples 20.. (sample 20 twice)
FIRST = 5  # samples compared between differently batched runs
NAMES = ("c_s_n", "c_s_p", "soc", "plating_margin", "voltage")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def uncut(tmp_path_factory):
    """One snapshot (cycle 1) per scenario: the whole log."""
    path = tmp_path_factory.mktemp("carry") / "one.zarr"
    return synthetic.make_store(path, n_snapshots=1, n_cycles=2).load()


def cut_at(ds: xr.Dataset, m: int, cycles=(1, 2)) -> xr.Dataset:
    """``ds``'s snapshot 0 cut into two snapshots at sample ``m``: the first ends at sample m, the
    second starts from it (the same instant recorded twice, as packtwin/sim/scenario.py does)."""
    one = ds.isel({"snapshot": [0]})
    n = one.sizes["time"]
    a = one.assign(valid=one["valid"] * xr.DataArray(np.arange(n) <= m, dims="time"))
    b = one.roll(time=-m)
    b = b.assign(valid=b["valid"] * xr.DataArray(np.arange(n) < n - m, dims="time"))
    out = xr.concat([a, b], dim="snapshot", data_vars="minimal", coords="minimal",
                    compat="override")
    return out.assign_coords(
        snapshot=("snapshot", np.arange(2, dtype="int32"), ds["snapshot"].attrs),
        snapshot_cycle=("snapshot", np.asarray(cycles, "int32"), ds["snapshot_cycle"].attrs))


def _run(ds, variant, **kw):
    return observer_predict.ekf_oracle_dataset(ds, scenarios=[CCCV, PULSE], cells=[0, 1],
                                               core_config=COARSE, variant=variant, **kw)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
@pytest.mark.parametrize("variant", ["ekf", "subspace"])
def test_carried_cycle_goes_on_from_the_previous_final_estimate(uncut, variant):
    """With carry, cycle 2 is the uncut log's continuation (not a restart from a prior): the
    same estimates at every sample, sample 0 included (the previous cycle's last)."""
    whole = _run(uncut, variant, snapshots=[0])
    cut = cut_at(uncut, CUT)
    carried = _run(cut, variant, carry=True)
    L = (uncut["valid"].values[[CCCV, PULSE], 0] > 0).sum(-1)
    for name in NAMES:
        w, c = whole[name].values, carried[name].values
        np.testing.assert_allclose(c[:, :, 0, :CUT + 1], w[:, :, 0, :CUT + 1], rtol=1e-10,
                                   err_msg=name)
        for s in range(2):
            n2 = L[s] - CUT
            np.testing.assert_allclose(c[s, :, 1, :n2], w[s, :, 0, CUT:L[s]], rtol=1e-10,
                                       atol=1e-12, err_msg=f"{name} scenario {s}")
            assert np.isnan(c[s, :, 1, n2:]).all()
    assert carried.attrs["carry"] == 1
    assert carried.attrs["carried_cycles"] == 4 and carried.attrs["prior_starts"] == 4
    # without carry cycle 2 restarts from the prior: the cycle filtered alone, which differs
    # from the carried estimate at its first sample (first samples only: on the synthetic
    # store's made-up voltages a batch's BLAS rounding grows later, test_observer_predict.py)
    fresh = _run(cut, variant, carry=False)
    alone = _run(cut, variant, snapshots=[1])
    for name in NAMES:
        np.testing.assert_allclose(fresh[name].isel(snapshot=[1], time=slice(FIRST)).values,
                                   alone[name].isel(time=slice(FIRST)).values, rtol=1e-4,
                                   err_msg=name)
    assert fresh.attrs["carried_cycles"] == 0 and fresh.attrs["prior_starts"] == 8
    gap = np.abs(fresh["soc"].values[:, :, 1, 0] - carried["soc"].values[:, :, 1, 0])
    assert gap.max() > 1e-3, gap


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_carry_off_is_every_cycle_from_its_prior(uncut):
    """observer_carry false: each cycle's estimates equal that cycle filtered on its own (the
    behaviour before the key existed; first samples, as above)."""
    cut = cut_at(uncut, CUT)
    both = _run(cut, "ekf", carry=False)
    for k in range(2):
        alone = _run(cut, "ekf", snapshots=[k])
        for name in NAMES:
            np.testing.assert_allclose(both[name].isel(snapshot=[k], time=slice(FIRST)).values,
                                       alone[name].isel(time=slice(FIRST)).values, rtol=1e-4,
                                       err_msg=name)


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_only_consecutive_contiguous_snapshots_link(uncut, synthetic_store):
    def links(ds):
        t = ds.isel(scenario=[CCCV, PULSE])
        valid3 = t["valid"].transpose("scenario", "snapshot", "time").values > 0
        valid = np.broadcast_to(valid3[:, None], (2, t.sizes["cell"]) + valid3.shape[1:])
        return observer_predict.carry_links(t, observer_predict._measurements(t, valid, "x"),
                                            valid3)

    np.testing.assert_array_equal(links(cut_at(uncut, CUT)), [[-1, 0], [-1, 0]])
    # snapshots every other cycle: not the next cycle, a restart
    np.testing.assert_array_equal(links(cut_at(uncut, CUT, cycles=(1, 3))), -1)
    # consecutive cycle numbers, but cycle 2 does not begin where cycle 1 ended
    apart = cut_at(uncut, CUT)
    apart["voltage"][dict(snapshot=1, time=0)] += 0.01
    np.testing.assert_array_equal(links(apart)[:, 1], -1)
    # the instant current is not part of the link: the generator records a cycle's sample 0
    # with the period's mean only (it ends no period), so it may differ from the last one's
    instant = cut_at(uncut, CUT)
    instant["current_end"][dict(snapshot=1, time=0)] += 0.3
    np.testing.assert_array_equal(links(instant), [[-1, 0], [-1, 0]])
    # the synthetic store's own snapshots (cycles 1 and 3, each from rest): none link
    far = observer_predict.carried_selection(store.open_store(synthetic_store),
                                             [CCCV, PULSE], [0, 1], [0, 1])
    assert (far == -1).all()
    restarted = _run(cut_at(uncut, CUT, cycles=(1, 3)), "ekf", carry=True)
    assert restarted.attrs["carried_cycles"] == 0


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_late_start_starts_only_the_first_cycle_late(uncut):
    """observer_start_s with carry: cycle 1 from the prior at the start sample, cycle 2 goes on
    from sample 0; both equal the uncut log started late."""
    k = 5
    whole = _run(uncut, "subspace", snapshots=[0], start_s=k * PERIOD)
    carried = _run(cut_at(uncut, CUT), "subspace", carry=True, start_s=k * PERIOD)
    c, w = carried["soc"].values, whole["soc"].values
    assert np.isnan(c[:, :, 0, :k]).all() and np.isfinite(c[:, :, 1, 0]).all()
    np.testing.assert_allclose(c[:, :, 0, k:CUT + 1], w[:, :, 0, k:CUT + 1], rtol=1e-10)
    np.testing.assert_allclose(c[:, :, 1, :10], w[:, :, 0, CUT:CUT + 10], rtol=1e-10)
    assert carried.attrs["start_s"] == k * PERIOD and carried.attrs["carried_cycles"] == 4


def test_split_start_scores_carried_cycles_from_sample_0(uncut):
    from packtwin.eval.predict import selection_of

    cut = cut_at(uncut, CUT)
    sel = selection_of(cut, [CCCV, PULSE], [0, 1], [0, 1])
    cfg = evaluate.Config(store="x", output="o", observers=["ekf"], observer_start_s=5 * PERIOD)
    links = evaluate._carry_links(cut, cfg, sel)
    start = evaluate._split_start(cut, sel, 5, links)
    np.testing.assert_array_equal(start.values, [[5, 0], [5, 0]])
    masked = evaluate.from_sample(cut, start)["valid"].values
    assert (masked[[CCCV, PULSE], 0, :5] == 0).all()
    np.testing.assert_array_equal(masked[[CCCV, PULSE], 1], cut["valid"].values[[CCCV, PULSE], 1])
    np.testing.assert_array_equal(masked[[CCCV, PULSE], 0, 5:],
                                  cut["valid"].values[[CCCV, PULSE], 0, 5:])
    # without carry (or without a late start) every cycle from the same sample, as before
    off = evaluate.Config(store="x", output="o", observers=["ekf"], observer_start_s=5 * PERIOD,
                          observer_carry=False)
    assert evaluate._carry_links(cut, off, sel) is None
    assert evaluate._split_start(cut, sel, 5, None) == 5
    assert evaluate._split_start(cut, sel, 0, links) == 0
    # the start need only lie inside the cycles that start from a prior: cycle 2 of the pulse
    # scenario is 2 samples long, cycle 1 is 21
    assert evaluate._start(cut, dict_cfg(cfg, 20 * PERIOD), [sel], [links]) == 20
    with pytest.raises(observer_predict.ObserverError, match="shortest selected cycle"):
        evaluate._start(cut, dict_cfg(off, 20 * PERIOD), [sel], [None])


def dict_cfg(cfg, start_s):
    import dataclasses

    return dataclasses.replace(cfg, observer_start_s=start_s)


def _argv(store_path, out, **extra):
    args = {"store": str(store_path), "output": str(out),
            "train": json.dumps({"scenario": [CCCV], "cells": [0, 1]}),
            "splits": json.dumps({"pulse": {"scenario": [PULSE], "cells": [0, 1]}}),
            "variants": "{}", "seeds": "[0]", "observers": '["subspace"]', "plots": "false",
            "progress": "false"}
    args.update(extra)
    return [a for k, v in args.items() for a in (f"--{k}", v)]


def test_evaluate_refuses_a_carry_that_is_not_a_bool(synthetic_store, tmp_path):
    cfg, _ = evaluate.parse(_argv(synthetic_store, tmp_path / "e"))
    assert cfg.observer_carry is True  # the default: a BMS stream does not restart
    cfg.observer_carry = "yes"
    with pytest.raises(ValueError, match=r"observer_carry must be true or false, found 'yes'"):
        evaluate.run(cfg, progress=False)
    assert not (tmp_path / "e" / "metrics.zarr").exists()
    with pytest.raises(SystemExit):
        evaluate.parse(_argv(synthetic_store, tmp_path / "e", observer_carry="maybe"))


def test_evaluate_refuses_a_window_that_is_not_positive(synthetic_store, tmp_path):
    cfg, _ = evaluate.parse(_argv(synthetic_store, tmp_path / "e",
                                  observer_identify_window_s="0"))
    with pytest.raises(ValueError, match=r"observer_identify_window_s must be a positive "
                                         r"number of seconds, found 0"):
        evaluate.run(cfg, progress=False)
    assert not (tmp_path / "e" / "metrics.zarr").exists()


def test_evaluate_refuses_a_start_error_outside_half_the_window(synthetic_store, tmp_path):
    cfg, _ = evaluate.parse(_argv(synthetic_store, tmp_path / "e", observer_prior_offset="0.7"))
    with pytest.raises(ValueError, match=r"observer_prior_offset must be within \[-0.5, 0.5\] "
                                         r"of the SOC window, found 0.7"):
        evaluate.run(cfg, progress=False)
    assert not (tmp_path / "e" / "metrics.zarr").exists()


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_evaluate_records_the_carry(uncut, tmp_path):
    path = tmp_path / "cut.zarr"
    cut = cut_at(uncut, CUT).chunk({"scenario": 1, "cell": 1})
    store.create_store(path, cut)
    cut.to_zarr(path, mode="w", encoding=store.encoding_for(cut), **store.ZARR_KW)
    out = tmp_path / "eval"
    cfg, _ = evaluate.parse(_argv(path, out, observer_start_s=str(5 * PERIOD)))
    result = evaluate.run(cfg, progress=False)
    assert json.loads(result.attrs["observer_carry"]) == {"subspace": {"pulse": [2, 2]}}
    report = (out / "report.md").read_text()
    assert "observer_carry: true" in report and "pulse 2/2" in report


@pytest.mark.slow  # a whole filter over full cycles: runs in CI, not in the fast suite
def test_stream_through_both_cycles_equals_the_carried_row(uncut):
    """SubspaceStream (issue #9 item 7) stepped through cycle 1 and then cycle 2 gives the
    estimates of evaluate's subspace row with carry; cycle 2's sample 0 is not stepped again (it
    is cycle 1's last sample, the same instant), and the row's estimate there is the stream's."""
    from packtwin.physics.core import ReducedCore
    from packtwin.physics.subspace_stream import SubspaceStream

    cut = cut_at(uncut, CUT)
    row = _run(cut, "subspace", carry=True).isel(scenario=0)  # CCCV, cells 0 and 1
    assert row.attrs["resets"] == 0  # the stream has no restarts: a fair comparison
    core = ReducedCore(observer_predict.oracle_params(cut, [0, 1]), COARSE)
    grid = {d: cut[d].values.copy() for d in ("x_n", "r_n", "x_p", "r_p")}
    V, I, T = (cut[n].isel(scenario=CCCV, cell=[0, 1]).transpose("cell", "snapshot", "time")
               .values for n in ("voltage", "current", "temperature"))
    lengths = (cut["valid"].values[CCCV] > 0).sum(-1)
    stream = SubspaceStream.from_first_sample(core, V[:, 0, 0], I[:, 0, 0], T[:, 0, 0], grid)
    steps = {k: [stream.step(V[:, k, j], I[:, k, j], T[:, k, j], PERIOD)
                 for j in range(1, lengths[k])] for k in (0, 1)}
    for name in ("soc", "voltage", "c_s_n", "c_s_p", "plating_margin"):
        for k in (0, 1):
            got = np.stack([getattr(e, name).numpy() for e in steps[k]], 1)
            want = row[name].isel(snapshot=k, time=slice(1, lengths[k])).values
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} cycle {k + 1}")
        np.testing.assert_array_equal(row[name].isel(snapshot=1, time=0).values,
                                      row[name].isel(snapshot=0, time=lengths[0] - 1).values)
