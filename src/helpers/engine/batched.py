"""Train many small MLPs at once: K independent models, one vectorised run.

K copies of an MLP (different seeds and/or learning rates and weight decays) are stored with a
leading model axis, W_l of shape (K, out, in), so one forward pass is a few batched matrix
products, ``H_l = φ(W_l H_{l-1} + b_l)`` with ``torch.baddbmm``, activations kept as
(K, width, n) (see :meth:`BatchedMLP.forward_t`). The models share nothing but
the data; since the total loss is the sum of the per-model losses, each model gets exactly its
own gradient (computed by the hand-written pass of
:mod:`helpers.engine.batched_backprop` for ReLU and tanh networks, by autograd for any other
activation), and the update

    W_k ← W_k − η_k (∇L_k(W_k) + λ_k W_k)

is plain (mini-batch) gradient descent with weight decay for every k. Training the K models one
by one with :func:`train_one` gives the same parameters to rounding (a unit test checks it).

Introduced in the appendix "Performance"; used by chapters that train several models of one
architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.core.seeding import map_in_threads
from helpers.core.validation import check_choice, check_int
from helpers.engine.batched_backprop import Workspace, loss_and_grads, make_batch, supported
from helpers.engine.models import MLP

Tensor = torch.Tensor
LOSSES = ("cross_entropy", "mse")


class BatchedMLP(nn.Module):
    """K independent MLPs widths[0] → … → widths[-1] with weights stacked on a model axis.

    Model k is initialised exactly as ``helpers.MLP(widths, seed=seeds[k])`` (PyTorch's
    ``nn.Linear`` initialisation), so results can be compared with one-by-one training.

    Args:
        widths: layer sizes, input first.
        seeds: one seed per model; K = len(seeds).
        activation: elementwise nonlinearity of the hidden layers (default ReLU).
    """

    def __init__(self, widths: Sequence[int], seeds: Sequence[int], *,
                 activation: Callable[[Tensor], Tensor] = torch.relu,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one model")
        mlps = [MLP(widths, dtype=dtype, device=device, seed=int(s)) for s in seeds]
        linears = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in mlps]
        self.widths = list(widths)
        self.activation = activation
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([lin[i].weight.detach() for lin in linears]))
            for i in range(len(widths) - 1))  # each (K, out, in)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([lin[i].bias.detach() for lin in linears]))
            for i in range(len(widths) - 1))  # each (K, out)

    @property
    def n_models(self) -> int:
        """K, the number of models."""
        return self.weights[0].shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """x: (n, d) shared by all models or (K, n, d) per model → outputs (K, n, widths[-1])."""
        return self.forward_t(x).transpose(1, 2)

    def forward_t(self, x: Tensor) -> Tensor:
        """The outputs in the engine's own layout, (K, widths[-1], n): features × samples.

        Activations are kept as (K, width, n), so every layer is one contiguous batched
        product ``H_l = φ(W_l H_{l-1} + b_l)`` and autograd's backward products and the
        activation's backward run on contiguous tensors (with the samples × features layout
        the ReLU backward ran on transposed gradients, about a third of all the time). A shared
        input makes the first layer a single matrix product for all K models, with the stacked
        weights viewed as one (K·width, d) matrix.
        """
        K, d = self.n_models, self.widths[0]
        if x.ndim not in (2, 3) or x.shape[-1] != d or (x.ndim == 3 and x.shape[0] != K):
            raise ValueError(f"x must be (n, {d}) or ({K}, n, {d}), got {tuple(x.shape)}")
        W0, b0 = self.weights[0], self.biases[0]
        if x.ndim == 2:
            n = x.shape[0]
            h = torch.addmm(b0.reshape(-1, 1), W0.reshape(-1, d), x.T).view(K, -1, n)
        else:
            h = torch.baddbmm(b0[:, :, None], W0, x.transpose(1, 2))
        for W, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = torch.baddbmm(b[:, :, None], W, self.activation(h))  # (K, out, n)
        return h

    def model(self, k: int) -> MLP:
        """A standalone copy of model k as a ``helpers.MLP``."""
        mlp = MLP(self.widths, dtype=self.weights[0].dtype, device=self.weights[0].device)
        linears = [m for m in mlp if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, W, b in zip(linears, self.weights, self.biases, strict=True):
                lin.weight.copy_(W[k])
                lin.bias.copy_(b[k])
        return mlp


@dataclass
class TrainResult:
    """Per-model training record.

    Attributes:
        steps: the steps at which losses were recorded, (R,).
        losses: training loss of every model at those steps, (R, K).
    """

    steps: Tensor
    losses: Tensor


def _per_model(value: float | Sequence[float] | Tensor, K: int, name: str, like: Tensor) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(K)
    if t.shape != (K,):
        raise ValueError(f"{name} must be a number or have one value per model ({K}), "
                         f"got shape {tuple(t.shape)}")
    if (t < 0).any():
        raise ValueError(f"{name} must be non-negative")
    return t


def per_model_loss(out: Tensor, y: Tensor, loss: str) -> Tensor:
    """Mean loss of each model, shape (K,).

    out: (K, n, C). Cross-entropy takes labels y of shape (n,) or (K, n); ``mse`` takes
    targets of shape (n, C) or (K, n, C) and sums the squared error over outputs.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return _per_model_loss_t(out.transpose(1, 2), y, loss)


