"""Greedy layerwise learning with auxiliary heads (Belilovsky, Eickenberg & Oyallon 2019).

A network is a stack of blocks f_J ∘ … ∘ f_1. Greedy training solves J problems in turn:
at stage j the blocks f_1 … f_{j−1} are **frozen** (no gradient, normalisation statistics
fixed) and block f_j is trained together with an auxiliary classifier h_j with k hidden
layers,

    min_{θ_j, γ_j}  E  ℓ( h_j( f_j( x_{j−1}; θ_j ); γ_j ), y ),   x_{j−1} = f_{j−1} ∘ … ∘ f_1(x),

after which h_j is discarded (only the last one is kept as the classifier). End-to-end
training optimises all blocks and the last head jointly. A linear probe on x_j measures how
linearly separable the stage-j features are (arXiv:1812.11446).

Introduced in the chapter "Greedy layerwise learning".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers.core.seeding import one_cpu_thread
from helpers.core.validation import check_int, check_positive, check_real

Tensor = torch.Tensor


def two_spirals(n: int, *, turns: float = 3.0, noise: float = 0.02, seed: int,
                device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """n points on two interleaved spirals r = t, angle 2π·turns·t (+π for class 1), t ∈ (0, 1].

    Returns x (n, 2) float32 with radius ≤ 1 plus N(0, noise²) jitter, and y (n,) int64, on
    ``device`` (drawn on the CPU, so the points are the same on every device).
    """
    check_int("n", n, low=2)
    check_positive("turns", turns)
    check_real("noise", noise, low=0.0)
    gen = torch.Generator().manual_seed(int(seed))  # cpu: same points on every device
    y = torch.arange(n) % 2  # cpu: moved with x below
    t = 0.05 + 0.95 * torch.rand(n, generator=gen)  # cpu: skip the tangled centre
    angle = 2 * math.pi * turns * t + math.pi * y
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], 1)
    x = x + noise * torch.randn(n, 2, generator=gen)  # cpu: moved below
    return x.to(device), y.to(device)


def shift_images(x: Tensor, max_shift: int, *, seed: int) -> Tensor:
    """Each image of x (n, C, H, W) translated by its own offset (dy, dx), uniform on
    {−s, …, s}² with s = ``max_shift``; pixels moved in from outside are 0.

    Output pixel (i, j) of image m is input pixel (i + dy_m, j + dx_m), or 0 off the image. The
    offsets are drawn on the CPU from ``seed`` (the same on every device).
    """
    s = check_int("max_shift", max_shift, low=0)
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a tensor (n, C, H, W), got shape {getattr(x, 'shape', None)}")
    n, c, h, w = x.shape
    gen = torch.Generator().manual_seed(int(seed))  # cpu: same offsets on every device
    offsets = torch.randint(0, 2 * s + 1, (n, 2), generator=gen).to(x.device)  # cpu: drawn
    padded = nn.functional.pad(x, (s, s, s, s))  # (n, C, H + 2s, W + 2s)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (n, H)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (n, W)
    m = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[m, ch, rows[:, None, :, None], cols[:, None, None, :]]


def paired_difference(correct_a: Tensor, correct_b: Tensor) -> tuple[float, float]:
    """acc(a) − acc(b) on the same test points, and its standard error sd(d_i)/√n.

    ``correct_a``, ``correct_b`` are (n,) booleans (a classifier right on point i);
    d_i = correct_a[i] − correct_b[i] ∈ {−1, 0, 1} are independent over test points, so the
    estimator's standard error is their sample standard deviation over √n (the paired,
    McNemar-type error: agreements cost no variance).
    """
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1 or len(correct_a) < 2:
        raise ValueError("correct_a and correct_b must be (n,) with the same n >= 2")
    d = correct_a.double() - correct_b.double()
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


def mlp_block(d_in: int, width: int) -> nn.Sequential:
    """Linear → BatchNorm1d → ReLU: one block of the fully connected greedy network."""
    return nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU())


def conv_block(c_in: int, c_out: int, *, pool: bool) -> nn.Sequential:
    """3×3 convolution → BatchNorm2d → ReLU (→ 2×2 max-pool): one convolutional block."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


def aux_head(d_in: int, n_classes: int, *, k: int, width: int = 64,
             spatial: bool = False) -> nn.Sequential:
    """Auxiliary classifier with k hidden ReLU layers of ``width`` units (k = 0: linear).

    With ``spatial=True`` the (C, H, W) features are first average-pooled to 2×2 and flattened,
    so ``d_in`` is then the number of channels C.
    """
    check_int("k", k, low=0)
    layers: list[nn.Module] = []
    if spatial:
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten()]
        d_in = 4 * d_in
    for _ in range(k):
        layers += [nn.Linear(d_in, width), nn.ReLU()]
        d_in = width
    return nn.Sequential(*layers, nn.Linear(d_in, n_classes))


