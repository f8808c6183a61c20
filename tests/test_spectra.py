"""Tests for helpers.spectra (chapter "Heavy-tailed self-regularisation")."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from helpers.topics.heavy_tails import (
    count_spikes,
    esd,
    fit_power_law,
    mp_cdf,
    mp_density,
    mp_edges,
    mp_ks,
    pareto_matrix,
)


@pytest.mark.parametrize("q, sigma2", [(0.25, 1.0), (0.5, 2.0), (1.0, 0.5)])
def test_mp_density_normalised_and_mean(q, sigma2):
    lo, hi = mp_edges(q, sigma2)
    total = integrate.quad(lambda t: mp_density(np.array([t]), q, sigma2)[0], lo, hi, limit=200)[0]
    mean = integrate.quad(lambda t: t * mp_density(np.array([t]), q, sigma2)[0], lo, hi,
                          limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)
    assert mean == pytest.approx(sigma2, rel=1e-6)  # E λ = tr(X)/M = σ²
    F = mp_cdf(q, sigma2)
    assert F(lo) == 0.0 and F(hi) == pytest.approx(1.0)
    mid = 0.5 * (lo + hi)
    direct = integrate.quad(lambda t: mp_density(np.array([t]), q, sigma2)[0], lo, mid)[0]
    assert F(mid) == pytest.approx(direct, abs=1e-5)


def test_mp_rejects_bad_parameters():
    with pytest.raises(ValueError, match="q"):
        mp_edges(1.5)
    with pytest.raises(ValueError, match="sigma2"):
        mp_edges(0.5, -1.0)


def test_gaussian_esd_matches_mp_statistically():
    # For M eigenvalues the KS distance to the limit law is O(M^(-2/3)) up to logs (rigidity),
    # far below the i.i.d. 1/sqrt(M); 0.02 at M = 400 leaves a wide margin.
    gen = torch.Generator().manual_seed(0)
    W = 1.7 * torch.randn(1200, 400, generator=gen, dtype=torch.float64)
    eigs, q = esd(W)
    assert q == pytest.approx(1 / 3) and len(eigs) == 400
    assert mp_ks(eigs, q, 1.7 ** 2) < 0.02
    assert count_spikes(eigs, q, 1.7 ** 2) == 0
    assert mp_ks(eigs, q, 1.0) > 0.3  # the wrong variance is rejected
    eigs_t, _ = esd(W.T)
    assert np.allclose(eigs, eigs_t)


def test_count_spikes_sees_a_planted_rank_one_signal():
    gen = torch.Generator().manual_seed(1)
    N, M = 800, 400
    u, v = torch.randn(N, 1, generator=gen, dtype=torch.float64), torch.randn(
        M, 1, generator=gen, dtype=torch.float64)
    W = torch.randn(N, M, generator=gen, dtype=torch.float64) + 3 * u @ v.T / (N * M) ** 0.25
    eigs, q = esd(W)
    assert count_spikes(eigs, q, 1.0) == 1


def test_fit_power_law_recovers_pareto_exponent():
    # Continuous power law with density exponent α = 2.5: Pareto(b = α − 1). With n = 4000 the
    # MLE has standard error (α − 1)/sqrt(n_tail) ≲ 0.05; 0.15 allows for the xmin search.
    x = stats.pareto(1.5).rvs(size=4000, random_state=np.random.default_rng(2))
    fit = fit_power_law(x)
    assert fit.alpha == pytest.approx(2.5, abs=0.15)
    assert 0 < fit.ks < 0.05
    with pytest.raises(ValueError, match="x"):
        fit_power_law(np.ones(5))


def test_pareto_matrix_tail():
    W = pareto_matrix(400, 100, 1.5, seed=3)
    a = W.abs().flatten().numpy()
    assert a.min() >= 1.0 and set(np.unique(np.sign(W.numpy()))) == {-1.0, 1.0}
    # P(|w| > t) = t^(-μ): at t = 4 that is 1/8; binomial standard error on 40000 draws ≈ 0.0017
    assert (a > 4).mean() == pytest.approx(4 ** -1.5, abs=0.01)
    with pytest.raises(ValueError, match="mu"):
        pareto_matrix(3, 3, 0.0)


def test_heavy_tailed_esd_exponent_smoke():
    eigs, _ = esd(pareto_matrix(600, 300, 1.0, seed=4))
    assert abs(fit_power_law(eigs).alpha - 1.5) < 0.3


def test_fit_power_law_ks_matches_scipy_kstest():
    x = stats.lomax(1.2).rvs(size=600, random_state=np.random.default_rng(5)) + 1.0
    fit = fit_power_law(x)
    tail = np.sort(x)[np.sort(x) >= fit.xmin]
    assert len(tail) == fit.n_tail
    assert fit.alpha == pytest.approx(1 + len(tail) / np.log(tail / fit.xmin).sum())
    oracle = stats.kstest(tail, stats.pareto(fit.alpha - 1, scale=fit.xmin).cdf).statistic
    assert fit.ks == pytest.approx(oracle, abs=1e-12)


def test_rank_correlation_as_in_full_mode():
    from helpers.topics.heavy_tails import rank_correlation

    sizes = (2, 8, 32, 128, 512, 1024)
    assert rank_correlation(sizes, [1.9, 2.0, 2.5, 2.6, 3.0, 3.1]) == pytest.approx(1.0)
    assert rank_correlation(sizes, [3.1, 3.0, 2.6, 2.5, 2.0, 1.9]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="x and y"):
        rank_correlation([1, 2], [1, 2])