def _per_sample_loss_t(out_t: Tensor, y: Tensor, loss: str) -> Tensor:
    """Loss of every model on every sample, (K, m), for outputs (K, C, m)."""
    if loss == "cross_entropy":
        yk = y.expand(out_t.shape[0], -1) if y.ndim == 1 else y
        return F.cross_entropy(out_t, yk, reduction="none")
    target = y.T if y.ndim == 2 else y.transpose(1, 2)  # (C, m) or (K, C, m)
    return ((out_t - target) ** 2).sum(1)


def _per_model_loss_t(out_t: Tensor, y: Tensor, loss: str,
                      weights: Tensor | None = None) -> Tensor:
    """:func:`per_model_loss` for outputs in the engine's layout (K, C, m); ``weights`` (K, m)
    turns the mean over samples into a weighted sum (per-model batch sizes)."""
    per_sample = _per_sample_loss_t(out_t, y, loss)
    return per_sample.mean(1) if weights is None else (per_sample * weights).sum(1)


def _batch_sizes(batch_size: int | Sequence[int] | None, K: int,
                 n: int) -> tuple[int | None, list[int] | None]:
    """(indices drawn per step, per-model sizes or None when all models use them all)."""
    if batch_size is None or isinstance(batch_size, int):
        return batch_size, None
    sizes = [int(b) for b in batch_size]
    if len(sizes) != K:
        raise ValueError(f"batch_size must be a number or have one value per model ({K}), "
                         f"got {len(sizes)} values")
    for b in sizes:
        if not 1 <= b <= n:
            raise ValueError(f"batch_size must lie in [1, {n}], got {b}")
    return max(sizes), (None if len(set(sizes)) == 1 else sizes)


def _batches(n: int, batch_size: int | None, steps: int, seed: int,
             device: torch.device, *, draw: int | None = None) -> list[Tensor | None]:
    """Indices of every step: ``draw`` (default ``batch_size``) uniform draws with
    replacement from ``seed``'s stream, of which the first ``batch_size`` are used."""
    if batch_size is None:
        return [None] * steps
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    draw = batch_size if draw is None else draw
    if draw < batch_size:
        raise ValueError(f"draw must be at least batch_size ({batch_size}), got {draw}")
    gen = torch.Generator().manual_seed(seed)  # cpu: the same draws on every device
    return [torch.randint(n, (draw,), generator=gen)[:batch_size].to(device)  # cpu: as above
            for _ in range(steps)]


def _samples(x: Tensor, y: Tensor, idx: Tensor | None, loss: str) -> tuple[Tensor, Tensor]:
    """The samples ``idx`` (all when None) of inputs and labels, shared or per model."""
    if idx is None:
        return x, y
    return x[..., idx, :], y[..., idx] if loss == "cross_entropy" else y[..., idx, :]


