"""ZiCo, a zero-shot architecture-search proxy: inverse coefficient of variation of gradients.

Li et al. (2023), "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients",
score an untrained network from the gradients of the training loss on a few mini-batches at
initialisation. For each layer l with weights θ_l, over batches b = 1..B,

    ZiCo = Σ_l log( Σ_{w ∈ θ_l} mean_b |g_w^(b)| / std_b(g_w^(b)) ),

weights whose gradient does not vary (std 0) are left out, and a layer whose sum is 0
contributes nothing (as in the authors' code). Large, consistent gradients (high mean, low
variance across batches) are read as "trains fast and generalises".

This module scores and trains K models of one architecture at once: MLPs with the batched
engine, small CNNs as one grouped-convolution network (:class:`BatchedCNN`), and trains a whole
search space under one pinned budget. Introduced in the chapter "Zero-shot architecture search:
ZiCo".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from helpers.core.progress import progress
from helpers.core.validation import check_int
from helpers.engine.batched import BatchedMLP, batched_accuracy, train_batched

Tensor = torch.Tensor


def zico_from_gradients(grads: Tensor) -> Tensor:
    """ZiCo term of one layer from its per-batch gradients.

    Args:
        grads: (B, K, P) gradients of P weights of K models on B ≥ 2 batches.

    Returns:
        (K,) ``log Σ_w mean_b|g| / std_b(g)`` over weights with non-zero std (0 if none).
    """
    if grads.ndim != 3 or grads.shape[0] < 2:
        raise ValueError(f"grads must be (B >= 2, K, P), got {tuple(grads.shape)}")
    g = grads.double()
    # (K, P), np.std as in the authors' code; two explicit passes over the small leading
    # axis are several times faster than Tensor.std(dim=0) on CPU. A weight whose gradient
    # is the same on every batch is detected exactly (its mean may round away from it).
    std = (g - g.mean(dim=0)).square().mean(dim=0).sqrt()
    varies = (g != g[:1]).any(dim=0) & (std > 0)
    mean_abs = g.abs().mean(dim=0)
    ratio = torch.where(varies, mean_abs / std.clamp_min(1e-300), torch.zeros_like(std))
    total = ratio.sum(-1)  # (K,)
    return torch.where(total > 0, total.clamp_min(1e-300).log(), torch.zeros_like(total))


def _batches(n: int, batch_size: int, n_batches: int, seed: int,
             device: torch.device | str = "cpu") -> list[Tensor]:
    check_int("batch_size", batch_size, low=1, high=n)
    check_int("n_batches", n_batches, low=2)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same batches on every device
    return [torch.randperm(n, generator=gen)[:batch_size].to(device)  # cpu: drawn with gen
            for _ in range(n_batches)]


def zico_batched(model: BatchedMLP | BatchedCNN, x: Tensor, y: Tensor, *, batch_size: int = 64,
                 n_batches: int = 4, seed: int = 0) -> Tensor:
    """ZiCo of each of the K networks of ``model`` (cross-entropy, same batches for all), (K,).

    Sums the layer terms of the weight tensors (not the biases), like :func:`zico_score`.
    """
    if not isinstance(model, BatchedMLP | BatchedCNN):
        raise TypeError("model must be a helpers.BatchedMLP or a helpers.topics.zico.BatchedCNN")
    K, params = model.n_models, list(model.weights)
    per_batch: list[list[Tensor]] = [[] for _ in params]
    for idx in _batches(x.shape[0], batch_size, n_batches, seed, x.device):
        out = model(x[idx])  # (K, b, C)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y[idx].repeat(K),
                               reduction="sum") / len(idx)  # sum of per-model mean losses
        grads = torch.autograd.grad(loss, params)
        for store, g in zip(per_batch, grads, strict=True):
            store.append(g.reshape(K, -1))
    return sum(zico_from_gradients(torch.stack(s)) for s in per_batch)


def zico_score(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 64,
               n_batches: int = 4, seed: int = 0) -> float:
    """ZiCo of one network over its ``nn.Linear`` and ``nn.Conv2d`` weight tensors."""
    layers = [m.weight for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    if not layers:
        raise TypeError("model has no nn.Linear or nn.Conv2d layer")
    per_batch: list[list[Tensor]] = [[] for _ in layers]
    model.train()
    for idx in _batches(x.shape[0], batch_size, n_batches, seed, x.device):
        grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), layers)
        for store, g in zip(per_batch, grads, strict=True):
            store.append(g.reshape(1, -1))
    return float(sum(zico_from_gradients(torch.stack(s)) for s in per_batch)[0])


class SmallCNN(nn.Sequential):
    """``depth`` 3×3 conv layers of ``channels`` channels on 8×8 digits, then a linear read-out.

    Takes flat (n, 64) inputs like the MLPs, so both share one training loop.
    """

    def __init__(self, channels: int, depth: int = 2, *, n_classes: int = 10, seed: int = 0):
        if channels < 1 or depth < 1:
            raise ValueError(f"channels and depth must be positive, got {channels}, {depth}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
            for i in range(depth):
                layers += [nn.Conv2d(1 if i == 0 else channels, channels, 3, padding=1),
                           nn.ReLU()]
            layers += [nn.Flatten(), nn.Linear(channels * 64, n_classes)]
            super().__init__(*layers)


class BatchedCNN(nn.Module):
    """K :class:`SmallCNN` of one architecture (one per seed), run as one grouped network.

    Conv layer l of model k holds ``weights[l][k]`` (C, C_in, 3, 3); the K models' channels
    are concatenated, so the first layer is one convolution with K·C output channels on the
    shared input and every later layer a grouped convolution (``groups=K``, group k only sees
    model k's channels). The read-out is a batched product. Model k is initialised exactly as
    ``SmallCNN(channels, depth, seed=seeds[k])``; the interface (``weights``, ``biases``,
    ``n_models``, outputs (K, n, C)) is that of :class:`helpers.engine.batched.BatchedMLP`.
    Introduced in the chapter "Zero-shot architecture search: ZiCo".
    """

    def __init__(self, channels: int, depth: int, seeds: Sequence[int], *,
                 n_classes: int = 10):
        super().__init__()
        if len(seeds) < 1:
            raise ValueError("seeds must name at least one model")
        nets = [SmallCNN(channels, depth, n_classes=n_classes, seed=int(s)) for s in seeds]
        layers = [[m for m in net if isinstance(m, nn.Conv2d | nn.Linear)] for net in nets]
        self.channels, self.depth = channels, depth
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach() for ls in layers]))
            for i in range(depth + 1))  # conv: (K, C, C_in, 3, 3); read-out: (K, classes, 64 C)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach() for ls in layers]))
            for i in range(depth + 1))  # (K, C) and (K, classes)

    @property
    def n_models(self) -> int:
        """K, the number of models."""
        return self.weights[0].shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Flat 8×8 images x: (n, 64), shared by all models → outputs (K, n, classes)."""
        if x.ndim != 2 or x.shape[1] != 64:
            raise ValueError(f"x must be (n, 64), got {tuple(x.shape)}")
        K, C, n = self.n_models, self.channels, x.shape[0]
        h = x.view(n, 1, 8, 8)
        for i, (W, b) in enumerate(zip(self.weights[:-1], self.biases[:-1], strict=True)):
            h = torch.relu(F.conv2d(h, W.flatten(0, 1), b.flatten(), padding=1,
                                    groups=1 if i == 0 else K))  # (n, K C, 8, 8)
        h = h.reshape(n, K, C * 64).transpose(0, 1)  # (K, n, 64 C), SmallCNN's flatten order
        return torch.baddbmm(self.biases[-1][:, None], h, self.weights[-1].transpose(1, 2))

    def model(self, k: int) -> SmallCNN:
        """A standalone copy of model k as a :class:`SmallCNN`."""
        net = SmallCNN(self.channels, self.depth, n_classes=self.biases[-1].shape[1])
        net.to(self.weights[0])
        layers = [m for m in net if isinstance(m, nn.Conv2d | nn.Linear)]
        with torch.no_grad():
            for layer, W, b in zip(layers, self.weights, self.biases, strict=True):
                layer.weight.copy_(W[k])
                layer.bias.copy_(b[k])
        return net


def _he_rescale(weights: Sequence[Tensor]) -> None:
    # PyTorch's default draws U(±1/sqrt(fan_in)): variance 1/(3 fan_in); He wants 2/fan_in.
    with torch.no_grad():
        for w in weights:
            w.mul_(6**0.5)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class SearchResult:
    """Every architecture of the search space with its proxies and trained accuracies.

    Attributes:
        names: one label per architecture; kinds: ``mlp`` or ``cnn``; depths: hidden layers.
        params: #parameters; zico: ZiCo at initialisation (mean over seeds).
        budgets: training steps at which accuracy was measured.
        accuracy: (n_architectures, n_budgets) test accuracy, mean over seeds.
        zico_plain, accuracy_plain: the same for the ``plain_seeds`` models left at PyTorch's
            default initialisation (empty without them).
    """

    names: list[str]
    kinds: list[str]
    depths: list[int]
    widths: list[int]
    params: list[int]
    zico: list[float]
    budgets: list[int]
    accuracy: list[list[float]] = field(default_factory=list)
    zico_plain: list[float] = field(default_factory=list)
    accuracy_plain: list[list[float]] = field(default_factory=list)


def search_space(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, *,
                 depths: Sequence[int] = (1, 2, 3, 4),
                 widths: Sequence[int] = (8, 16, 32, 64, 128, 256),
                 cnn_channels: Sequence[int] = (4, 8, 16), budgets: Sequence[int] = (50, 100, 200),
                 lr: float = 0.1, batch_size: int = 64, n_seeds: int = 2,
                 he_init: bool = True, plain_seeds: int = 0, seed: int = 0) -> SearchResult:
    """Score every architecture with ZiCo at initialisation, then train it with SGD.

    The ``n_seeds`` models of one architecture are trained at once by
    :func:`helpers.engine.batched.train_batched` (a :class:`BatchedCNN` is a stacked model like
    :class:`helpers.engine.batched.BatchedMLP`), the same update for both. Every
    network sees the same mini-batches, learning rate and numbers of steps (``budgets``,
    increasing), and accuracy is recorded after each budget. With ``he_init`` the weights are
    rescaled from PyTorch's default uniform initialisation (variance 1/(3 fan_in)) to He's
    (variance 2/fan_in), so that depth alone does not shrink the signal. ``plain_seeds`` more
    models of every architecture, left at the default initialisation, are stacked with them
    and trained in the same run (same batches, same steps), their ZiCo and accuracies kept
    apart in ``zico_plain`` and ``accuracy_plain``.
    """
    budgets = sorted(int(b) for b in budgets)
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive step counts, got {budgets}")
    n_seeds = check_int("n_seeds", n_seeds, low=1)
    plain_seeds = check_int("plain_seeds", plain_seeds, low=0)
    seeds = [seed * 1000 + s for s in range(n_seeds + plain_seeds)]
    main = slice(0, n_seeds)  # the models that are He-rescaled; the rest stay plain
    chunks = [b - a for a, b in zip([0, *budgets[:-1]], budgets, strict=True)]
    res = SearchResult([], [], [], [], [], [], budgets)
    archs = [("mlp", d, w) for d in depths for w in widths] + [("cnn", 2, c) for c in cnn_channels]
    for kind, d, w in progress(archs, desc="architectures"):
        if kind == "mlp":
            net = BatchedMLP([x.shape[1], *[w] * d, int(y.max()) + 1], seeds, device=x.device)
        else:
            net = BatchedCNN(w, d, seeds).to(x)
        if he_init:
            _he_rescale([w[main] for w in net.weights])
        z = zico_batched(net, x, y, seed=seed)  # (K,)
        accs = []
        for i, c in enumerate(chunks):
            train_batched(net, x, y, lr=lr, steps=c, batch_size=batch_size, seed=seed + i)
            accs.append(batched_accuracy(net, x_test, y_test))  # (K,)
        if plain_seeds:
            res.zico_plain.append(z[n_seeds:].mean().item())
            res.accuracy_plain.append([a[n_seeds:].mean().item() for a in accs])
        z, accs = z[main].mean().item(), [a[main].mean().item() for a in accs]
        params = n_parameters(net) // len(seeds)
        res.names.append(f"{kind} {d}×{w}")
        res.kinds.append(kind)
        res.depths.append(d)
        res.widths.append(w)
        res.params.append(params)
        res.zico.append(z)
        res.accuracy.append(accs)
    return res
