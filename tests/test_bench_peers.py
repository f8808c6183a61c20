"""The benchmark's peers compute exactly what the batched engine computes (float64)."""

import pytest
import torch

from helpers.bench_peers import train_stacked_autograd, train_torch_func
from helpers.engine.batched import BatchedMLP, train_batched

WIDTHS, SEEDS = [5, 8, 6, 3], [0, 1, 2]


def _data(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    return x.to(device), torch.randint(3, (30,), generator=g).to(device)


def test_peers_reach_the_engines_weights(device):
    x, y = _data(device)
    engine = BatchedMLP(WIDTHS, SEEDS, dtype=torch.float64, device=device)
    train_batched(engine, x, y, lr=0.3, steps=15)
    func = train_torch_func(WIDTHS, SEEDS, x, y, lr=0.3, steps=15)
    stacked = train_stacked_autograd(WIDTHS, SEEDS, x, y, lr=0.3, steps=15)
    for layer, (w, b) in enumerate(zip(engine.weights, engine.biases, strict=True)):
        for got in (func[f"{2 * layer}.weight"], stacked[2 * layer]):
            assert (got - w).abs().max() < 1e-10
        for got in (func[f"{2 * layer}.bias"], stacked[2 * layer + 1]):
            assert (got - b).abs().max() < 1e-10


def test_peers_take_minibatches_and_check_arguments(device):
    x, y = _data(device)
    a = train_stacked_autograd(WIDTHS, SEEDS, x, y, lr=0.1, steps=5, batch_size=8, seed=3)
    b = train_torch_func(WIDTHS, SEEDS, x, y, lr=0.1, steps=5, batch_size=8, seed=3)
    assert (a[0] - b["0.weight"]).abs().max() < 1e-10  # same draws, same update
    with pytest.raises(TypeError, match="steps"):
        train_torch_func(WIDTHS, SEEDS, x, y, lr=0.1, steps=2.5)
    with pytest.raises(ValueError, match="lr"):
        train_stacked_autograd(WIDTHS, SEEDS, x, y, lr=0.0, steps=2)
