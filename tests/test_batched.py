"""The batched engine equals training the models one by one (float64, same seeds)."""

import pytest
import torch

from helpers.engine.batched import BatchedMLP, batched_accuracy, train_batched, train_one
from helpers.engine.models import MLP


def data(device, n=40, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.to(device), torch.randint(classes, (n,), generator=g).to(device)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_batched_equals_one_by_one(batch_size, device):
    x, y = data(device)
    seeds, lrs, wds = [3, 5, 8, 13], [0.05, 0.1, 0.2, 0.1], [0.0, 1e-3, 0.0, 1e-2]
    batched = BatchedMLP([5, 16, 16, 3], seeds, dtype=torch.float64, device=device)
    result = train_batched(batched, x, y, lr=lrs, weight_decay=wds, steps=60,
                           batch_size=batch_size, seed=7, record_every=20)
    assert result.losses.shape == (3, 4) and result.steps.tolist() == [20, 40, 60]
    for k, (s, lr, wd) in enumerate(zip(seeds, lrs, wds, strict=True)):
        single = MLP([5, 16, 16, 3], dtype=torch.float64, seed=s, device=device)
        last = train_one(single, x, y, lr=lr, weight_decay=wd, steps=60,
                         batch_size=batch_size, seed=7)
        assert last == pytest.approx(result.losses[-1, k].item(), abs=1e-10)
        for a, b in zip(single.parameters(), batched.model(k).parameters(), strict=True):
            assert (a - b).abs().max() < 1e-8


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_one_batch_size_per_model_equals_one_by_one(loss, device):
    x, y = data(device)
    target = torch.nn.functional.one_hot(y, 3).double() if loss == "mse" else y
    seeds, sizes = [3, 3, 5], [4, 16, 9]
    batched = BatchedMLP([5, 16, 3], seeds, dtype=torch.float64, device=device)
    result = train_batched(batched, x, target, lr=0.1, steps=40, batch_size=sizes, seed=2,
                           loss=loss)
    for k, (s, b) in enumerate(zip(seeds, sizes, strict=True)):
        single = MLP([5, 16, 3], dtype=torch.float64, seed=s, device=device)
        last = train_one(single, x, target, lr=0.1, steps=40, batch_size=b, seed=2,
                         draw=max(sizes), loss=loss)
        assert last == pytest.approx(result.losses[-1, k].item(), abs=1e-10)
        for a, c in zip(single.parameters(), batched.model(k).parameters(), strict=True):
            assert (a - c).abs().max() < 1e-8
    # the two seed-3 models differ only in batch size, so they must end apart
    assert (batched.weights[0][0] - batched.weights[0][1]).abs().max() > 1e-3


def test_per_model_labels_and_mse(device):
    x, _ = data(device)
    labels = torch.stack([data(device, seed=s)[1] for s in range(3)])  # (K, n): one labelling each
    model = BatchedMLP([5, 8, 3], [0, 1, 2], dtype=torch.float64, device=device)
    before = batched_accuracy(model, x, labels)
    train_batched(model, x, labels, lr=0.5, steps=300)
    after = batched_accuracy(model, x, labels)
    assert after.shape == (3,) and (after > before).all()
    targets = torch.randn(40, 3, dtype=torch.float64, device=device)
    mse = BatchedMLP([5, 8, 3], [0, 1], dtype=torch.float64, device=device)
    res = train_batched(mse, x, targets, lr=0.05, steps=200, loss="mse", record_every=100)
    assert (res.losses[-1] < res.losses[0]).all()


def test_initialisation_matches_helpers_mlp(device):
    model = BatchedMLP([4, 6, 2], [11, 12])
    ref = MLP([4, 6, 2], seed=12)
    x = torch.randn(5, 4)
    assert torch.allclose(model(x)[1], ref(x), atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=[0.1, 0.2]), "lr"), (dict(lr=-0.1), "lr"), (dict(lr=0.1, loss="hinge"), "loss"),
    (dict(lr=0.1, batch_size=0), "batch_size"), (dict(lr=0.1, steps=0), "steps"),
    (dict(lr=0.1, batch_size=[4, 8]), "batch_size"), (dict(lr=0.1, batch_size=[4, 0, 8]),
                                                      "batch_size"),
    (dict(lr=0.1, weight_decay=[1.0] * 5), "weight_decay"),
])
def test_bad_arguments(kwargs, match, device):
    x, y = data(device)
    model = BatchedMLP([5, 4, 3], [0, 1, 2])
    opts = dict(steps=2) | kwargs
    with pytest.raises(ValueError, match=match):
        train_batched(model, x.float(), y, **opts)


def test_bad_input_shape_and_seeds(device):
    model = BatchedMLP([5, 4, 3], [0, 1])
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(3, 6))
    with pytest.raises(ValueError, match="seeds"):
        BatchedMLP([5, 4, 3], [])


class StackedLinear(torch.nn.Module):
    """K linear softmax classifiers with the stacked-model interface (not a BatchedMLP)."""

    def __init__(self, K, d, C, device):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        w = torch.randn(K, C, d, generator=g, dtype=torch.float64)
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w.to(device))])
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(K, C, dtype=torch.float64, device=device))])
        self.n_models = K

    def forward(self, x):  # (n, d) -> (K, n, C)
        return torch.einsum("kcd,nd->knc", self.weights[0], x) + self.biases[0][:, None]


def test_any_stacked_model_trains_with_autograd_like_one_by_one(device):
    x, y = data(device)
    model = StackedLinear(3, 5, 3, device)
    start = [p.detach().clone() for p in model.parameters()]
    result = train_batched(model, x, y, lr=[0.1, 0.2, 0.3], steps=20, batch_size=8, seed=2)
    for k, lr in enumerate([0.1, 0.2, 0.3]):
        single = torch.nn.Linear(5, 3).double().to(device)
        with torch.no_grad():
            single.weight.copy_(start[0][k])
            single.bias.copy_(start[1][k])
        last = train_one(single, x, y, lr=lr, steps=20, batch_size=8, seed=2)
        assert last == pytest.approx(result.losses[-1, k].item(), abs=1e-10)
        assert (single.weight - model.weights[0][k]).abs().max() < 1e-10


def test_train_batched_rejects_models_without_the_stacked_interface(device):
    x, y = data(device)
    with pytest.raises(TypeError, match="stacked model"):
        train_batched(torch.nn.Linear(5, 3), x, y, lr=0.1, steps=1)
    model = StackedLinear(3, 5, 3, device)
    model.extra = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="every parameter"):
        train_batched(model, x, y, lr=0.1, steps=1)
