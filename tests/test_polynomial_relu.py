"""Tests for helpers.polynomial_relu (chapter "The landscape of over-parametrised networks")."""

import numpy as np
import pytest
import torch

import helpers
from helpers.topics.degenerate_minima import (
    PolyReLU,
    eval_polynomial,
    filter_normalised_direction,
    fit_relu_polynomial,
    jacobian_rank,
    loss_slice,
    net_accuracy,
    normalised_net,
    train_full_batch,
)


def test_fit_matches_numpy_least_squares():
    """Oracle: numpy's polynomial least squares on the same grid, in the scaled variable."""
    degree, radius, m = 6, 3.0, 501
    t = np.linspace(-1, 1, m)
    oracle = np.polynomial.polynomial.polyfit(t, np.maximum(radius * t, 0), degree)
    ours = fit_relu_polynomial(degree, radius, n_points=m).numpy()
    np.testing.assert_allclose(ours, oracle, atol=1e-9)


def test_fit_error_shrinks_with_degree_and_scales_with_radius():
    errs = [PolyReLU(d, 1.0).max_error() for d in (2, 4, 8, 16)]
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), errs
    # ReLU is positively homogeneous, so the fit on [-r, r] is r times the fit on [-1, 1].
    assert PolyReLU(8, 5.0).max_error() == pytest.approx(5 * PolyReLU(8, 1.0).max_error(), rel=1e-9)


def test_horner_matches_direct_sum():
    coeffs = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    z = torch.linspace(-3, 3, 11, dtype=torch.float64)
    direct = sum(c * (z / 2.0) ** k for k, c in enumerate(coeffs))
    torch.testing.assert_close(eval_polynomial(coeffs, z, 2.0), direct)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="degree"):
        fit_relu_polynomial(0, 1.0)
    with pytest.raises(ValueError, match="radius"):
        fit_relu_polynomial(3, -1.0)
    with pytest.raises(ValueError, match="activation"):
        normalised_net([2, 3, 1], "tanh", seed=0)
    with pytest.raises(ValueError, match="steps"):
        train_full_batch(normalised_net([2, 3, 2], "relu", seed=0), torch.zeros(4, 2),
                         torch.zeros(4, dtype=torch.int64), steps=0)
    with pytest.raises(ValueError, match="rel_tol"):
        jacobian_rank(torch.eye(3), rel_tol=0.0)


def test_normalised_net_same_init_and_standardised_preactivations():
    a, b = normalised_net([5, 7, 3], "relu", seed=4), normalised_net([5, 7, 3], "poly", seed=4)
    torch.testing.assert_close(a[0].weight, b[0].weight)
    assert isinstance(b[2], PolyReLU)
    z = b[1](b[0](torch.randn(200, 5)))  # training mode: batch statistics
    torch.testing.assert_close(z.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(7), atol=1e-3, rtol=0)


def test_jacobian_rank_of_known_matrix():
    m = torch.randn(4, 2, dtype=torch.float64) @ torch.randn(2, 6, dtype=torch.float64)
    assert jacobian_rank(m) == 2


def test_filter_normalised_rows_and_zero_bias():
    net = helpers.MLP([3, 5, 2], seed=0)
    d = filter_normalised_direction(net, seed=1)
    w, bias = net[0].weight.detach(), net[0].bias
    torch.testing.assert_close(d[:15].view(5, 3).norm(dim=1), w.norm(dim=1))
    assert torch.all(d[15:15 + bias.numel()] == 0)
    assert not torch.equal(d, filter_normalised_direction(net, seed=2))


def test_loss_slice_centre_equals_loss_and_restores_parameters():
    net = helpers.MLP([2, 4, 1], dtype=torch.float64, seed=0)
    x = torch.randn(6, 2, dtype=torch.float64)
    before = helpers.flat_parameters(net).clone()
    loss_of = lambda m: (m(x) ** 2).sum()  # noqa: E731
    d1, d2 = torch.randn(before.numel(), dtype=torch.float64), torch.zeros(before.numel(),
                                                                           dtype=torch.float64)
    grid = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    vals = loss_slice(net, loss_of, d1, d2, grid, grid)
    assert vals[1, 1].item() == pytest.approx(loss_of(net).item())
    torch.testing.assert_close(vals[:, 0], vals[:, 2])  # d2 = 0: no dependence on beta
    torch.testing.assert_close(helpers.flat_parameters(net), before)
    with pytest.raises(ValueError, match="d1"):
        loss_slice(net, loss_of, d1[:-1], d2, grid, grid)


def test_smoke_degenerate_minimum_of_polynomial_net():
    """The chapter's experiment, tiny: W − n zero Hessian eigenvalues and a rank-n Jacobian."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 1, generator=gen, dtype=torch.float64)
    half = lambda out: 0.5 * ((out - y) ** 2).sum()  # noqa: E731
    net, loss, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([2, 4, 1], activation=PolyReLU, dtype=torch.float64, seed=s),
        lambda m: half(m(x)))
    J = helpers.output_jacobian(net, x)
    eigs = torch.linalg.eigvalsh(helpers.loss_hessian(net, half, x))
    assert loss < 1e-20
    assert jacobian_rank(J) == 5
    assert helpers.count_near_zero(eigs) >= J.shape[1] - 5


def test_smoke_training_reaches_high_training_accuracy():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    net = normalised_net([4, 16, 2], "poly", seed=0)
    train_full_batch(net, x, y, steps=200)
    assert net_accuracy(net, x, y) >= 0.95
