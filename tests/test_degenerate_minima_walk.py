"""Zero-set walks and loss exponents of helpers.topics.degenerate_minima (chapter "The landscape
of over-parametrised networks")."""

import torch

import helpers
from helpers.topics import degenerate_minima


def _fitted(n=4, d=2, h=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    net, _, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([d, h, 1], activation=degenerate_minima.PolyReLU,
                              dtype=torch.float64, seed=s),
        lambda m: 0.5 * ((m(x) - y) ** 2).sum(), seed=seed)
    return net, x, y


def test_loss_order_is_four_along_the_null_space_and_two_across():
    net, x, y = _fitted()
    J = helpers.output_jacobian(net, x)
    V = torch.linalg.svd(J, full_matrices=True).Vh
    ts = torch.tensor([0.02, 0.01, 0.005], dtype=torch.float64)
    assert abs(degenerate_minima.loss_order(net, x, y, V[-1], ts) - 4) < 0.2
    assert abs(degenerate_minima.loss_order(net, x, y, V[0], ts) - 2) < 0.2


def test_walk_stays_on_the_zero_set_and_moves_away():
    net, x, y = _fitted()
    J = helpers.output_jacobian(net, x)
    u = torch.linalg.svd(J, full_matrices=True).Vh[-1]
    theta, res = degenerate_minima.walk_on_zero_set(net, x, y, u, length=0.5, steps=10)
    assert res < 1e-10
    assert (theta - helpers.flat_parameters(net)).norm() > 0.3
    J_far = degenerate_minima.zero_set_jacobian(net, x, y, theta)
    assert degenerate_minima.jacobian_rank(J_far) == 4