def train_batched(model: nn.Module, x: Tensor, y: Tensor, *, lr: float | Sequence[float],
                  steps: int, weight_decay: float | Sequence[float] = 0.0,
                  loss: str = "cross_entropy", batch_size: int | Sequence[int] | None = None,
                  seed: int = 0, record_every: int = 0) -> TrainResult:
    """Gradient descent on all K models at once (in place).

    Args:
        model: the K models: a :class:`BatchedMLP`, or any stacked model, i.e. a module with
            ``n_models`` and parameter lists ``weights`` and ``biases`` whose tensors all carry
            the model axis K first, that maps inputs to outputs of shape (K, n, C) (for
            example ``helpers.topics.zico.BatchedCNN``).
        x: (n, d) inputs shared by the models, or (K, n, d) one data set per model; y: (n,)
            labels shared, or (K, n) per model (e.g. a different random labelling per model);
            for ``mse``, targets (n, C) or (K, n, C).
        lr, weight_decay: one value for all, or one per model.
        steps: number of updates.
        batch_size: None for full batch, else samples drawn uniformly with replacement (the
            same indices for every model, from ``seed``). One size per model, b_k, draws
            max_k b_k indices per step and model k averages its loss over the first b_k: each
            model still sees a uniform sample of its own size (a sweep over batch sizes in
            one run).
        record_every: record the per-model training losses every so many steps (0: last only).

    ReLU and tanh MLPs use the hand-written pass of ``helpers.engine.batched_backprop``; on a
    CPU with T intra-op threads the models are split into T groups trained side by side, one
    core each (``_descend_in_threads``). Other activations and other stacked models run
    autograd on all K at once: the loss is a sum of per-model losses, so each model still
    gets exactly its own gradient.
    """
    check_int("steps", steps, low=1)
    check_choice("loss", loss, LOSSES)
    _check_stacked(model)
    K = model.n_models
    params = list(model.parameters())
    lr_t = _per_model(lr, K, "lr", params[0])
    wd_t = _per_model(weight_decay, K, "weight_decay", params[0])
    draw, sizes = _batch_sizes(batch_size, K, x.shape[-2])
    weights = None
    if sizes is not None:  # model k: weight 1/b_k on its first b_k samples, 0 after
        first = torch.arange(draw, device=x.device) < torch.tensor(sizes, device=x.device)[:, None]
        weights = first.to(params[0].dtype) / first.sum(1, keepdim=True)
    indices = _batches(x.shape[-2], draw, steps, seed, x.device)
    group = _Group(list(model.weights), list(model.biases), lr_t, wd_t, x, y, weights)
    mlp = isinstance(model, BatchedMLP)
    if not mlp or not supported(model.activation):  # autograd, outputs as (K, C, m)
        forward_t = model.forward_t if mlp else (lambda xb: model(xb).transpose(1, 2))

        def grads(xb, yb, idx, record):
            per_model = _per_model_loss_t(forward_t(xb), yb, loss, weights)  # (K,)
            return per_model.detach(), torch.autograd.grad(per_model.sum(), params)
        return _descend(group, grads, indices, loss, record_every)
    threads = torch.get_num_threads() if x.device.type == "cpu" else 1
    return _descend_in_threads(group, model, min(threads, K), indices, loss, record_every)


def _check_stacked(model: nn.Module) -> None:
    """``model`` has the stacked-model interface of :func:`train_batched`."""
    if not isinstance(model, nn.Module) or not all(
            hasattr(model, a) for a in ("n_models", "weights", "biases")):
        raise TypeError("model must be a BatchedMLP or a stacked model with n_models, weights "
                        f"and biases, got {type(model).__name__}")
    K = model.n_models
    named = set(map(id, [*model.weights, *model.biases]))
    if any(id(p) not in named for p in model.parameters()):
        raise ValueError("model: every parameter must be in model.weights or model.biases")
    if any(p.shape[0] != K for p in [*model.weights, *model.biases]):
        raise ValueError(f"model: every weight and bias must have the model axis ({K}) first")


def _descend_in_threads(group: _Group, model: BatchedMLP, n_groups: int,
                        indices: list[Tensor | None], loss: str, record_every: int) -> TrainResult:
    """Split the models into ``n_groups`` contiguous groups and train each in its own Python
    thread with one intra-op thread. The models are independent, so this changes nothing but
    the speed: each core runs its own products back to back, instead of every operation being
    split over the cores and their threads woken for it (with ``OMP_WAIT_POLICY=PASSIVE``, ~17 %
    of a step on two cores)."""
    K = group.lr.shape[0]
    if n_groups == 1:
        return _descend(group, _hand_written(group, model, loss), indices, loss, record_every)
    bounds = torch.linspace(0, K, n_groups + 1).round().long().tolist()  # cpu: Python ints
    groups = [group.models(slice(a, b), loss) for a, b in zip(bounds[:-1], bounds[1:],
                                                               strict=True)]
    parts = map_in_threads(lambda g: _descend(g, _hand_written(g, model, loss), indices, loss,
                                              record_every), groups, workers=n_groups)
    return TrainResult(parts[0].steps, torch.cat([r.losses for r in parts], 1))


