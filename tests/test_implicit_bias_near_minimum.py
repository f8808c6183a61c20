"""Tests for helpers.topics.implicit_bias.near_minimum (chapter "Implicit bias")."""

import pytest
import torch
from torch import nn

import helpers
from helpers.topics import implicit_bias


def _problem(n=6, d=3, h=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    net = helpers.MLP([d, h, 1], activation=nn.Tanh, dtype=torch.float64, seed=seed)
    return x, y, net


def test_tanh_net_matches_the_torch_module():
    """Oracle: helpers.MLP with nn.Tanh and the same flattened parameters."""
    x, _, net = _problem()
    theta = helpers.flat_parameters(net)
    torch.testing.assert_close(implicit_bias.tanh_net(theta[None], x)[0], net(x)[:, 0])


def test_hand_written_gradient_matches_autograd():
    x, y, net = _problem()
    theta = helpers.flat_parameters(net)[None].repeat(3, 1)
    theta[1:] += 0.1 * torch.randn(2, theta.shape[1], dtype=torch.float64)
    loss, grad = implicit_bias.loss_and_grad(theta, x, y)
    ref = torch.func.vmap(torch.func.grad(
        lambda t: 0.5 * ((implicit_bias.tanh_net(t[None], x)[0] - y) ** 2).sum()))(theta)
    torch.testing.assert_close(grad, ref)
    torch.testing.assert_close(loss, 0.5 * ((implicit_bias.tanh_net(theta, x) - y) ** 2).sum(1))


def test_jacobian_shape_and_bad_sizes():
    x, _, net = _problem()
    theta = helpers.flat_parameters(net)
    assert implicit_bias.tanh_jacobian(theta, x).shape == (6, theta.numel())
    with pytest.raises(ValueError, match="theta"):
        implicit_bias.tanh_net(theta[None, :-1], x)


def test_gd_from_a_perturbed_minimum_keeps_the_null_space_part():
    """The chapter's experiment at a tiny size: deviation is second order in the perturbation."""
    x, y, _ = _problem(n=4, h=6, seed=2)
    fit, _, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([3, 6, 1], activation=nn.Tanh, dtype=torch.float64, seed=s),
        lambda m: 0.5 * ((m(x)[:, 0] - y) ** 2).sum(), seed=2)
    theta = helpers.flat_parameters(fit)
    J = implicit_bias.tanh_jacobian(theta, x)
    P0 = torch.eye(theta.numel(), dtype=torch.float64) - torch.linalg.pinv(J) @ J
    u = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u /= u.norm()
    eps = torch.tensor([0.1, 0.05, 0.025], dtype=torch.float64)
    end, losses, _ = implicit_bias.gd_to_minimum(
        theta + eps[:, None] * u, x, y, eta=1.0 / torch.linalg.matrix_norm(J, ord=2).item() ** 2,
        max_steps=200_000, tol=1e-20)
    assert losses.max() < 1e-20
    deviation = (end - theta - eps[:, None] * (P0 @ u)).norm(dim=1)
    order, _ = implicit_bias.order_of_deviation(eps, deviation)
    assert 1.7 < order < 2.3, order


def test_order_of_deviation_recovers_a_power_law():
    eps = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64)
    order, se = implicit_bias.order_of_deviation(eps, 3 * eps**2)
    assert order == pytest.approx(2.0) and se < 1e-10
    with pytest.raises(ValueError, match="at least 3"):
        implicit_bias.order_of_deviation(eps[:2], eps[:2])


def test_gd_to_minimum_validates():
    x, y, net = _problem()
    theta = helpers.flat_parameters(net)[None]
    with pytest.raises(ValueError, match="eta"):
        implicit_bias.gd_to_minimum(theta, x, y, eta=-1.0, max_steps=10)
    with pytest.raises(ValueError, match="max_steps"):
        implicit_bias.gd_to_minimum(theta, x, y, eta=0.1, max_steps=0)
