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


def test_loss_and_grad_matches_autograd():
    """Oracle: autograd through forward() for the plain and the residual network."""
    W = skip_connections.random_weights(3, 3, 5, seed=7)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    for kw in (dict(residual=False), dict(residual=True, alpha=0.3)):
        loss, grad = skip_connections.loss_and_grad(W, x, y, **kw)
        Wr = W.clone().requires_grad_(True)
        ref = 0.5 * ((skip_connections.forward(Wr, x, **kw)[0] - y) ** 2).sum(dim=(-1, -2))
        (ref_grad,) = torch.autograd.grad(ref.sum(), Wr)
        torch.testing.assert_close(loss, ref.detach())
        torch.testing.assert_close(grad, ref_grad)
    with pytest.raises(ValueError, match="weights"):
        skip_connections.loss_and_grad(W, x, y[:, :2], residual=False)


def test_gauss_newton_top_agrees_with_condition():
    W = skip_connections.random_weights(4, 2, 4, seed=0)
    x = torch.randn(4, 2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    top, cond = skip_connections.gauss_newton_top(W, x, residual=False, chunk=3)
    torch.testing.assert_close(cond, skip_connections.gauss_newton_log10_condition(
        W, x, residual=False))
    assert (top > 0).all()


def test_steps_to_loss_small():
    """All networks reach the target; a budget too small leaves inf; the residual is faster."""
    W = skip_connections.random_weights(12, 4, 6, seed=3)
    x = torch.randn(12, 3, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    kw_r = dict(residual=True, alpha=0.5)
    top_p, _ = skip_connections.gauss_newton_top(W, x, residual=False)
    top_r, _ = skip_connections.gauss_newton_top(W, x, **kw_r)
    plain = skip_connections.steps_to_loss(W, x, top_p, residual=False, max_steps=3000)
    res = skip_connections.steps_to_loss(W, x, top_r, max_steps=3000, **kw_r)
    assert torch.isfinite(plain).all() and torch.isfinite(res).all()
    assert (res >= 1).all() and res.median() < plain.median()
    assert torch.isinf(skip_connections.steps_to_loss(W, x, top_p, residual=False,
                                                      max_steps=1)).any()
    with pytest.raises(ValueError, match="lam_max"):
        skip_connections.steps_to_loss(W, x, top_p[:2], residual=False)
    with pytest.raises(ValueError, match="eps"):
        skip_connections.steps_to_loss(W, x, top_p, residual=False, eps=-1.0)


def test_median_and_iqr_se():
    v = torch.randn(4001, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    med, se = skip_connections.median_and_iqr_se(v)
    _, se_sd = skip_connections.median_and_se(v)
    assert se == pytest.approx(se_sd, rel=0.1)  # the IQR estimates the sd of a normal sample
    v[:100] = math.inf  # a few censored values leave both finite
    med2, se2 = skip_connections.median_and_iqr_se(v)
    assert math.isfinite(med2) and math.isfinite(se2)
    with pytest.raises(ValueError, match="values"):
        skip_connections.median_and_iqr_se(v[:3])
