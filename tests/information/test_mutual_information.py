import math

import numpy as np
import pytest

from pdeflow.information import (
    binned_mutual_information,
    gaussian_mutual_information,
    ksg_mutual_information,
    mixed_ksg_mutual_information,
)


def _gaussian_pair(rho: float, n: int, dims: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dims))
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(n, dims))
    return x, y, -0.5 * dims * math.log2(1 - rho**2)


def test_gaussian_closed_form():
    rho = 0.6
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_mutual_information(cov, 1) == pytest.approx(-0.5 * math.log2(1 - rho**2))
    assert gaussian_mutual_information(np.eye(4), 2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("rho, dims", [(0.0, 1), (0.5, 1), (0.9, 1), (0.8, 2)])
def test_ksg_recovers_known_gaussian_mutual_information(rho, dims):
    x, y, exact = _gaussian_pair(rho, 2000, dims)
    assert ksg_mutual_information(x, y, k=3) == pytest.approx(exact, abs=0.06)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_binning_recovers_known_gaussian_mutual_information(rho):
    x, y, exact = _gaussian_pair(rho, 20000, 1, seed=1)
    # 30 bins for 20,000 samples: coarser bins lose information at high correlation (20 bins: -0.064 bits at
    # rho = 0.9), finer ones overestimate from too few samples per bin (60 bins: +0.08 bits at rho = 0)
    assert binned_mutual_information(x, y, bins=30) == pytest.approx(exact, abs=0.06)


def test_mixed_estimator_on_a_gaussian_mixture_and_binning_on_labels():
    # X | Y=c ~ N(mu_c, 1) for 2 equiprobable classes; the exact I(X; Y) by numerical integration
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=4000)
    mu = np.array([-1.0, 1.0])
    x = mu[labels] + rng.normal(size=4000)
    grid = np.linspace(-9, 9, 20001)
    dens = np.stack([np.exp(-0.5 * (grid - m) ** 2) / math.sqrt(2 * math.pi) for m in mu])
    mixture = dens.mean(0)
    exact = 0.5 * sum(np.trapezoid(d * np.log2(d / mixture), grid) for d in dens)
    assert mixed_ksg_mutual_information(x, labels, k=5) == pytest.approx(exact, abs=0.05)
    assert binned_mutual_information(x, labels, bins=30) == pytest.approx(exact, abs=0.05)


def test_deterministic_function_of_distinct_inputs_gives_its_entropy():
    x = np.arange(64, dtype=float)
    t = (x // 8)  # 8 equiprobable values: I(X; T) = H(T) = 3 bits
    assert binned_mutual_information(x, t.astype(int), bins=64) == pytest.approx(3.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same samples"):
        ksg_mutual_information(np.zeros((10, 1)), np.zeros((9, 1)))
    with pytest.raises(ValueError, match="NaN"):
        ksg_mutual_information(np.full((10, 1), np.nan), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="k must be"):
        ksg_mutual_information(np.zeros((3, 1)), np.zeros((3, 1)), k=5)
    with pytest.raises(ValueError, match="bins"):
        binned_mutual_information(np.zeros(10), np.zeros(10, int), bins=1)
