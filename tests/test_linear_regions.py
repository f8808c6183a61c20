"""Exact region counts along segments, boundary distances and the first-layer density."""

import math

import pytest
import torch

import helpers.topics.linear_regions as lr


def _segments(B, d, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(B, d, generator=gen, dtype=torch.float64),
            torch.randn(B, d, generator=gen, dtype=torch.float64))


def test_one_hidden_layer_counts_separating_hyperplanes():
    # Oracle: a first-layer neuron breaks the segment iff its pre-activation changes sign
    # between the two ends (it is affine along the segment).
    W, b = lr.he_networks([5, 40, 1], 6, bias_std=0.3, seed=1)
    a, e = _segments(6, 5, 2)
    za = torch.einsum("bd,bid->bi", a, W[0]) + b[0]
    ze = torch.einsum("bd,bid->bi", e, W[0]) + b[0]
    assert torch.equal(lr.count_regions(W, b, a, e), (za * ze < 0).sum(1) + 1)


def test_exact_count_matches_a_very_fine_grid_and_bounds_a_coarse_one():
    W, b = lr.he_networks([4, 8, 8, 8, 1], 5, seed=3)
    a, e = _segments(5, 4, 4)
    exact = lr.count_regions(W, b, a, e)
    assert torch.equal(lr.count_regions_on_grid(W, b, a, e, 200_000), exact)
    coarse = lr.count_regions_on_grid(W, b, a, e, 20)
    assert (coarse <= exact).all() and (coarse < exact).any()


def test_function_is_affine_between_breakpoints_and_kinks_at_them():
    W, b = lr.he_networks([3, 6, 6, 1], 1, bias_std=0.1, seed=5)
    a, e = _segments(1, 3, 6)
    t, counts = lr.segment_breakpoints(W, b, a, e)
    knots = torch.unique(t[0])
    mids = (knots[1:] + knots[:-1]) / 2
    pts = lambda s: (a[:, None] + s[None, :, None] * (e - a)[:, None])  # noqa: E731
    f = lambda s: lr.network_output(W, b, pts(s))[0, :, 0]  # noqa: E731
    assert torch.allclose(f(mids), (f(knots[1:]) + f(knots[:-1])) / 2, atol=1e-12)
    # at every interior knot some hidden neuron is (numerically) zero
    z = torch.cat(lr.pre_activations(W, b, pts(knots[1:-1])), dim=2)[0]
    assert counts.item() == len(knots) - 2
    assert (z.abs().min(dim=1).values < 1e-10).all()


def test_counts_respect_the_exponential_upper_bound():
    W, b = lr.he_networks([2, 3, 3, 3, 1], 64, bias_std=0.5, seed=7)
    a, e = _segments(64, 2, 8)
    assert (lr.count_regions(W, b, a, e) <= lr.max_regions_on_line([3, 3, 3])).all()
    assert lr.max_regions_on_line([3, 3, 3]) == 64


def test_first_layer_mean_count_is_n1_angle_over_pi():
    # Each of n1 bias-free Gaussian hyperplanes separates a from e with probability ∠(a, e)/π,
    # so the total over B segments is a sum of B·n1 Bernoulli variables: tolerance 4 s.e.
    B, n1 = 200, 50
    W, b = lr.he_networks([6, n1, 1], B, seed=9)
    a, e = _segments(B, 6, 10)
    measured = (lr.count_regions(W, b, a, e) - 1).sum().item()
    p = lr.first_layer_expected_count(a, e, 1)
    se = math.sqrt((n1 * p * (1 - p)).sum().item())
    assert abs(measured - n1 * p.sum().item()) < 4 * se


def test_segment_through_origin_crosses_every_first_layer_neuron_once():
    W, b = lr.he_networks([4, 30, 1], 3, seed=11)
    x, _ = _segments(3, 4, 12)
    assert (lr.count_regions(W, b, -x, x) == 31).all()


def test_boundary_distance_single_layer_closed_form():
    W, b = lr.he_networks([3, 7, 1], 2, bias_std=0.5, seed=13)
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    z = torch.einsum("bpd,bid->bpi", x, W[0]) + b[0][:, None]
    expected = (z.abs() / W[0].norm(dim=2)[:, None]).min(dim=2).values
    assert torch.allclose(lr.boundary_distance(W, b, x), expected)