def freeze(module: nn.Module) -> nn.Module:
    """Freeze a block: no parameter has or takes a gradient; normalisation runs in eval mode.

    The module's ``train`` is replaced so that a later ``model.train()`` cannot turn batch
    statistics back on: a frozen block is a fixed function.
    """
    module.requires_grad_(False)
    for p in module.parameters():
        p.grad = None  # drop what training left behind
    module.eval()
    module.train = lambda mode=True: module  # type: ignore[method-assign]
    return module


def channels_last(x: Tensor, *modules: nn.Module) -> Tensor:
    """Images x (n, C, H, W) and ``modules`` stored channels-last (NHWC), the same tensors.

    Only the memory order changes, so results agree up to the order of floating-point sums.
    On the CPU it is the faster order for these small convolutional blocks: the 2×2 max-pool
    of a (128, 32, 8, 8) batch ran about 12× faster than in NCHW order, a whole training step
    of the chapter's network about 1.3×. Tensors of other ranks are returned unchanged.
    """
    if x.ndim != 4:
        return x
    for module in modules:
        module.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last)


def _fit(params: list[Tensor], models: list[tuple[nn.Module, Tensor]], y: Tensor, *,
         steps: int, lr: float, batch_size: int, seed: int) -> None:
    """Adam on the sum of the models' mean cross-entropies, each model on its own inputs at
    the same minibatch indices. The models share no parameter, so each one's gradient and
    update are exactly those of training it alone: one step serves them all."""
    gen = torch.Generator().manual_seed(int(seed))  # cpu: same minibatches on every device
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    opt = torch.optim.Adam(params, lr=lr, fused=fused or None)  # fused: one kernel, not ~10
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    n = len(models[0][1])
    with one_cpu_thread():  # small models: a second thread only adds wake-ups
        for _ in range(steps):
            idx = torch.randint(n, (min(batch_size, n),), generator=gen)  # cpu: CPU draw
            idx = idx.to(y.device)
            losses = [nn.functional.cross_entropy(model(x[idx]), y[idx]) for model, x in models]
            loss = losses[0]
            for other in losses[1:]:
                loss = loss + other
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, *, per_sample: bool = False
             ) -> float | Tensor:
    """Fraction of ``x`` classified as ``y`` by ``model`` (put in eval mode first);
    ``per_sample=True`` returns the (n,) booleans instead."""
    model.eval()
    correct = model(x).argmax(-1) == y
    return correct if per_sample else correct.float().mean().item()


def train_greedy(blocks: list[nn.Module], heads: list[nn.Module], x: Tensor, y: Tensor, *,
                 steps: int, lr: float = 1e-2, batch_size: int = 256,
                 seed: int) -> list[float]:
    """Greedy layerwise training (module docstring); returns each head's training accuracy.

    Stage j trains ``blocks[j]`` and ``heads[j]`` for ``steps`` Adam steps (cosine-decayed
    learning rate) on the input computed once by the frozen blocks below; afterwards
    ``blocks[j]`` is frozen with :func:`freeze`. Images and modules are first put in
    channels-last order (:func:`channels_last`).
    """
    return train_greedy_together([(blocks, heads)], x, y, steps=steps, lr=lr,
                                 batch_size=batch_size, seed=seed)[0]


def train_greedy_together(networks: list[tuple[list[nn.Module], list[nn.Module]]], x: Tensor,
                          y: Tensor, *, steps: int, lr: float = 1e-2, batch_size: int = 256,
                          seed: int) -> list[list[float]]:
    """:func:`train_greedy` of several networks (blocks, heads) with the same number of
    stages, data and settings, stage by stage in one loop: they draw the same minibatches, so
    each network is trained exactly as alone. Returns each network's list of head accuracies.
    """
    if not networks or any(len(b) != len(h) or not b for b, h in networks):
        raise ValueError("blocks and heads must be non-empty lists of the same length")
    if len({len(b) for b, _ in networks}) != 1:
        raise ValueError("networks must all have the same number of stages")
    check_int("steps", steps, low=1)
    features = [channels_last(x, *blocks, *heads) for blocks, heads in networks]
    fits: list[list[float]] = [[] for _ in networks]
    for j in range(len(networks[0][0])):
        stages = [nn.Sequential(blocks[j], heads[j]).train() for blocks, heads in networks]
        _fit([p for stage in stages for p in stage.parameters()],
             list(zip(stages, features, strict=True)), y, steps=steps, lr=lr,
             batch_size=batch_size, seed=seed + j)
        for k, ((blocks, _), stage) in enumerate(zip(networks, stages, strict=True)):
            fits[k].append(accuracy(stage, features[k], y))
            freeze(blocks[j])
            with torch.no_grad():
                features[k] = blocks[j](features[k])
    return fits


