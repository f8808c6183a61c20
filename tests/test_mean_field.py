"""Mean-field maps and the edge of chaos, against quadrature, Monte Carlo and closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from helpers.topics import edge_of_chaos as mf


def quad_expectation(f, q):
    """E[f(√q Z)] by adaptive quadrature (an independent oracle for the trapezoid rule)."""
    dens = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return quad(lambda z: f(math.sqrt(q) * z) * dens(z), -np.inf, np.inf, epsabs=1e-14,
                epsrel=1e-12, limit=400)[0]


@pytest.mark.parametrize("q", [0.05, 0.5, 1.0, 3.0, 10.0])
def test_tanh_moments_match_adaptive_quadrature(q):
    t = np.tanh
    oracles = [lambda u: t(u) ** 2, lambda u: (1 - t(u) ** 2) ** 2,
               lambda u: (2 * t(u) * (1 - t(u) ** 2)) ** 2]
    for order, f in enumerate(oracles):
        assert mf.gaussian_moment(q, "tanh", order) == pytest.approx(quad_expectation(f, q),
                                                                     rel=1e-7, abs=1e-14)


def test_relu_closed_forms():
    assert mf.variance_map(1.7, math.sqrt(2), 0.0, "relu") == pytest.approx(1.7)
    assert mf.variance_fixed_point(1.2, 0.1, "relu") == pytest.approx(0.01 / (1 - 0.72))
    assert mf.chi(0.3, 1.2, "relu") == pytest.approx(0.72)
    assert mf.relu_correlation_map(1.0) == pytest.approx(1.0)
    assert mf.relu_correlation_map(0.0) == pytest.approx(1 / math.pi)
    assert mf.relu_correlation_map(-1.0) == pytest.approx(0.0, abs=1e-15)


def test_relu_map_matches_monte_carlo():
    gen = np.random.default_rng(0)
    z1, z2 = gen.standard_normal((2, 400_000))
    for c in (-0.6, 0.0, 0.4, 0.9):
        u2 = c * z1 + math.sqrt(1 - c * c) * z2
        mc = 2 * np.mean(np.maximum(z1, 0) * np.maximum(u2, 0))
        se = 2 * np.std(np.maximum(z1, 0) * np.maximum(u2, 0)) / math.sqrt(len(z1))
        assert abs(mf.relu_correlation_map(c) - mc) < 5 * se


def test_relu_delta_map_is_exact_to_high_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for delta in (1e-14, 1e-9, 1e-5, 0.019, 0.021, 0.5, 1.5):
        d = mpmath.mpf(delta)
        c = 1 - d
        exact = 1 - (mpmath.sqrt(1 - c**2) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi
        got = mf.delta_map(delta, 1.0, math.sqrt(2), 0.0, "relu")
        assert float(abs(got - exact) / exact) < 1e-12, delta


def test_tanh_delta_map_matches_direct_formula_and_is_stable():
    sw, sb = 1.5, 0.3
    q = float(mf.variance_fixed_point(sw, sb))
    for c in (-0.5, 0.2, 0.8):  # away from 1 the naive formula (eq. of the maps) is accurate
        z, w = np.polynomial.hermite_e.hermegauss(200)
        w = w / math.sqrt(2 * math.pi)
        u1 = math.sqrt(q) * z[:, None]
        u2 = math.sqrt(q) * (c * z[:, None] + math.sqrt(1 - c * c) * z)
        naive = (sb**2 + sw**2 * (np.tanh(u1) * np.tanh(u2) * np.outer(w, w)).sum()) / \
            mf.variance_map(q, sw, sb)
        assert mf.correlation_map(c, q, sw, sb) == pytest.approx(naive, abs=1e-6)
    # near c = 1 the increment is quadratic: δ' = χ δ − f''(1)/2 δ² + O(δ³), with χ and
    # f''(1) = σ_w² q E[φ''²] from the moments
    chi, f2 = mf.chi(q, sw), sw**2 * q * mf.gaussian_moment(q, "tanh", 2)
    for delta in (1e-4, 1e-7, 1e-10):
        got = mf.delta_map(delta, q, sw, sb)
        assert (chi * delta - got) / delta**2 == pytest.approx(f2 / 2, rel=1e-3)


def test_edge_of_chaos_has_chi_one_and_beta_positive():
    sb = np.array([0.1, 0.3, 0.8])
    sw = mf.edge_of_chaos(sb)
    q = mf.variance_fixed_point(sw, sb)
    assert np.allclose(mf.chi(q, sw), 1.0, atol=1e-10)
    assert np.all(np.diff(sw) > 0)  # larger bias needs larger weights
    assert np.all(mf.beta_q(q) > 0)
    assert mf.edge_of_chaos(0.0, "relu") == pytest.approx(math.sqrt(2))


def test_relu_eoc_law_holds_at_depth_2000():
    _, delta = mf.correlation_trajectory(0.0, 2000, math.sqrt(2), 0.0, "relu", q0=1.0)
    assert 2000**2 * delta[-1] == pytest.approx(9 * math.pi**2 / 2, rel=0.05)
    assert np.all(np.diff(delta) < 0)


def test_ordered_phase_converges_at_rate_chi():
    sw, sb = 0.8, 0.2
    q = float(mf.variance_fixed_point(sw, sb))
    _, delta = mf.correlation_trajectory(0.3, 80, sw, sb)
    assert delta[80] / delta[79] == pytest.approx(float(mf.chi(q, sw)), rel=1e-4)


def test_random_networks_follow_the_map_within_sampling_error():
    width, sw, sb = 1024, 1.3, 0.2
    q = float(mf.variance_fixed_point(sw, sb))
    z0 = mf.correlated_inputs([0.0, 0.7], q, width, seed=1)
    gram0 = z0 @ z0.T / width
    assert torch.allclose(gram0.diagonal(), torch.full((3,), q, dtype=torch.float64))
    assert gram0[0, 2] / q == pytest.approx(0.7)
    g = mf.random_network_gram(z0, 1, sw, sb, n_nets=64, seed=2)  # (64, 2, 3, 3)
    c1 = (g[:, 1, 0, 2] / (g[:, 1, 0, 0] * g[:, 1, 2, 2]).sqrt()).numpy()
    predicted = mf.correlation_map(0.7, q, sw, sb)
    assert abs(c1.mean() - predicted) < 4 * c1.std() / math.sqrt(64) + 1e-3


def test_batched_networks_are_independent_and_seeded():
    z0 = mf.correlated_inputs([0.5], 1.0, 64, seed=0)
    a = mf.random_network_gram(z0, 3, 1.4, 0.1, "relu", n_nets=3, seed=5)
    b = mf.random_network_gram(z0, 3, 1.4, 0.1, "relu", n_nets=3, seed=5)
    assert a.shape == (3, 4, 2, 2) and torch.equal(a, b)
    assert not torch.allclose(a[0, -1], a[1, -1])


def test_mean_field_init_sets_the_scales_and_trains():
    import helpers

    net = helpers.BatchedMLP([5, 400, 400, 2], seeds=[0, 1], activation=torch.tanh)
    mf.mean_field_init_(net, [0.5, 2.0], 0.3, seed=0)
    w_std = [net.weights[1][k].std().item() * math.sqrt(400) for k in range(2)]
    assert w_std == pytest.approx([0.5, 2.0], rel=0.02)  # 160k samples: sd error ~0.2 %
    assert net.biases[0].std().item() == pytest.approx(0.3, rel=0.1)
    assert net.weights[-1].std().item() * math.sqrt(400) == pytest.approx(1.0, rel=0.02)
    assert torch.all(net.biases[-1] == 0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, 0] > 0).long()
    small = helpers.BatchedMLP([5, 16, 16, 2], seeds=[0, 1], activation=torch.tanh)
    mf.mean_field_init_(small, [0.5, 1.2], 0.1, seed=0)
    helpers.train_batched(small, x, y, lr=0.1, steps=60, batch_size=32, seed=0)
    assert helpers.batched_accuracy(small, x, y).max() > 0.8


@pytest.mark.parametrize("call,match", [
    (lambda: mf.variance_map(1.0, -1.0, 0.0), "sigma_w"),
    (lambda: mf.variance_map(1.0, 1.0, -0.1), "sigma_b"),
    (lambda: mf.gaussian_moment(1.0, "sigmoid"), "activation"),
    (lambda: mf.delta_map(2.5, 1.0, 1.0, 0.1), "delta"),
    (lambda: mf.relu_correlation_map(1.5), "c must"),
    (lambda: mf.variance_fixed_point(1.5, 0.1, "relu"), "sigma_w"),
    (lambda: mf.edge_of_chaos(0.1, "relu"), "sigma_b"),
    (lambda: mf.beta_q(1.0, "relu"), "smooth"),
    (lambda: mf.correlation_trajectory(0.0, -1, 1.0, 0.1), "depth"),
    (lambda: mf.correlated_inputs([0.5], 1.0, 1), "width"),
    (lambda: mf.random_network_gram(torch.zeros(3), 2, 1.0, 0.0), "z0"),
    (lambda: mf.mean_field_init_(__import__("helpers").BatchedMLP([2, 3, 2], seeds=[0]),
                                 [1.0, 2.0], 0.1), "sigma_ws"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_full_mode_paths_at_small_width():
    # Full mode runs the chapter's code at sizes quick mode never meets: random networks of
    # depth 100 on both EOCs (the map placed over (nets, layers, pairs) arrays) and trained
    # tanh networks of depth 100 (train_depths [10, 25, 50, 100], η = min(0.02, 40/(N L))).
    # The same calls at width 8 and two steps: shapes, finiteness and the step-size rule.
    import helpers

    sigma_b = 0.2
    sigma_eoc = float(mf.edge_of_chaos(sigma_b))
    q_star = float(mf.variance_fixed_point(sigma_eoc, sigma_b))
    c_starts, depth, n_nets = [-0.5, 0.0, 0.5, 0.9], 100, 2
    for act, sb, sw, q0 in (("relu", 0.0, math.sqrt(2), 1.0), ("tanh", sigma_b, sigma_eoc, q_star)):
        z0 = mf.correlated_inputs(c_starts, q0, 16, seed=0)
        g = mf.random_network_gram(z0, depth, sw, sb, act, n_nets=n_nets, seed=0).numpy()
        assert g.shape == (n_nets, depth + 1, 5, 5) and np.isfinite(g).all()
        q_sim = np.diagonal(g, axis1=-2, axis2=-1)
        q_pair = np.sqrt(q_sim[..., :1] * q_sim[..., 1:])
        c_sim = g[..., 0, 1:] / q_pair
        c_next = mf.correlation_map(c_sim[:, :-1], q_pair[:, :-1], sw, sb, act)
        assert c_next.shape == (n_nets, depth, 4) and np.isfinite(c_next).all()
        _, delta = mf.correlation_trajectory(0.0, depth, sw, sb, act, q0=q0)
        assert len(delta) == depth + 1
    factors = np.array([0.6, 0.8, 1.0, 1.25, 1.6, 2.0, 2.5])
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 10
    width = 8
    net = helpers.BatchedMLP([64] + [width] * depth + [10], seeds=range(len(factors)),
                             activation=torch.tanh)
    mf.mean_field_init_(net, factors * sigma_eoc, sigma_b, seed=depth)
    helpers.train_batched(net, x, y, lr=min(0.02, 40 / (width * depth)), steps=2,
                          batch_size=32, seed=depth)
    acc = helpers.batched_accuracy(net, x, y).numpy()
    assert acc.shape == (len(factors),) and ((0 <= acc) & (acc <= 1)).all()
