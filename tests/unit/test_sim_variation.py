"""Cell-to-cell variation: statistics follow the spec and reproduce from the seed."""

import numpy as np
import pytest

from packtwin.sim.variation import relative_draws


@pytest.mark.parametrize("dist", ["normal", "lognormal", "uniform"])
def test_mean_one_and_relative_std_equals_spread(dist):
    spreads = [0.01, 0.05, 0.10]
    x = relative_draws(spreads, [dist] * 3, 40000, seed=3)
    np.testing.assert_allclose(x.mean(0), 1.0, atol=3 * 0.10 / np.sqrt(40000) + 1e-4)
    np.testing.assert_allclose(x.std(0), spreads, rtol=0.03)
    assert (x > 0).all()


def test_same_seed_same_cells_other_seed_other_cells():
    a = relative_draws([0.05, 0.1], ["normal", "lognormal"], 8, seed=7)
    b = relative_draws([0.05, 0.1], ["normal", "lognormal"], 8, seed=7)
    c = relative_draws([0.05, 0.1], ["normal", "lognormal"], 8, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_correlation_is_imposed():
    corr = [[1.0, 0.8, 0.0], [0.8, 1.0, -0.5], [0.0, -0.5, 1.0]]
    x = relative_draws([0.02, 0.02, 0.02], ["normal"] * 3, 50000, seed=0, correlation=corr)
    np.testing.assert_allclose(np.corrcoef(x.T), corr, atol=0.02)


def test_unknown_distribution_is_an_error():
    with pytest.raises(ValueError, match="unknown distribution 'gamma'"):
        relative_draws([0.1], ["gamma"], 4, seed=0)
