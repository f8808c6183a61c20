"""Tests for helpers.sublevel_paths (chapter "Connected sublevel sets")."""

import functools

import pytest
import torch
from torch import nn

import helpers
from helpers.topics.sublevel_sets import (
    OneHidden,
    constructed_path,
    hidden_features,
    lstsq_readout,
    mirrored_endpoint,
    network_loss,
    straight_line_losses,
)


def _data(n=8, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, generator=g, dtype=torch.float64))


def test_features_and_loss_match_the_torch_module():
    """Oracle: helpers.MLP with nn.LeakyReLU and the same weights."""
    x, y = _data()
    net = helpers.MLP([3, 5, 1], activation=functools.partial(nn.LeakyReLU, 0.2),
                      dtype=torch.float64, seed=1)
    p = OneHidden.from_mlp(net)
    torch.testing.assert_close(hidden_features(p.W, p.b, x, 0.2), net[1](net[0](x)))
    oracle = 0.5 * ((net(x)[:, 0] - y) ** 2).mean().item()
    assert network_loss(p, x, y, 0.2) == pytest.approx(oracle, rel=1e-12)


def test_lstsq_readout_interpolates_when_features_have_rank_n():
    x, y = _data(n=6)
    W = torch.randn(10, 3, dtype=torch.float64)
    H = hidden_features(W, torch.randn(10, dtype=torch.float64), x, 0.1)
    v, c = lstsq_readout(H, y)
    torch.testing.assert_close(H @ v + c, y)
    Hb = torch.stack([H, H])  # batched input gives the same answer per batch entry
    vb, cb = lstsq_readout(Hb, y)
    torch.testing.assert_close(vb[1], v)


def test_straight_line_endpoints_equal_network_losses():
    x, y = _data()
    a = OneHidden.from_mlp(helpers.MLP([3, 4, 1], dtype=torch.float64, seed=0))
    b = OneHidden.from_mlp(helpers.MLP([3, 4, 1], dtype=torch.float64, seed=1))
    ends = straight_line_losses(a, b, x, y, 0.1, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends[0].item() == pytest.approx(network_loss(a, x, y, 0.1))
    assert ends[1].item() == pytest.approx(network_loss(b, x, y, 0.1))


def test_constructed_path_is_zero_for_wide_and_positive_for_narrow_layers():
    """The theorem as assertion: width N + 1 keeps zero loss; width N/2 cannot."""
    x, y = _data(n=8)
    mk = lambda m, s: OneHidden.from_mlp(helpers.MLP([3, m, 1], activation=functools.partial(  # noqa: E731
        nn.LeakyReLU, 0.1), dtype=torch.float64, seed=s))
    wide = constructed_path(mk(9, 0), mk(9, 1), x, y, 0.1, n_points=51)
    assert wide.losses.shape == (153,) and wide.s[-1] == 3
    # read-outs of random networks: segments 1 and 3 are convex, so they stay below their ends
    assert wide.losses[51:102].max() < 1e-20
    assert (wide.middle_sigma_min > 0).all()
    narrow = constructed_path(mk(4, 0), mk(4, 1), x, y, 0.1, n_points=51)
    assert narrow.losses[51:102].min() > 1e-6
    assert (narrow.middle_sigma_min == 0).all()


def test_end_segments_are_convex():
    x, y = _data()
    a = OneHidden.from_mlp(helpers.MLP([3, 12, 1], dtype=torch.float64, seed=0))
    b = OneHidden.from_mlp(helpers.MLP([3, 12, 1], dtype=torch.float64, seed=1))
    p = constructed_path(a, b, x, y, 0.1, n_points=41)
    seg1 = p.losses[:41]
    assert (seg1[1:-1] <= torch.maximum(seg1[0], seg1[-1]) + 1e-12).all()
    assert (torch.diff(seg1, 2) >= -1e-12).all()  # second differences of a convex parabola


def test_mirrored_endpoint_kills_relu_units_at_the_midpoint():
    x, y = _data(n=10, d=5)
    base = OneHidden.from_mlp(helpers.MLP([5, 11, 1], dtype=torch.float64, seed=3))
    a, b = mirrored_endpoint(base, x, y, 5, slope=0.0, seed=0)
    z_mid = x @ ((a.W + b.W) / 2).T + (a.b + b.b) / 2
    assert ((z_mid < 0).all(0)).sum() >= 5
    assert network_loss(a, x, y, 0.0) < 1e-20


def test_bad_arguments_raise():
    x, y = _data()
    p = OneHidden.from_mlp(helpers.MLP([3, 4, 1], dtype=torch.float64, seed=0))
    with pytest.raises(ValueError, match="slope"):
        hidden_features(p.W, p.b, x, 1.5)
    with pytest.raises(ValueError, match="n_points"):
        constructed_path(p, p, x, y, 0.1, n_points=1)
    with pytest.raises(ValueError, match="units"):
        mirrored_endpoint(p, x, y, 0, slope=0.0, seed=0)
    with pytest.raises(ValueError, match="mlp"):
        OneHidden.from_mlp(helpers.MLP([3, 4, 4, 1]))


def test_smoke_chapter_experiment():
    """Trained zero-loss minima of width N + 1: the path stays within 1e-8, the line does not."""
    x, y = _data(n=8)
    loss_of = lambda m: 0.5 * ((m(x)[:, 0] - y) ** 2).mean()  # noqa: E731
    make = lambda s: helpers.MLP([3, 9, 1], activation=functools.partial(nn.LeakyReLU, 0.1),  # noqa: E731
                                 dtype=torch.float64, seed=s)
    a, b = (OneHidden.from_mlp(helpers.fit_to_zero_loss(make, loss_of, seed=s)[0]) for s in (0, 10))
    p = constructed_path(a, b, x, y, 0.1, n_points=51)
    line = straight_line_losses(a, b, x, y, 0.1, torch.linspace(0, 1, 51, dtype=torch.float64))
    assert p.losses.max() < 1e-8
    assert line.max() > 1e-2