def train_end_to_end(blocks: list[nn.Module], head: nn.Module, x: Tensor, y: Tensor, *,
                     steps: int, lr: float = 1e-2, batch_size: int = 256,
                     seed: int) -> nn.Sequential:
    """Train all blocks and one head jointly, same optimiser; returns the network (images
    and modules in channels-last order, :func:`channels_last`)."""
    check_int("steps", steps, low=1)
    net = nn.Sequential(*blocks, head).train()
    x = channels_last(x, net)
    _fit(list(net.parameters()), [(net, x)], y, steps=steps, lr=lr, batch_size=batch_size,
         seed=seed)
    return net.eval()


@torch.no_grad()
def stage_features(blocks: list[nn.Module], x: Tensor) -> list[Tensor]:
    """[x_0 = x, x_1, …, x_J], each flattened to (n, d_j), blocks in eval mode."""
    out, h = [x.flatten(1)], x
    for block in blocks:
        block.eval()
        h = block(h)
        out.append(h.flatten(1))
    return out


def linear_probe(f_train: Tensor, y_train: Tensor, f_test: Tensor, y_test: Tensor, *,
                 weight_decay: float = 1e-4, steps: int = 200,
                 per_sample: bool = False) -> float | Tensor:
    """Test accuracy of a multinomial logistic regression fitted on standardised features
    (``per_sample=True``: the (n_test,) booleans of which test points it gets right).

    Minimises mean cross-entropy + ``weight_decay``·‖W‖² over W (d, C) and c (C). A convex
    problem, so the answer does not depend on a seed. With C = 2 classes it is solved exactly
    by Newton's method (:func:`binary_logistic_newton`); with more, by ``steps`` iterations of
    L-BFGS.
    """
    if f_train.ndim != 2 or f_test.ndim != 2 or f_train.shape[1] != f_test.shape[1]:
        raise ValueError("f_train and f_test must be (n, d) with the same d")
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    a, b = ((f_train - mean) / std).double(), ((f_test - mean) / std).double()
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if n_classes == 2:
        v, c0 = binary_logistic_newton(a, y_train, weight_decay=weight_decay / 2)
        correct = ((b @ v + c0) > 0) == (y_test == 1)
        return correct if per_sample else correct.double().mean().item()
    W = torch.zeros(a.shape[1], n_classes, dtype=torch.float64, device=a.device,
                    requires_grad=True)
    c = torch.zeros(n_classes, dtype=torch.float64, device=a.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(a @ W + c, y_train) + weight_decay * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        correct = (b @ W + c).argmax(1) == y_test
    return correct if per_sample else correct.double().mean().item()


def binary_logistic_newton(a: Tensor, y: Tensor, *, weight_decay: float, tol: float = 1e-10,
                           max_iter: int = 100) -> tuple[Tensor, Tensor]:
    """The minimiser (v, b) of  mean_i [log(1 + e^{z_i}) − t_i z_i] + weight_decay·‖v‖²,
    z = a v + b, t_i = 1[y_i = 1], by Newton's method with backtracking.

    This is the two-class case of :func:`linear_probe`: softmax over logits a w_k + c_k depends
    only on v = w_1 − w_0 and b = c_1 − c_0, and ‖w_0‖² + ‖w_1‖² is smallest, for a given v, at
    w_1 = −w_0 = v/2, where it equals ‖v‖²/2. The objective is strictly convex in (v, b) when
    the two classes are not separable by the bias alone; the gradient is
    (aᵀ(σ(z) − t)/n + 2λv, mean(σ(z) − t)) and the Hessian [a 1]ᵀ diag(σ(1 − σ)) [a 1]/n +
    2λ·diag(1, …, 1, 0). Iterates until the Newton decrement² is below ``tol``.
    """
    check_real("weight_decay", weight_decay, low=0.0)
    n, d = a.shape
    t = (y == 1).to(a.dtype)
    design = torch.cat([a, torch.ones(n, 1, dtype=a.dtype, device=a.device)], 1)
    ridge = torch.full((d + 1,), 2 * weight_decay, dtype=a.dtype, device=a.device)
    ridge[-1] = 0.0  # the bias is not penalised

    def objective(theta):
        z = design @ theta
        return (nn.functional.softplus(z) - t * z).mean() + weight_decay * theta[:-1].square().sum()

    theta = torch.zeros(d + 1, dtype=a.dtype, device=a.device)
    value = objective(theta)
    for _ in range(max_iter):
        p = torch.sigmoid(design @ theta)
        grad = design.T @ (p - t) / n + ridge * theta
        hess = (design.T * (p * (1 - p))) @ design / n + torch.diag(ridge)
        step = torch.linalg.solve(hess, grad)
        decrement = (grad @ step).item()
        if decrement < tol:
            break
        size = 1.0
        while True:  # backtracking (Armijo): the objective falls by at least a quarter of size·λ²
            new = theta - size * step
            new_value = objective(new)
            if new_value <= value - 0.25 * size * decrement or size < 1e-12:
                break
            size /= 2
        theta, value = new, new_value
    return theta[:-1], theta[-1]