def test_boundary_distance_is_the_largest_ball_inside_the_region():
    W, b = lr.he_networks([3, 10, 10, 1], 1, bias_std=0.2, seed=15)
    gen = torch.Generator().manual_seed(16)
    x = torch.randn(1, 20, 3, generator=gen, dtype=torch.float64)
    dist = lr.boundary_distance(W, b, x)
    pattern = lambda y: torch.cat(lr.pre_activations(W, b, y), dim=2) > 0  # noqa: E731
    u = torch.randn(1, 20, 3, generator=gen, dtype=torch.float64)
    u = u / u.norm(dim=2, keepdim=True)
    inside = x + 0.999 * dist[..., None] * u  # any direction, just inside the ball
    assert torch.equal(pattern(inside), pattern(x))
    # Oracle for the gradients: autograd. The ball cannot be larger: one step of 1.001·dist
    # along the normal of the nearest hyperplane changes the activation pattern.
    for k in range(20):
        xk = x[0, k]
        jac = torch.autograd.functional.jacobian(
            lambda y: torch.cat(lr.pre_activations(W, b, y[None, None]), dim=2)[0, 0], xk)
        z = torch.cat(lr.pre_activations(W, b, xk[None, None]), dim=2)[0, 0]
        ratio = z.abs() / jac.norm(dim=1)
        i = ratio.argmin()
        assert torch.isclose(ratio[i], dist[0, k])
        step = -torch.sign(z[i]) * jac[i] / jac[i].norm()
        y = (xk + 1.001 * dist[0, k] * step)[None, None]
        assert not torch.equal(pattern(y), pattern(xk[None, None]))


@pytest.mark.parametrize("call,match", [
    (lambda: lr.he_networks([3, 1], 2), "widths"),
    (lambda: lr.he_networks([3, 0, 1], 2), "widths"),
    (lambda: lr.he_networks([3, 4, 1], 0), "n_networks"),
    (lambda: lr.he_networks([3, 4, 1], 2, bias_std=-1.0), "bias_std"),
    (lambda: lr.max_regions_on_line([]), "hidden_widths"),
])
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_bad_segment_and_grid():
    W, b = lr.he_networks([3, 4, 1], 2, seed=0)
    a = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="a and b"):
        lr.count_regions(W, b, a, torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_grid"):
        lr.count_regions_on_grid(W, b, a, a + 1, 1)
    with pytest.raises(ValueError, match="x must"):
        lr.boundary_distance(W, b, torch.zeros(2, 3, dtype=torch.float64))


def test_smoke_chapter_experiment():
    # density per unit length roughly doubles with N, at depth 1 and depth 2
    a, e = _segments(32, 8, 17)
    dens = {}
    for depth in (1, 2):
        for N in (32, 64):
            W, b = lr.he_networks([8] + [N // depth] * depth + [1], 32, seed=N + depth)
            dens[depth, N] = (lr.count_regions(W, b, a, e) / (e - a).norm(dim=1)).mean().item()
    for depth in (1, 2):
        assert 1.5 < dens[depth, 64] / dens[depth, 32] < 2.5


def test_first_layer_expected_count_with_biases_matches_monte_carlo():
    import math

    from helpers.topics.linear_regions import count_regions, first_layer_expected_count, he_networks
    d, n_1, B = 3, 64, 400
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(1, d, generator=gen, dtype=torch.float64).expand(B, d)
    e = torch.randn(1, d, generator=gen, dtype=torch.float64).expand(B, d)
    W, b = he_networks([d, n_1, 1], B, bias_std=0.7, seed=1)
    measured = (count_regions(W, b, a, e) - 1).double().mean().item()
    p = first_layer_expected_count(a[:1], e[:1], 1, sigma_ratio=0.7 / math.sqrt(2 / d)).item()
    se = math.sqrt(n_1 * p * (1 - p) / B)
    assert abs(measured - n_1 * p) < 4 * se


def test_train_regression_lowers_the_loss_and_log_slope_recovers_a_power():
    from helpers.topics.linear_regions import (
        he_networks,
        log_slope,
        network_output,
        train_regression,
    )
    W, b = he_networks([2, 8, 8, 1], 3, bias_std=0.5, seed=0)
    x = torch.randn(3, 32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.sin(x[..., 0])
    loss = lambda W, b: ((network_output(W, b, x)[..., 0] - y) ** 2).mean().item()  # noqa: E731
    W2, b2 = train_regression(W, b, x, y, steps=50, lr=1e-2)
    assert loss(W2, b2) < loss(W, b)
    slope, se = log_slope([1, 2, 4, 8], [1.0, 2.0, 4.0, 8.0], [0.01, 0.02, 0.04, 0.08])
    assert abs(slope - 1) < 1e-12 and se > 0
    with pytest.raises(ValueError, match="x must"):
        train_regression(W, b, x[:2], y[:2], steps=1)


def test_chunked_passes_equal_one_pass():
    """Counting and distances network by network in chunks give the one-pass results."""
    W, b = lr.he_networks([3, 12, 12, 1], 7, bias_std=0.5, seed=3)
    gen = torch.Generator().manual_seed(3)
    a, e = (torch.randn(7, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    x = torch.randn(7, 5, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(lr.count_regions(W, b, a, e, chunk=3),
                       lr.count_regions(W, b, a, e))
    torch.testing.assert_close(lr.boundary_distance(W, b, x, chunk=2),
                               lr.boundary_distance(W, b, x), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="chunk"):
        lr.count_regions(W, b, a, e, chunk=0)
