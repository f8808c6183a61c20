"""The hand-written pass equals autograd (float64), pads safely and reuses its buffers."""

import pytest
import torch
from torch import nn

from helpers.engine.batched import BatchedMLP, _per_model_loss_t, train_batched, train_one
from helpers.engine.batched_backprop import Workspace, loss_and_grads, make_batch, padded_columns
from helpers.engine.models import MLP


def problem(n, loss, per_model, device, K=3, d=5, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*((K,) if per_model else ()), n, d, generator=g, dtype=torch.float64)
    lead = (K,) if per_model else ()
    if loss == "cross_entropy":
        y = torch.randint(C, (*lead, n), generator=g)
    else:
        y = torch.randn(*lead, n, C, generator=g, dtype=torch.float64)
    return x.to(device), y.to(device)


@pytest.mark.parametrize("activation", [torch.relu, torch.tanh])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("per_model", [False, True])
@pytest.mark.parametrize("n", [40, 150])  # 150 is padded to 160 columns, 40 is not padded
def test_gradients_equal_autograd(activation, loss, per_model, n, device):
    x, y = problem(n, loss, per_model, device)
    model = BatchedMLP([5, 7, 6, 3], [1, 2, 3], activation=activation, dtype=torch.float64,
                       device=device)
    weight = torch.rand(3, n, dtype=torch.float64, device=device)  # arbitrary sample weights
    ref_loss = _per_model_loss_t(model.forward_t(x), y, loss, weight)
    ref = torch.autograd.grad(ref_loss.sum(), list(model.parameters()))
    batch = make_batch(x, y, loss, 3, weight)
    assert batch.xt.shape[-1] == padded_columns(n)
    value, grad_w, grad_b = loss_and_grads(list(model.weights), list(model.biases), activation,
                                           batch, loss)
    assert (value - ref_loss).abs().max() < 1e-12
    for got, want in zip(grad_w + grad_b, ref, strict=True):
        assert got.shape == want.shape and (got - want).abs().max() < 1e-12


def test_padding_rule(device):
    assert padded_columns(1258) == 1264  # the digits training set: 6 columns more
    assert padded_columns(150) == 160
    assert padded_columns(40) == 40 and padded_columns(8) == 8  # padding would cost > 1/8
    assert padded_columns(32) == 32
    with pytest.raises(ValueError, match="n must be positive"):
        padded_columns(0)


def test_workspace_reuses_buffers_and_reallocates_on_new_shapes(device):
    x, y = problem(40, "cross_entropy", False, device)
    model = BatchedMLP([5, 7, 3], [1, 2], dtype=torch.float64, device=device)
    ws = Workspace()
    args = (list(model.weights), list(model.biases), torch.relu)
    first = loss_and_grads(*args, make_batch(x, y, "cross_entropy", 3), "cross_entropy",
                           workspace=ws)[1][0]
    again = loss_and_grads(*args, make_batch(x, y, "cross_entropy", 3), "cross_entropy",
                           workspace=ws)[1][0]
    assert again.data_ptr() == first.data_ptr()
    n_buffers = len(ws)
    loss_and_grads(*args, make_batch(x[:10], y[:10], "cross_entropy", 3), "cross_entropy",
                   workspace=ws)
    assert len(ws) == n_buffers and ws["h", 0].shape == (2, 7, 10)


@pytest.mark.parametrize("activation,module", [(torch.tanh, nn.Tanh),
                                               (nn.functional.softplus, nn.Softplus)])
def test_tanh_and_autograd_fallback_equal_one_by_one(activation, module, device):
    # tanh runs the hand-written pass; softplus is unknown to it and runs autograd
    x, y = problem(60, "cross_entropy", False, device)
    model = BatchedMLP([5, 8, 3], [4, 9], activation=activation, dtype=torch.float64, device=device)
    train_batched(model, x, y, lr=0.2, steps=30, batch_size=16, seed=1)
    for k, s in enumerate([4, 9]):
        single = MLP([5, 8, 3], activation=module, dtype=torch.float64, seed=s, device=device)
        train_one(single, x, y, lr=0.2, steps=30, batch_size=16, seed=1)
        for a, b in zip(single.parameters(), model.model(k).parameters(), strict=True):
            assert (a - b).abs().max() < 1e-8


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_per_model_data_with_minibatches_equals_one_by_one(loss, device):
    x, y = problem(50, loss, True, device, K=2)  # model k trains on its own (x_k, y_k)
    model = BatchedMLP([5, 8, 3], [0, 1], dtype=torch.float64, device=device)
    train_batched(model, x, y, lr=0.1, steps=25, batch_size=12, seed=3, loss=loss)
    for k in range(2):
        single = MLP([5, 8, 3], dtype=torch.float64, seed=k, device=device)
        train_one(single, x[k], y[k], lr=0.1, steps=25, batch_size=12, seed=3, loss=loss)
        for a, b in zip(single.parameters(), model.model(k).parameters(), strict=True):
            assert (a - b).abs().max() < 1e-8


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_models_split_over_threads_equal_one_by_one(threads, device):
    # with T intra-op threads the K models are split into T groups, one Python thread each
    x, y = problem(50, "cross_entropy", False, device)
    seeds, lrs = [0, 1, 2, 3, 4], [0.05, 0.1, 0.2, 0.1, 0.3]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = BatchedMLP([5, 8, 3], seeds, dtype=torch.float64, device=device)
        result = train_batched(model, x, y, lr=lrs, steps=20, batch_size=10, seed=4,
                               record_every=10)
        assert torch.get_num_threads() == threads  # restored after the workers ran
    finally:
        torch.set_num_threads(before)
    assert result.losses.shape == (2, 5) and result.steps.tolist() == [10, 20]
    for k, (s, lr) in enumerate(zip(seeds, lrs, strict=True)):
        single = MLP([5, 8, 3], dtype=torch.float64, seed=s, device=device)
        last = train_one(single, x, y, lr=lr, steps=20, batch_size=10, seed=4)
        assert last == pytest.approx(result.losses[-1, k].item(), abs=1e-10)
        for a, b in zip(single.parameters(), model.model(k).parameters(), strict=True):
            assert (a - b).abs().max() < 1e-8
