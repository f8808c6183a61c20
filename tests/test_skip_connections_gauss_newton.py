"""Gauss–Newton conditioning in helpers.topics.skip_connections (chapter "Skip connections")."""

import math

import pytest
import torch

from helpers.topics import skip_connections


def test_gauss_newton_condition_matches_an_autograd_jacobian():
    """Oracle: torch.autograd.functional.jacobian of one network's outputs, then SVD of J."""
    W = skip_connections.random_weights(3, 2, 4, seed=0)
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = skip_connections.gauss_newton_log10_condition(W, x, residual=True, alpha=0.5, chunk=2)
    for k in range(3):
        J = torch.autograd.functional.jacobian(
            lambda w, xk=x[k]: skip_connections.forward(w[None], xk[None], residual=True,
                                                        alpha=0.5)[0][0].reshape(-1),
            W[k]).flatten(1)
        s = torch.linalg.svdvals(J)
        assert got[k].item() == pytest.approx(2 * math.log10(s[0] / s[-1]), rel=1e-8)


def test_residual_networks_are_better_conditioned():
    """The chapter's claim at a small size."""
    W = skip_connections.random_weights(30, 4, 8, seed=2)
    x = torch.randn(30, 2, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plain = skip_connections.gauss_newton_log10_condition(W, x, residual=False)
    res = skip_connections.gauss_newton_log10_condition(W, x, residual=True, alpha=0.5)
    assert plain.median() - res.median() > 1.0


def test_median_and_se():
    v = torch.arange(101, dtype=torch.float64)
    med, se = skip_connections.median_and_se(v)
    assert med == 50
    assert se == pytest.approx(math.sqrt(math.pi / 2) * v.std().item() / math.sqrt(101))
    with pytest.raises(ValueError, match="values"):
        skip_connections.median_and_se(v[:1])
    with pytest.raises(ValueError, match="weights"):
        skip_connections.gauss_newton_log10_condition(W := skip_connections.random_weights(
            1, 2, 3), W[0], residual=False)
