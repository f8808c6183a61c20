"""Least squares: min-norm solution, GD, its closed form and ridge, against numpy/oracles."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.topics import implicit_bias as ib
from helpers.topics.implicit_bias.least_squares import early_stopping_ridge_gap


def problem(n=6, d=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, generator=g, dtype=torch.float64),
            torch.randn(d, generator=g, dtype=torch.float64))


def test_min_norm_matches_numpy_lstsq():
    X, y, _ = problem()
    ref = np.linalg.lstsq(X.numpy(), y.numpy(), rcond=None)[0]  # numpy returns min-norm
    assert np.allclose(ib.min_norm_solution(X, y).numpy(), ref, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 8), extra=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_gd_converges_to_pinv_plus_null_part(n, extra, seed):
    X, y, w0 = problem(n, n + extra, seed)
    eta = 0.9 * ib.stability_limit(X)
    w = ib.gd_least_squares(X, y, eta=eta, steps=0, w0=w0)
    assert torch.equal(w, w0)
    S = torch.linalg.svdvals(X)
    rate = (1 - eta * S**2).abs().max().item()  # slowest contraction over the row space
    steps = int(np.ceil(np.log(1e-13) / np.log(rate))) + 1
    w = ib.gd_least_squares(X, y, eta=eta, steps=min(steps, 200_000), w0=w0)
    target = ib.min_norm_solution(X, y) + ib.null_space_projector(X) @ w0
    assert torch.allclose(w, target, atol=1e-8 * max(1.0, target.norm().item()))


def test_closed_form_matches_iterates():
    X, y, w0 = problem()
    eta = 0.7 * ib.stability_limit(X)
    ts = [0, 1, 2, 5, 50]
    _, W = ib.gd_least_squares(X, y, eta=eta, steps=50, w0=w0, record_at=ts)
    C = ib.gd_closed_form(X, y, eta=eta, ts=torch.tensor(ts), w0=w0)
    assert W.shape == (5, 15) and torch.allclose(W, C, rtol=0, atol=1e-12)


def test_stability_limit_is_enforced_and_real():
    X, y, _ = problem()
    limit = ib.stability_limit(X)
    assert limit == pytest.approx(2 / np.linalg.norm(X.numpy(), 2) ** 2)
    with pytest.raises(ValueError, match="stability limit"):
        ib.gd_least_squares(X, y, eta=1.01 * limit, steps=3)
    w = ib.gd_least_squares(X, y, eta=1.1 * limit, steps=300, allow_unstable=True)
    assert w.norm() > 1e6  # it really diverges above the limit


@pytest.mark.parametrize("kwargs,match", [
    (dict(eta=-1.0, steps=3), "eta"), (dict(eta=0.01, steps=-1), "steps"),
    (dict(eta=0.01, steps=3, w0=torch.zeros(4)), "w0"),
    (dict(eta=0.01, steps=3, record_at=[5]), "record_at"),
])
def test_bad_arguments(kwargs, match):
    X, y, _ = problem()
    with pytest.raises(ValueError, match=match):
        ib.gd_least_squares(X, y, **kwargs)


def test_bad_shapes():
    X, y, _ = problem()
    with pytest.raises(ValueError, match="y must have shape"):
        ib.min_norm_solution(X, y[:-1])
    with pytest.raises(ValueError, match="2-D"):
        ib.min_norm_solution(X[0], y)
    with pytest.raises(TypeError):
        ib.min_norm_solution(X.numpy(), y)


def test_ridge_matches_normal_equations_and_tends_to_min_norm():
    X, y, _ = problem()
    lam = 0.3
    ref = np.linalg.solve(X.T.numpy() @ X.numpy() + lam * np.eye(15), X.T.numpy() @ y.numpy())
    assert np.allclose(ib.ridge_solution(X, y, lam).numpy(), ref, atol=1e-10)
    assert torch.allclose(ib.ridge_solution(X, y, 1e-12), ib.min_norm_solution(X, y),
                          atol=1e-8)
    with pytest.raises(ValueError, match="lam"):
        ib.ridge_solution(X, y, 0.0)


def test_early_stopping_gap_bound_holds_on_a_path():
    """The bound B must dominate the measured GD-vs-ridge distance, and be ~0.2985 for flow."""
    assert early_stopping_ridge_gap(0.0) == pytest.approx(0.2985, abs=5e-4)
    assert early_stopping_ridge_gap(0.5) > early_stopping_ridge_gap(0.1)
    X, y, _ = problem(10, 40, 3)
    eta = 0.2 / torch.linalg.matrix_norm(X, 2).item() ** 2
    ts = [1, 3, 10, 30, 100, 300, 1000, 3000]
    _, W = ib.gd_least_squares(X, y, eta=eta, steps=3000, record_at=ts)
    R = torch.stack([ib.ridge_solution(X, y, 1 / (eta * t)) for t in ts])
    gap = ((W - R).norm(dim=1) / R.norm(dim=1)).max().item()
    assert 0.1 < gap <= early_stopping_ridge_gap(0.2)
    with pytest.raises(ValueError, match="x_max"):
        early_stopping_ridge_gap(1.0)


def _balanced_net(beta, depth, width=4):
    """A balanced depth-N linear network whose end-to-end map is x ↦ βᵀx (rank one)."""
    import helpers

    net = helpers.DeepLinear([beta.shape[0]] + [width] * (depth - 1) + [1], init_scale=1.0)
    norm, e = beta.norm(), torch.zeros(width, dtype=torch.float64)
    e[0] = 1.0
    a = norm ** (1 / depth)
    factors = [torch.outer(e, beta / norm)] + [torch.outer(e, e)] * (depth - 2) + [e[None]]
    with torch.no_grad():
        for w, f in zip(net.weights, factors, strict=True):
            w.copy_(a * f)
    return net


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_balanced_sharpness_is_the_ntk_of_a_balanced_network(depth):
    """Oracle: λ_max(J Jᵀ) with J the autograd Jacobian of a balanced factorisation of β."""
    import helpers

    X, _, beta = problem(6, 5, 1)
    net = _balanced_net(beta, depth) if depth > 1 else helpers.DeepLinear([5, 1], init_scale=1.0)
    if depth == 1:
        with torch.no_grad():
            net.weights[0].copy_(beta[None])
    torch.testing.assert_close(net.end_to_end()[0], beta)
    params = list(net.parameters())
    outs = net(X)[:, 0]
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        out, params, retain_graph=True)]) for out in outs])  # (n, P): a backward pass per output
    ntk = torch.linalg.eigvalsh(J @ J.T).max().item()
    assert ib.balanced_sharpness(X, beta, depth) == pytest.approx(ntk, rel=1e-10)
    if depth == 1:  # a single layer: the least-squares limit σ_max²
        assert ib.balanced_sharpness(X, beta, 1) == pytest.approx(2 / ib.stability_limit(X))


def test_hessian_sharpness_matches_the_dense_hessian():
    """Oracle: the largest |eigenvalue| of the full Hessian from torch.func."""
    import helpers

    X, y, _ = problem(5, 4, 2)
    torch.manual_seed(1)
    net = torch.nn.Sequential(*[torch.nn.Linear(a, b, bias=False, dtype=torch.float64)
                                for a, b in [(4, 3), (3, 3), (3, 1)]])

    def loss_of(out):
        return 0.5 * ((out[:, 0] - y) ** 2).sum()

    dense = torch.linalg.eigvalsh(helpers.loss_hessian(net, loss_of, X)).abs().max().item()
    assert ib.hessian_sharpness(net, lambda: loss_of(net(X))) == pytest.approx(dense, rel=1e-6)
