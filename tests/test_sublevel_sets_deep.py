"""Deep-network paths of helpers.topics.sublevel_sets (chapter "Connected sublevel sets")."""

import functools

import pytest
import torch
from torch import nn

import helpers
from helpers.topics import sublevel_sets


def _data(n=8, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(n, generator=g, dtype=torch.float64))


def _net(widths, seed):
    return helpers.MLP(widths, activation=functools.partial(nn.LeakyReLU, 0.1),
                       dtype=torch.float64, seed=seed)


def test_deep_loss_matches_the_torch_module():
    """Oracle: helpers.MLP with two leaky-ReLU layers."""
    x, y = _data()
    net = _net([3, 4, 6, 1], 1)
    oracle = 0.5 * ((net(x)[:, 0] - y) ** 2).mean().item()
    assert sublevel_sets.deep_loss(sublevel_sets.DeepNet.from_mlp(net), x, y, 0.1) == \
        pytest.approx(oracle, rel=1e-12)


def test_at_level_hits_the_level_exactly():
    x, y = _data()
    p = sublevel_sets.DeepNet.from_mlp(_net([3, 4, 9, 1], 0))
    start = sublevel_sets.deep_loss(p, x, y, 0.1)
    q = sublevel_sets.at_level(p, x, y, 0.1, start + 0.3, seed=0)
    assert sublevel_sets.deep_loss(q, x, y, 0.1) == pytest.approx(start + 0.3, rel=1e-10)
    with pytest.raises(ValueError, match="below the loss"):
        sublevel_sets.at_level(p, x, y, 0.1, start / 2, seed=0)


def test_deep_path_stays_below_the_level_for_a_wide_last_layer_only():
    """The chapter's claim at a tiny size: a wide last layer (2N) stays at the level, N/2 rises."""
    x, y = _data(n=8)
    ends = {m: [sublevel_sets.at_level(sublevel_sets.DeepNet.from_mlp(_net([3, 5, m, 1], s)),
                                       x, y, 0.1, 2.0, seed=s) for s in (0, 1)] for m in (16, 4)}
    wide = sublevel_sets.deep_path(*ends[16], x, y, 0.1, n_points=41)
    assert wide.losses.max() <= 2.0 + 1e-10
    assert wide.losses[41:82].max() < 1e-20  # least-squares read-out fits in the middle
    narrow = sublevel_sets.deep_path(*ends[4], x, y, 0.1, n_points=41)
    assert narrow.losses[41:82].min() > 1e-6


def test_deep_path_rejects_mismatched_depths():
    x, y = _data()
    a = sublevel_sets.DeepNet.from_mlp(_net([3, 4, 1], 0))
    b = sublevel_sets.DeepNet.from_mlp(_net([3, 4, 4, 1], 0))
    with pytest.raises(ValueError, match="same depth"):
        sublevel_sets.deep_path(a, b, x, y, 0.1)
    with pytest.raises(ValueError, match="mlp"):
        sublevel_sets.DeepNet.from_mlp(nn.Linear(3, 1))
