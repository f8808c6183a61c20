"""Hessians against autograd and theory; models; training loops."""

import pytest
import torch
from torch import nn

import helpers
from helpers.topics import implicit_bias as ib


def test_loss_hessian_of_linear_least_squares_is_gram_matrix():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randn(7, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False, dtype=torch.float64)
    H = helpers.loss_hessian(model, lambda out: 0.5 * ((out - y) ** 2).sum(), X)
    assert torch.allclose(H, X.T @ X, atol=1e-12)


def test_hessian_at_interpolation_equals_jtj_and_is_degenerate():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(5, 2, generator=g, dtype=torch.float64)
    Y = torch.randn(5, 1, generator=g, dtype=torch.float64)
    net, loss, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([2, 16, 1], dtype=torch.float64, seed=s),
        lambda m: 0.5 * ((m(X) - Y) ** 2).sum(), seed=0)
    H = helpers.loss_hessian(net, lambda out: 0.5 * ((out - Y) ** 2).sum(), X)
    J = helpers.output_jacobian(net, X)
    P = helpers.flat_parameters(net).numel()
    assert J.shape == (5, P) and torch.allclose(H, J.T @ J, atol=1e-7)
    eig = torch.linalg.eigvalsh(H)
    assert helpers.count_near_zero(eig, rel_tol=1e-8) == P - 5


def test_output_jacobian_of_deep_linear_matches_autograd_oracle():
    """Every factor W_l enters the Jacobian (a sliced ParameterList once dropped all but W_1)."""
    model = helpers.DeepLinear([3, 4, 2], init_scale=0.5, seed=1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w1, w2 = (p.detach().clone() for p in model.parameters())
    oracle = torch.autograd.functional.jacobian(lambda a, b: (x @ (b @ a).T).reshape(-1), (w1, w2))
    oracle = torch.cat([j.reshape(j.shape[0], -1) for j in oracle], dim=1)
    torch.testing.assert_close(helpers.output_jacobian(model, x), oracle, rtol=0, atol=1e-12)


def test_count_near_zero():
    assert helpers.count_near_zero(torch.tensor([1.0, 1e-12, -1e-10, 0.5])) == 2
    with pytest.raises(ValueError):
        helpers.count_near_zero(torch.ones(3), rel_tol=0)


def test_mlp_shapes_seed_and_errors():
    net = helpers.MLP([3, 8, 8, 2], seed=4)
    assert net(torch.zeros(5, 3)).shape == (5, 2)
    assert len([m for m in net if isinstance(m, nn.ReLU)]) == 2
    state = torch.random.get_rng_state()
    again = helpers.MLP([3, 8, 8, 2], seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # global generator untouched
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(), strict=True))
    with pytest.raises(ValueError, match="widths"):
        helpers.MLP([3, -1, 2])
    with pytest.raises(ValueError, match="widths"):
        helpers.MLP([3])


def test_deep_linear_end_to_end_and_min_norm_bias():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(4, 10, generator=g, dtype=torch.float64)
    y = torch.randn(4, generator=g, dtype=torch.float64)
    net = helpers.DeepLinear([10, 12, 12, 1], init_scale=1e-3, seed=0)
    W1, W2, W3 = net.weights
    assert torch.allclose(net.end_to_end(), W3 @ W2 @ W1)
    losses = helpers.train_gd(net, lambda: 0.5 * ((net(X)[:, 0] - y) ** 2).sum(), eta=0.05,
                              steps=4000, record_every=1000)
    assert len(losses) == 4 and losses[-1] < 1e-12
    beta = net.end_to_end()[0].detach()
    ref = ib.min_norm_solution(X, y)
    assert (beta - ref).norm() / ref.norm() < 0.02
    with pytest.raises(ValueError, match="init_scale"):
        helpers.DeepLinear([2, 2], init_scale=0)


def test_fit_to_zero_loss_gives_up_loudly():
    X = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    Y = torch.tensor([[0.0], [1.0]], dtype=torch.float64)  # same input, two targets
    with pytest.raises(RuntimeError, match="no zero-loss fit"):
        helpers.fit_to_zero_loss(lambda s: helpers.MLP([1, 4, 1], dtype=torch.float64, seed=s),
                                 lambda m: 0.5 * ((m(X) - Y) ** 2).sum(), tries=2)


def test_log_steps():
    steps = helpers.log_steps(1000, 3)
    assert steps[0] == 1 and steps[-1] == 1000 and steps == sorted(set(steps))
    assert helpers.log_steps(10, 1, include_zero=True)[0] == 0
    with pytest.raises(ValueError):
        helpers.log_steps(0)


def test_train_gd_bad_input():
    net = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="eta"):
        helpers.train_gd(net, lambda: net.weight.sum(), eta=0, steps=1)
