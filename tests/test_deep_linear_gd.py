"""Stacked gradient descent on deep linear networks against helpers.train_gd, one net at a time."""

import pytest
import torch

import helpers
from helpers.topics import implicit_bias as ib


def _problem():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(6, generator=gen, dtype=torch.float64)
    return X, y


def _nets(scales):
    return [helpers.DeepLinear([5, 4, 3, 1], init_scale=s, seed=1) for s in scales]


def test_stack_equals_train_gd_per_network():
    X, y = _problem()
    scales, etas = (0.5, 0.1, 0.01), (0.02, 0.05, 0.03)
    stacked, single = _nets(scales), _nets(scales)
    ib.deep_linear_gd(stacked, X, y, etas=etas, steps=200)
    for net, eta in zip(single, etas, strict=True):
        helpers.train_gd(net, lambda net=net: 0.5 * ((net(X)[:, 0] - y) ** 2).sum(), eta=eta,
                         steps=200)
    for a, b in zip(stacked, single, strict=True):
        for wa, wb in zip(a.weights, b.weights, strict=True):
            assert torch.allclose(wa, wb, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(stacked[0].weights[0], stacked[1].weights[0] * 5)  # it trained


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(etas=(0.1,)), ValueError, "etas"),
    (dict(etas=(0.1, -1.0)), ValueError, "etas"),
    (dict(etas=(0.1, 0.1), steps=0), ValueError, "steps"),
])
def test_bad_input(kwargs, error, match):
    X, y = _problem()
    with pytest.raises(error, match=match):
        ib.deep_linear_gd(_nets((0.1, 0.2)), X, y, **{"steps": 1, **kwargs})


def test_bad_networks_and_data():
    X, y = _problem()
    with pytest.raises(ValueError, match="nets"):
        ib.deep_linear_gd([], X, y, etas=[], steps=1)
    with pytest.raises(TypeError, match="nets"):
        ib.deep_linear_gd([torch.nn.Linear(5, 1)], X, y, etas=[0.1], steps=1)
    mixed = [*_nets((0.1,)), helpers.DeepLinear([5, 2, 1], seed=0)]
    with pytest.raises(ValueError, match="same weight shapes"):
        ib.deep_linear_gd(mixed, X, y, etas=[0.1, 0.1], steps=1)
    with pytest.raises(ValueError, match="X must"):
        ib.deep_linear_gd(_nets((0.1,)), X[:, :4], y, etas=[0.1], steps=1)
    with pytest.raises(ValueError, match="y must"):
        ib.deep_linear_gd(_nets((0.1,)), X, y[:3], etas=[0.1], steps=1)
