"""The hand-written backward passes against autograd (float64)."""

import pytest
import torch

from helpers.topics.compositional.backprop import mse_backward_
from helpers.topics.compositional.models import ShallowNet, TreeNet

DT = torch.float64


def autograd_grads(net, x, y):
    for p in net.parameters():
        p.grad = None
    ((net(x) - y) ** 2).mean(-1).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("activation", ["gelu", "relu", "tanh", "softplus", "silu", "identity"])
@pytest.mark.parametrize("make", [
    lambda act, nm: TreeNet(8, 3, n_models=nm, activation=act, dtype=DT, seed=1),
    lambda act, nm: TreeNet(4, 2, n_models=nm, activation=act, dtype=DT, seed=2),
    lambda act, nm: TreeNet(2, 4, n_models=nm, activation=act, dtype=DT, seed=3),
    lambda act, nm: ShallowNet(8, 5, n_models=nm, activation=act, dtype=DT, seed=4),
])
@pytest.mark.parametrize("n_models", [None, 3])
def test_hand_written_gradients_equal_autograd(make, activation, n_models):
    net = make(activation, n_models)
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(16, net.n_inputs, generator=gen, dtype=DT) - 1
    lead = () if n_models is None else (n_models,)
    y = torch.randn(*lead, 16, generator=gen, dtype=DT)
    expected = autograd_grads(net, x, y)
    mse_backward_(net, x, y)
    for p, e in zip(net.parameters(), expected, strict=True):
        assert p.grad.shape == p.shape
        torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-12)
    if n_models is not None:  # per-copy inputs (n_models, B, n) give the same gradients
        mse_backward_(net, x.expand(n_models, -1, -1), y)
        for p, e in zip(net.parameters(), expected, strict=True):
            torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-12)


def test_bad_arguments_raise():
    net = TreeNet(8, 2, n_models=2)
    with pytest.raises(TypeError, match="net"):
        mse_backward_(torch.nn.Linear(8, 1), torch.zeros(4, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="x must"):
        mse_backward_(net, torch.zeros(4, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="y must"):
        mse_backward_(net, torch.zeros(4, 8), torch.zeros(4))