@dataclass
class _Group:
    """Parameters (views) and per-model settings of a contiguous range of the K models."""

    weights: list[Tensor]
    biases: list[Tensor]
    lr: Tensor
    weight_decay: Tensor
    x: Tensor
    y: Tensor
    sample_weight: Tensor | None

    def models(self, k: slice, loss: str) -> _Group:
        """The models ``k``, with their own data where each model has its own."""
        per_model_y = self.y.ndim == (2 if loss == "cross_entropy" else 3)
        sw = self.sample_weight
        return _Group([W[k] for W in self.weights], [b[k] for b in self.biases], self.lr[k],
                      self.weight_decay[k], self.x[k] if self.x.ndim == 3 else self.x,
                      self.y[k] if per_model_y else self.y, None if sw is None else sw[k])


def _hand_written(group: _Group, model: BatchedMLP, loss: str):
    """Per-step gradients of ``group`` by :func:`helpers.engine.batched_backprop.loss_and_grads`."""
    state = {"batch": None, "workspace": Workspace()}  # a full batch is padded once

    def grads(xb, yb, idx, record):
        if state["batch"] is None or idx is not None:
            state["batch"] = make_batch(xb, yb, loss, model.widths[-1], group.sample_weight)
        value, grad_w, grad_b = loss_and_grads(group.weights, group.biases, model.activation,
                                               state["batch"], loss, record, state["workspace"])
        return value, grad_w + grad_b
    return grads


def _descend(group: _Group, grads, indices: list[Tensor | None], loss: str,
             record_every: int) -> TrainResult:
    """The gradient-descent loop of :func:`train_batched` on one group of models."""
    params = group.weights + group.biases
    recorded_steps, losses = [], []
    for t, idx in enumerate(indices, start=1):
        record = (record_every and t % record_every == 0) or t == len(indices)
        xb, yb = _samples(group.x, group.y, idx, loss)
        per_model, g = grads(xb, yb, idx, record)
        with torch.no_grad():
            for p, gp in zip(params, g, strict=True):
                shape = (-1,) + (1,) * (p.ndim - 1)  # p ← p − η (g + λ p), in place
                p.addcmul_(group.lr.view(shape), gp.addcmul_(group.weight_decay.view(shape), p),
                           value=-1)
        if record:
            recorded_steps.append(t)
            losses.append(per_model)
    return TrainResult(torch.tensor(recorded_steps, device=losses[0].device), torch.stack(losses))


def train_one(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, steps: int,
              weight_decay: float = 0.0, loss: str = "cross_entropy",
              batch_size: int | None = None, seed: int = 0, draw: int | None = None) -> float:
    """The same update as :func:`train_batched` for a single ordinary model (the reference).

    ``draw``: indices drawn per step, of which the first ``batch_size`` are used (default
    ``batch_size``); set it to the largest size of a ``train_batched`` run with one batch
    size per model to reproduce one of its models. Returns the last training loss.
    """
    check_int("steps", steps, low=1)
    params = list(model.parameters())
    value = 0.0
    for idx in _batches(x.shape[0], batch_size, steps, seed, x.device, draw=draw):
        xb = x if idx is None else x[idx]
        yb = y if idx is None else y[idx]
        out = model(xb)[None]  # (1, n, C)
        value_t = per_model_loss(out, yb, loss)[0]
        grads = torch.autograd.grad(value_t, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= lr * (g + weight_decay * p)
        value = value_t.item()
    return value


@torch.no_grad()
def batched_accuracy(model: BatchedMLP, x: Tensor, y: Tensor) -> Tensor:
    """Classification accuracy of each model, (K,). y: (n,) or (K, n) labels."""
    pred = model(x).argmax(-1)  # (K, n)
    return (pred == y).to(torch.float64).mean(-1)
