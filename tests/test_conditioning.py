"""Tests for helpers.conditioning: local linear maps, quadratic loss pieces, Kronecker Hessian."""

import pytest
import torch
from torch.func import hessian, jacrev

from helpers.topics.skip_connections import (
    forward,
    kronecker_hessian,
    layer_line_losses,
    log10_condition,
    random_weights,
    third_difference,
)

F64 = torch.float64


@pytest.mark.parametrize("residual", [False, True])
def test_local_linear_map_is_the_input_jacobian(residual):
    W = random_weights(3, 4, 5, seed=1)
    x = torch.randn(3, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    _, J, _ = forward(W, x, residual=residual, alpha=0.5, slope=0.2)
    for k in range(3):
        oracle = jacrev(lambda v, k=k: forward(W[k:k + 1], v[None], residual=residual,
                                               alpha=0.5, slope=0.2)[0][0])(x[k])
        torch.testing.assert_close(J[k], oracle, rtol=1e-12, atol=1e-12)


def test_forward_batched_inputs_match_single_inputs():
    W = random_weights(2, 3, 4, seed=0)
    x = torch.randn(2, 6, 4, dtype=F64)
    z, J, pattern = forward(W, x, residual=True)
    z1, J1, p1 = forward(W, x[:, 2], residual=True)
    torch.testing.assert_close(z[:, 2], z1)
    torch.testing.assert_close(J[:, 2], J1)
    assert torch.equal(pattern[:, :, 2], p1)
    # piecewise linear and positively homogeneous: f(x) = J x with no bias
    torch.testing.assert_close(z, (J @ x[..., None])[..., 0])


def test_random_weights_variance():
    W = random_weights(200, 2, 20, gain=2.0, seed=3)
    # 160000 samples: the variance estimate has relative standard error about 0.0035
    assert abs(W.var().item() * 20 / 2.0 - 1) < 0.02


def test_log10_condition_oracle():
    J = torch.diag(torch.tensor([100.0, 3.0, 0.1], dtype=F64))[None]
    assert log10_condition(J).item() == pytest.approx(3.0)


def test_loss_is_quadratic_inside_a_region_and_not_across_layers():
    gen = torch.Generator().manual_seed(5)
    W = random_weights(1, 4, 6, seed=4)[0]
    x, y = torch.randn(5, 6, dtype=F64, generator=gen), torch.randn(5, 6, dtype=F64, generator=gen)
    V = torch.randn(6, 6, dtype=F64, generator=gen)
    ts = 1e-4 * torch.arange(4, dtype=F64)
    losses, same = layer_line_losses(W, 2, V, x, y, ts, residual=True)
    assert same
    assert third_difference(losses).item() < 1e-12
    big, same_big = layer_line_losses(W, 2, V, x, y, 3.0 * torch.arange(4, dtype=F64),
                                      residual=True)
    assert not same_big and third_difference(big).item() > 1e-6


def test_third_difference_detects_cubic():
    t = torch.arange(4, dtype=F64)
    assert third_difference(1 + 2 * t - t**2).item() < 1e-15
    assert third_difference(t**3 + 1).item() == pytest.approx(6 / 28)


def test_kronecker_hessian_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    B, X = torch.randn(4, 3, dtype=F64, generator=gen), torch.randn(2, 5, dtype=F64, generator=gen)
    Y = torch.randn(4, 5, dtype=F64, generator=gen)
    loss = lambda w: 0.5 * ((B @ w.reshape(3, 2) @ X - Y) ** 2).sum()  # noqa: E731
    H = hessian(loss)(torch.zeros(6, dtype=F64))
    torch.testing.assert_close(kronecker_hessian(B, X), H)


def test_weyl_bound_for_identity_plus_perturbation():
    E = torch.randn(50, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    alpha = 0.1
    s = torch.linalg.svdvals(torch.eye(8, dtype=F64) + alpha * E)
    norm = torch.linalg.matrix_norm(E, ord=2)
    assert (s[:, 0] <= 1 + alpha * norm + 1e-12).all()
    assert (s[:, -1] >= 1 - alpha * norm - 1e-12).all()


def test_bad_input():
    with pytest.raises(ValueError, match="depth"):
        random_weights(1, 0, 3)
    with pytest.raises(ValueError, match="slope"):
        forward(random_weights(1, 1, 3), torch.zeros(1, 3, dtype=F64), residual=False, slope=2.0)
    with pytest.raises(ValueError, match="x must"):
        forward(random_weights(1, 1, 3), torch.zeros(2, 3, dtype=F64), residual=False)
    with pytest.raises(ValueError, match="layer"):
        layer_line_losses(random_weights(1, 2, 3)[0], 5, torch.zeros(3, 3, dtype=F64),
                          torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64),
                          torch.zeros(4, dtype=F64), residual=False)
    with pytest.raises(ValueError, match="values"):
        third_difference(torch.zeros(3))


def test_smoke_residual_better_conditioned_than_plain():
    W = random_weights(64, 4, 8, seed=0)
    x = torch.randn(64, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    plain = log10_condition(forward(W, x, residual=False)[1]).median()
    res = log10_condition(forward(W, x, residual=True)[1]).median()
    scaled = log10_condition(forward(W, x, residual=True, alpha=0.5)[1]).median()
    assert plain - res > 1 and scaled < res
