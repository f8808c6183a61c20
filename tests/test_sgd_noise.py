"""Tests for helpers.sgd_noise (chapter "Anisotropic SGD noise and escaping sharp minima")."""

import pytest
import torch

import helpers
from helpers.topics.sgd_noise import (
    descend_to_loss,
    equal_trace_noises,
    expected_loss_increase,
    first_order_increase,
    flat_loss,
    noise_alignment,
    noisy_chains,
    per_sample_grads,
    power_law_hessian,
    simulate_quadratic,
)


def test_power_law_hessian_spectrum_and_equal_traces():
    H = power_law_hessian(20, 1.5, seed=0)
    lam = torch.linalg.eigvalsh(H).flip(0)
    assert torch.allclose(lam, torch.arange(1, 21, dtype=torch.float64) ** -1.5)
    noises = equal_trace_noises(H, trace=2.0)
    assert set(noises) == {"isotropic", "aligned with H", "top eigenvector", "aligned with H⁻¹"}
    for S in noises.values():
        assert S.trace().item() == pytest.approx(2.0)
    tr = {k: torch.trace(H @ S).item() for k, S in noises.items()}
    # Chebyshev's sum inequality orders them; top eigenvector is the maximum λ₁ Tr Σ.
    assert tr["top eigenvector"] > tr["aligned with H"] > tr["isotropic"] > tr["aligned with H⁻¹"]
    assert tr["top eigenvector"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="H"):
        equal_trace_noises(-H)


def test_expected_increase_matches_eigenbasis_closed_form_and_first_order():
    H = power_law_hessian(10, 1.0, seed=1)
    S = equal_trace_noises(H)["aligned with H"]
    eta, T = 0.05, 30
    lam, V = torch.linalg.eigh(H)
    s = torch.diagonal(V.T @ S @ V)  # Σ commutes with H: diagonal in its eigenbasis
    a = (1 - eta * lam) ** 2
    closed = 0.5 * (lam * eta ** 2 * s * (1 - a ** T) / (1 - a)).sum().item()
    assert expected_loss_increase(H, S, eta=eta, T=T) == pytest.approx(closed, rel=1e-10)
    # first-order error ≈ ηTλ_max for the top direction; here ηTλ_max = 1.5
    fo = first_order_increase(H, S, eta=eta, T=1)
    assert fo == pytest.approx(expected_loss_increase(H, S, eta=eta, T=1), rel=1e-12)
    with pytest.raises(ValueError, match="eta"):
        expected_loss_increase(H, S, eta=0.0, T=3)


def test_simulation_agrees_with_exact_expectation():
    H = power_law_hessian(8, 1.0, seed=2)
    S = equal_trace_noises(H)["isotropic"]
    L = simulate_quadratic(H, S, eta=0.1, T=20, n_chains=20000, seed=3)
    exact = expected_loss_increase(H, S, eta=0.1, T=20)
    se = L.std().item() / len(L) ** 0.5
    assert abs(L.mean().item() - exact) < 5 * se


def test_per_sample_grads_match_autograd_loop_and_alignment():
    net = helpers.MLP([3, 4, 2], dtype=torch.float64, seed=0)
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    f, theta = flat_loss(net, torch.nn.functional.cross_entropy)
    G = per_sample_grads(f, theta, x, y)
    for i in range(6):  # oracle: ordinary autograd on one sample
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        ref = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        assert torch.allclose(G[i], ref, atol=1e-12)
    D = theta.numel()
    stats = noise_alignment(G, torch.eye(D, dtype=torch.float64))
    assert stats["r"] == pytest.approx(1.0)  # H = I makes any noise look isotropic
    with pytest.raises(ValueError, match="H"):
        noise_alignment(G, torch.eye(D + 1, dtype=torch.float64))


def test_noisy_chains_reduce_to_gd_without_noise():
    net = helpers.MLP([3, 4, 2], dtype=torch.float64, seed=1)
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.arange(10) % 2
    f, theta = flat_loss(net, torch.nn.functional.cross_entropy)
    out = noisy_chains(f, theta, x, y, eta=0.1, steps=5, n_chains=3, batch_size=None)
    th = theta.clone()
    for _ in range(5):
        th = th - 0.1 * torch.func.grad(f)(th, x, y)
    assert torch.allclose(out, th.expand(3, -1), atol=1e-12)
    sgd = noisy_chains(f, theta, x, y, eta=0.1, steps=5, n_chains=3, batch_size=2, seed=0)
    assert sgd.shape == (3, theta.numel()) and not torch.allclose(sgd[0], sgd[1])


def test_expected_increase_doubling_matches_plain_recursion():
    H = power_law_hessian(6, 0.7, seed=4)
    S = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    S = S @ S.T  # a covariance that does not commute with H
    A = torch.eye(6, dtype=torch.float64) - 0.05 * H
    for T in (1, 2, 7, 13):
        C = torch.zeros_like(H)
        for _ in range(T):
            C = A @ C @ A + 0.05 ** 2 * S
        assert expected_loss_increase(H, S, eta=0.05, T=T) == pytest.approx(
            0.5 * torch.trace(H @ C).item(), rel=1e-12)


def test_alignment_of_hessian_proportional_noise_is_r_H():
    from helpers.topics.sgd_noise import noise_alignment, power_law_hessian

    H = power_law_hessian(6, 1.0, seed=3)
    # per-sample gradients whose covariance is exactly H: ±√(n/2)-scaled eigen-directions
    lam, V = torch.linalg.eigh(H)
    rows = (V * lam.sqrt()).T  # (6, 6), rows r_i with Σ r_i r_iᵀ = H
    G = torch.cat([rows, -rows]) * 6 ** 0.5  # mean 0, covariance (2·6/12)·H = H
    a = noise_alignment(G, H)
    assert a["r"] == pytest.approx(a["r_H"], rel=1e-10)
    assert a["cos"] == pytest.approx(1.0, rel=1e-10)
    assert a["tr_sigma"] == pytest.approx(float(H.trace()), rel=1e-10)


def test_classify_chains_counts_divergence_as_failure():
    from helpers.topics.sgd_noise import classify_chains

    losses = torch.tensor([0.5e-3, 2e-3, float("nan"), float("inf"), 5e5, 0.05])
    fate = classify_chains(losses, 1e-3)
    assert fate == {"diverged": 0.5, "escaped": 1 / 6, "stayed": 2 / 6}
    with pytest.raises(ValueError, match="loss_star"):
        classify_chains(losses, 0.0)


def test_descend_to_loss_stops_at_the_first_step_below_target():
    import math

    model = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.fill_(1.0)
    h, eta, target = 2.0, 0.1, 1e-3
    quadratic = lambda: 0.5 * h * model.weight.squeeze() ** 2  # noqa: E731
    loss, steps = descend_to_loss(model, quadratic, eta=eta, target=target, max_steps=1000)
    # closed form: L_t = ½ h (1 − ηh)^{2t}, so the first t with L_t ≤ target is
    oracle = math.ceil(math.log(target / (0.5 * h)) / (2 * math.log(1 - eta * h)))
    assert steps == oracle and loss <= target < 0.5 * h * (1 - eta * h) ** (2 * (oracle - 1))
    assert descend_to_loss(model, quadratic, eta=eta, target=1.0, max_steps=5)[1] == 0
    with pytest.raises(RuntimeError, match="above target"):
        descend_to_loss(model, quadratic, eta=eta, target=1e-30, max_steps=3)
