"""Tests for helpers.isoperimetry (chapter "Adversarial examples are test error in noise")."""

import numpy as np
import pytest
import torch
from scipy import stats

from helpers.topics.adversarial_noise import (
    cdf_gap,
    error_sets,
    isoperimetric_cdf,
    isoperimetric_distance,
    line_search_distance,
    linear_error_distance,
    linear_error_distance_linf,
    median_ratio_interval,
    noise_error_rate,
    pgd_distance,
)


def test_isoperimetric_distance_solves_phi_equation():
    mu = np.array([1e-4, 0.01, 0.3, 0.5, 0.8])
    d = isoperimetric_distance(mu, 0.7)
    np.testing.assert_allclose(stats.norm.cdf(-d / 0.7), mu, rtol=1e-12)
    assert isoperimetric_distance(0.5, 2.0) == pytest.approx(0.0, abs=1e-15)
    assert isoperimetric_cdf(0.0, 0.1, 1.0) == pytest.approx(0.1)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_bad_mu_and_sigma_raise(bad):
    with pytest.raises(ValueError, match="mu"):
        isoperimetric_distance(bad, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        isoperimetric_distance(0.1, -bad - 1)
    with pytest.raises(ValueError, match="dim"):
        error_sets(1, 0.1, 1.0)


def test_error_sets_have_their_stated_measure_and_respect_the_bound():
    n, dim, mu, sigma = 40_000, 50, 0.1, 1.5
    z = sigma * np.random.default_rng(0).standard_normal((n, dim))
    tol = 4 * np.sqrt(mu * (1 - mu) / n)  # four binomial standard errors
    for e in error_sets(dim, mu, sigma, seed=1).values():
        d = e.distance(z)
        assert abs(np.mean(d == 0) - mu) < tol, e.name
        assert cdf_gap(d, mu, sigma) > -3 / np.sqrt(n), e.name  # DKW: fails w.p. < 1e-7


def test_half_space_distances_are_exactly_the_bound_in_law():
    n, sigma, mu = 40_000, 1.0, 0.05
    z = sigma * np.random.default_rng(2).standard_normal((n, 20))
    d = error_sets(20, mu, sigma, seed=0)["half-space"].distance(z)
    # the distance CDF of a half-space equals the bound: a KS test on the positive part
    ks = stats.kstest(d[d > 0], lambda e: (isoperimetric_cdf(e, mu, sigma) - mu) / (1 - mu))
    assert ks.pvalue > 1e-3
    assert abs(np.median(d) / isoperimetric_distance(mu, sigma) - 1) < 0.03


def test_cdf_gap_detects_distances_that_are_too_large():
    d = np.full(1000, 5.0)  # no error closer than 5 although mu = 0.2: impossible
    assert cdf_gap(d, 0.2, 1.0) < -0.5
    with pytest.raises(ValueError, match="distances"):
        cdf_gap(np.array([-1.0]), 0.2, 1.0)


def test_linear_error_distance_matches_binary_formula_and_line_search():
    rng = np.random.default_rng(3)
    W, b, x = rng.standard_normal((4, 6)), rng.standard_normal(4), rng.standard_normal((30, 6))
    y = (x @ W.T + b).argmax(1)
    d = linear_error_distance(W, b, x, y)
    brute = np.full(30, np.inf)  # distance to each pairwise boundary, minimised
    for j in range(4):
        diff = W[y] - W[j]
        m = ((x @ W.T + b)[np.arange(30), y] - (x @ W.T + b)[:, j])
        r = np.where(y == j, np.inf, m / np.maximum(np.linalg.norm(diff, axis=1), 1e-300))
        brute = np.minimum(brute, r)
    np.testing.assert_allclose(d, brute, rtol=1e-12)
    lin = torch.nn.Linear(6, 4, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W))
        lin.bias.copy_(torch.as_tensor(b))
    ls = line_search_distance(lin, torch.as_tensor(x), torch.as_tensor(y), max_radius=50.0).numpy()
    assert np.all(ls >= d - 1e-6)  # a line search only finds an upper bound
    assert np.median(ls / d) < 1.5


def test_noise_error_rate_is_binomial_for_a_half_space_classifier():
    predict = lambda a: (a[:, 0] > 1.0).astype(int)  # noqa: E731
    mu = noise_error_rate(predict, np.zeros((3, 4)), np.zeros(3, dtype=int), 1.0,
                          n_noise=20_000, seed=0)
    assert np.all(np.abs(mu - stats.norm.sf(1.0)) < 4 * np.sqrt(0.16 * 0.84 / 20_000))
    with pytest.raises(ValueError, match="n_noise"):
        noise_error_rate(predict, np.zeros((3, 4)), np.zeros(3, dtype=int), 1.0, n_noise=0)


def _linear_model(seed=0, d=20, c=4):
    gen = torch.Generator().manual_seed(seed)  # cpu: a CPU generator keeps the draws fixed
    lin = torch.nn.Linear(d, c, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(c, d, generator=gen, dtype=torch.float64))  # cpu: test data
        lin.bias.zero_()
    x = torch.randn(60, d, generator=gen, dtype=torch.float64)  # cpu: test data
    return lin, x, lin(x).argmax(1).detach()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_distance_upper_bounds_and_nearly_attains_the_exact_linear_distance(norm):
    lin, x, y = _linear_model()
    W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    exact_fn = linear_error_distance if norm == "l2" else linear_error_distance_linf
    exact = exact_fn(W, b, x.numpy(), y.numpy())
    found = pgd_distance(lin, x, y, max_radius=float(4 * exact.max()), norm=norm,
                         steps=40, n_bisect=16).numpy()
    resolution = 4 * exact.max() * 2.0**-16
    assert np.all(found >= exact - resolution)  # an attack that succeeds cannot beat the truth
    assert np.median(found / exact) < 1.05


def test_pgd_distance_marks_unreachable_points_and_validates():
    lin, x, y = _linear_model()
    out = pgd_distance(lin, x, y, max_radius=1e-6, n_bisect=2)
    assert torch.isinf(out).all()
    with pytest.raises(ValueError, match="norm"):
        pgd_distance(lin, x, y, max_radius=1.0, norm="l1")
    with pytest.raises(ValueError, match="max_radius"):
        pgd_distance(lin, x, y, max_radius=-1.0)


def test_linf_distance_is_the_dual_norm_ratio_for_two_classes():
    W = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    x = np.array([[1.0, 0.0, 0.0]])
    # s_0 − s_1 = 1 at x; the ℓ∞ step that lowers it fastest moves by ‖w_0 − w_1‖₁ = 3.5 per unit
    assert linear_error_distance_linf(W, np.zeros(2), x, np.array([0]))[0] == pytest.approx(1 / 3.5)


def test_median_ratio_interval_covers_the_true_median():
    rng = np.random.default_rng(0)
    trials, n = 400, 101
    hits = 0
    for _ in range(trials):
        _, low, high = median_ratio_interval(np.exp(rng.standard_normal(n)), level=0.9)
        hits += low <= 1.0 <= high
    # the sign-test interval has coverage ≥ 0.9; 3 binomial standard errors below it
    assert hits / trials >= 0.9 - 3 * np.sqrt(0.09 / trials)
    with pytest.raises(ValueError, match="ratio"):
        median_ratio_interval(np.ones(5))
