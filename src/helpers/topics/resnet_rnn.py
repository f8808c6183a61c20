"""Residual networks as unrolled recurrent networks, with or without weight sharing.

Liao & Poggio (2016), "Bridging the Gaps Between Residual Learning, Recurrent Neural Networks
and Visual Cortex" {liao2016bridging}: the recurrence h_{t+1} = h_t + f(h_t), unrolled for T
steps, is a depth-T ResNet whose blocks share one set of weights. :class:`ResidualStack` builds
both (``shared=True``: one block applied T times, the RNN; ``shared=False``: T blocks, the
ResNet), for R independent models at once (a leading "runs" dimension on every weight), so
that several seeds train in one batched loop; :class:`StackedStacks` goes one step further and
trains stacks of different depth, sharing and skip as one batched model.

Introduced in the chapter "ResNets are unrolled recurrent networks" (book/depth/resnet_rnn).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers.core.validation import check_choice, check_int, check_positive
from helpers.engine.data import Split

NORMS = (None, "shared", "per_step")


class ResidualStack(nn.Module):
    """x ↦ h_0 = relu(xA + a);  h_{t+1} = h_t + f_t(h_t) for t < T;  logits = h_T C + c.

    The residual branch is f_t(h) = relu(N_t(h W1_t + b1_t)) W2_t + b2_t, with N_t the identity
    or batch normalisation. With ``shared=True`` every step uses the same block (k = 0): a
    recurrent network unrolled T times; with ``shared=False`` step t uses block t: a ResNet.

    Args:
        d_in, width, n_classes: input size, hidden width d, number of classes.
        T: number of steps (blocks). shared: tie the blocks' weights.
        skip: keep the identity path (``False`` gives h_{t+1} = f_t(h_t), a plain network).
        norm: ``None``; ``"shared"`` (batch norm whose running statistics are pooled over all
            steps, as in an RNN); ``"per_step"`` (one set of running statistics per step, as in
            a ResNet). Both use the batch's statistics while training.
        runs: R, models held side by side; every weight has shape (R, ...).
        seed: seeds the initialisation (no global generator is touched).
        branch_scale: W2 starts with standard deviation branch_scale·√(2/(T·width)), so the
            T residual branches together move h by O(branch_scale) at initialisation.
    Inputs have shape (R, B, d_in); outputs (R, B, n_classes).
    """

    def __init__(self, d_in: int, width: int, n_classes: int, T: int, *, shared: bool,
                 skip: bool = True, norm: str | None = None, runs: int = 1, seed: int = 0,
                 dtype: torch.dtype = torch.float32, branch_scale: float = 0.25):
        super().__init__()
        for name, v in (("d_in", d_in), ("width", width), ("n_classes", n_classes), ("T", T),
                        ("runs", runs)):
            check_int(name, v, low=1)
        check_choice("norm", norm, NORMS)
        self.T, self.shared, self.skip, self.norm, self.runs = T, shared, skip, norm, runs
        K = 1 if shared else T  # number of distinct blocks
        gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device; .to() moves

        def init(*shape: int, fan_in: int, gain: float = 2.0) -> nn.Parameter:
            w = torch.randn(*shape, generator=gen, dtype=dtype)  # cpu: CPU gen; .to() moves
            return nn.Parameter(w * (gain / fan_in) ** 0.5)

        zeros = lambda *s: nn.Parameter(torch.zeros(*s, dtype=dtype))  # noqa: E731  # cpu: .to()
        self.A, self.a = init(runs, d_in, width, fan_in=d_in), zeros(runs, 1, width)
        self.W1, self.b1 = init(runs, K, width, width, fan_in=width), zeros(runs, K, 1, width)
        # A small residual branch keeps h_T of order h_0 at any T (``branch_scale`` ≤ 1).
        self.W2 = init(runs, K, width, width, fan_in=width, gain=2.0 * branch_scale**2 / T)
        self.b2 = zeros(runs, K, 1, width)
        self.C, self.c = init(runs, width, n_classes, fan_in=width, gain=1.0), zeros(runs, 1,
                                                                                     n_classes)
        S = 0 if norm is None else (1 if norm == "shared" else T)  # running-statistics slots
        stats = (runs, S, 1, width)
        self.register_buffer("running_mean", torch.zeros(stats, dtype=dtype))  # cpu: .to() moves
        self.register_buffer("running_var", torch.ones(stats, dtype=dtype))  # cpu: .to() moves
        self.momentum = 0.1

    def _bn(self, z: torch.Tensor, t: int) -> torch.Tensor:
        slot = 0 if self.norm == "shared" else t
        if self.training:
            mu, var = z.mean(1, keepdim=True), z.var(1, keepdim=True, unbiased=False)
            with torch.no_grad():
                self.running_mean[:, slot].lerp_(mu, self.momentum)
                self.running_var[:, slot].lerp_(var, self.momentum)
        else:
            mu, var = self.running_mean[:, slot], self.running_var[:, slot]
        return (z - mu) / (var + 1e-5).sqrt()

    def branch(self, h: torch.Tensor, t: int) -> torch.Tensor:
        """f_t(h) for h of shape (R, B, d)."""
        k = 0 if self.shared else t
        z = torch.baddbmm(self.b1[:, k], h, self.W1[:, k])
        if self.norm is not None:
            z = self._bn(z, t)
        return torch.baddbmm(self.b2[:, k], torch.relu(z), self.W2[:, k])

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h_0, h_1, …, h_T], each (R, B, d)."""
        if x.dim() == 2:
            x = x.expand(self.runs, *x.shape)
        hs = [torch.relu(torch.baddbmm(self.a, x, self.A))]
        for t in range(self.T):
            f = self.branch(hs[-1], t)
            hs.append(hs[-1] + f if self.skip else f)
        return hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.c, self.hidden(x)[-1], self.C)

    def n_parameters(self) -> int:
        """Trainable parameters of one model (one run)."""
        return sum(p[0].numel() for p in self.parameters())

    def unrolled_copy(self) -> ResidualStack:
        """The same network written as a depth-T ResNet: T separate blocks, each a copy of the
        shared block (weights equal in value, no longer tied). Only for ``shared=True``."""
        if not self.shared:
            raise ValueError("unrolled_copy needs shared=True (nothing to unroll otherwise)")
        width, d_in = self.W1.shape[-1], self.A.shape[1]
        net = ResidualStack(d_in, width, self.C.shape[-1], self.T, shared=False, skip=self.skip,
                            norm=self.norm, runs=self.runs, dtype=self.A.dtype).to(self.A.device)
        with torch.no_grad():
            for name in ("A", "a", "C", "c"):
                getattr(net, name).copy_(getattr(self, name))
            for name in ("W1", "b1", "W2", "b2"):
                getattr(net, name).copy_(getattr(self, name).expand_as(getattr(net, name)))
            if self.norm is not None:
                net.running_mean.copy_(self.running_mean.expand_as(net.running_mean))
                net.running_var.copy_(self.running_var.expand_as(net.running_var))
        return net.train(self.training)


class StackedStacks(nn.Module):
    """Several :class:`ResidualStack` s, of any depth T_i, sharing and skip, trained as one model.

    Run r of the stack belongs to network i; with T = max_i T_i, step t < T of run r is

        h_{t+1} = k_{rt} h_t + m_{rt} f_{rt}(h_t), m_{rt} = [t < T_i], k_{rt} = max(s_i, 1 − m_{rt})

    (s_i = 1 with the identity path, else 0: a network of depth T_i idles for its last T − T_i
    steps, and k = 0 drops the identity path).
    The weights are copies of the networks', stacked to (R, T, ...) with R = Σ_i R_i runs: a
    shared network's block is repeated T times and an unshared one padded with zero blocks.
    Tied weights stay tied because a shared network's T copies get the same gradient, the sum
    over steps of the per-step gradients (the chain rule through θ ↦ (θ, …, θ), i.e.
    back-propagation through time), and Adam treats equal values with equal gradients equally.
    The gradient is written out by hand (``_StackGrad``, tested against autograd on the
    networks themselves): one step costs a few batched products per block for all R runs,
    without one autograd graph per network. Networks must agree on d_in, width, n_classes and
    dtype, without batch norm. Chapter "ResNets are unrolled recurrent networks".
    """

    NAMES = ("A", "a", "W1", "b1", "W2", "b2", "C", "c")

    def __init__(self, nets: list[ResidualStack]):
        super().__init__()
        if not isinstance(nets, list | tuple) or not nets or not all(
                isinstance(n, ResidualStack) for n in nets):
            raise TypeError("nets must be a non-empty list of ResidualStack")
        shapes = {(n.A.shape[1], n.W1.shape[-1], n.C.shape[-1], n.A.dtype) for n in nets}
        if len(shapes) > 1 or any(n.norm is not None for n in nets):
            raise ValueError(f"nets must share (d_in, width, n_classes, dtype) and have no "
                             f"batch norm, got {sorted(map(str, shapes))}")
        self.T, self.runs = max(n.T for n in nets), sum(n.runs for n in nets)
        self.sizes = [n.runs for n in nets]
        for name in self.NAMES:
            self.register_parameter(name, nn.Parameter(torch.cat(
                [self._tile(n, getattr(n, name).detach()) for n in nets]).clone()))
        starts = torch.tensor([0, *self.sizes]).cumsum(0).tolist()  # cpu: run offsets
        self.tied = [(a, b) for a, b, n in zip(starts, starts[1:], nets, strict=False)
                     if n.shared]  # rows whose T blocks are one shared block
        dev, dtype = nets[0].A.device, nets[0].A.dtype
        active = torch.tensor([[float(t < n.T) for t in range(self.T)] for n in nets
                               for _ in range(n.runs)], dtype=dtype, device=dev)  # (R, T)
        skip = torch.tensor([float(n.skip) for n in nets for _ in range(n.runs)], dtype=dtype,
                            device=dev)  # (R,)
        self.register_buffer("gain", active.T[..., None, None].contiguous())  # (T, R, 1, 1)
        self.register_buffer("keep", torch.maximum(skip[:, None], 1 - active).T[..., None, None]
                             .contiguous())  # (T, R, 1, 1): 1 keeps h_t, 0 replaces it

    def _tile(self, net: ResidualStack, w: torch.Tensor) -> torch.Tensor:
        if w.dim() < 4:  # A, a, C, c
            return w
        if net.shared:
            return w.expand(net.runs, self.T, *w.shape[2:])
        return torch.cat([w, w.new_zeros(net.runs, self.T - net.T, *w.shape[2:])], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (R, B, n_classes) for inputs (R, B, d_in)."""
        return _StackGrad.apply(x, self.keep, self.gain, self.tied,
                                *(getattr(self, k) for k in self.NAMES))

    def split(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Per-run ``values`` (R, ...) cut into one piece per network, in order."""
        return list(values.split(self.sizes))


class _StackGrad(torch.autograd.Function):
    """The forward pass of :class:`StackedStacks` and its gradient, written out.

    Backward, with g = ∂L/∂h_{t+1}: g_f = m_t g; ∂W2_t = a_tᵀ g_f; g_a = g_f W2_tᵀ ⊙ [a_t > 0];
    ∂W1_t = h_tᵀ g_a; ∂L/∂h_t = k_t g + g_a W1_tᵀ; biases sum over the batch; tied rows then
    receive Σ_t ∂W_t in every copy.
    """

    @staticmethod
    def forward(ctx, x, keep, gain, tied, A, a, W1, b1, W2, b2, C, c):  # noqa: ANN001
        blocks = [t.unbind(1) for t in (W1, b1, W2, b2)]
        hs, acts = [torch.baddbmm(a, x, A).clamp_(min=0)], []  # h_0 (R, B, d)
        for t, (w1, c1, w2, c2) in enumerate(zip(*blocks, strict=True)):
            acts.append(torch.baddbmm(c1, hs[-1], w1).clamp_(min=0))  # (R, B, d)
            hs.append(torch.baddbmm(c2, acts[-1], w2).mul_(gain[t]).addcmul_(keep[t], hs[-1]))
        ctx.save_for_backward(x, keep, gain, A, W1, W2, C, *hs, *acts)
        ctx.tied, ctx.T = tied, len(acts)
        return torch.baddbmm(c, hs[-1], C)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001
        x, keep, gain, A, W1, W2, C, *rest = ctx.saved_tensors
        hs, acts = rest[:ctx.T + 1], rest[ctx.T + 1:]
        gC, gc = hs[-1].transpose(1, 2) @ g, g.sum(1, keepdim=True)
        g = g @ C.transpose(1, 2)  # ∂L/∂h_T
        grads = {k: [None] * ctx.T for k in ("W1", "b1", "W2", "b2")}
        for t in reversed(range(ctx.T)):
            gf = g * gain[t]
            grads["W2"][t], grads["b2"][t] = acts[t].transpose(1, 2) @ gf, gf.sum(1, keepdim=True)
            ga = (gf @ W2[:, t].transpose(1, 2)).mul_(acts[t] > 0)
            grads["W1"][t], grads["b1"][t] = hs[t].transpose(1, 2) @ ga, ga.sum(1, keepdim=True)
            g = torch.baddbmm(g * keep[t], ga, W1[:, t].transpose(1, 2))
        g = g.mul_(hs[0] > 0)
        stacked = {k: torch.stack(v, 1) for k, v in grads.items()}  # (R, T, ...)
        for lo, hi in ctx.tied:
            for v in stacked.values():
                v[lo:hi] = v[lo:hi].sum(1, keepdim=True)
        return (None, None, None, None, x.transpose(1, 2) @ g, g.sum(1, keepdim=True),
                stacked["W1"], stacked["b1"], stacked["W2"], stacked["b2"], gC, gc)


def rnn_unroll(cell, h0: torch.Tensor, T: int, *, skip: bool = True) -> torch.Tensor:  # noqa: ANN001
    """h_T of the recurrence h_{t+1} = h_t + cell(h_t) (or cell(h_t) without skip), T steps."""
    check_int("T", T, low=0)
    h = h0
    for _ in range(T):
        h = h + cell(h) if skip else cell(h)
    return h


def _dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def train_classifier(model: ResidualStack | StackedStacks, split, *, epochs: int = 30,  # noqa: ANN001
                     batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.0,
                     seed: int = 0) -> torch.Tensor:
    """Mini-batch AdamW (decoupled ``weight_decay``) on cross-entropy, all R runs at once.

    The learning rate decays linearly from ``lr`` to zero, so that the final weights do not
    carry the noise of the last few steps (which otherwise dominates run-to-run differences).
    Returns the (R,) test accuracy.

    The loss is the sum over runs of each run's mean loss, so the runs never interact (Adam is
    element-wise). Each run sees its own sample order, drawn from ``seed``.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        check_int(name, v, low=1)
    check_positive("lr", lr)
    x, y = split.x_train.to(_dtype(model)), split.y_train
    gen = torch.Generator().manual_seed(seed)  # cpu: same sample orders on every device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n, R = len(x), model.runs
    total = epochs * (n // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 - k / total)
    model.train()
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=gen)  # cpu: CPU generator
                             for _ in range(R)]).to(x.device)  # (R, n)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[:, start:start + batch_size]  # (R, B)
            logits = model(x[idx])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y[idx].flatten()) * R
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return classifier_accuracy(model, split)


def train_together(nets: list[ResidualStack], split, **kwargs) -> list[torch.Tensor]:  # noqa: ANN001
    """Train ``nets`` with :func:`train_classifier`, one :class:`StackedStacks` per depth T.

    Networks of equal depth share one batched model (none idles through padded steps); every
    group uses the same ``kwargs`` (epochs, lr, seed, …). Returns each network's (R_i,) test
    accuracy, in the order of ``nets``; the networks themselves are not modified.
    """
    if not isinstance(nets, list | tuple) or not nets:
        raise TypeError("nets must be a non-empty list of ResidualStack")
    accuracy: list[torch.Tensor | None] = [None] * len(nets)
    for T in sorted({n.T for n in nets}):
        members = [i for i, n in enumerate(nets) if n.T == T]
        stack = StackedStacks([nets[i] for i in members])
        for i, acc in zip(members, stack.split(train_classifier(stack, split, **kwargs)),
                          strict=True):
            accuracy[i] = acc
    return accuracy


def classifier_accuracy(model: ResidualStack | StackedStacks, split) -> torch.Tensor:  # noqa: ANN001
    """(R,) accuracy on ``split.x_test`` in evaluation mode."""
    model.eval()
    with torch.no_grad():
        x = split.x_test.to(_dtype(model))
        pred = model(x.expand(model.runs, *x.shape)).argmax(-1)  # (R, n_test)
    return (pred == split.y_test).to(torch.float64).mean(1)


def spirals(n_train: int, n_test: int, *, turns: float = 3.0, seed: int = 0,
            device: torch.device | str = "cpu") -> Split:
    """Two interleaved spirals in the plane, ``turns`` turns each: a task where depth helps.

    A point at radius r = √u (u uniform in [0, 1], so the density is uniform in the disc) of
    class y ∈ {0, 1} sits at angle 2π·turns·r + π·y; inputs are scaled to radius 2. Separating
    many turns takes many folds of the plane, which depth provides cheaply (each layer of a
    ReLU network can double the number of linear pieces) and width only expensively. Drawn on
    the CPU from ``seed`` (the same data on every device), then moved to ``device``.
    Chapter "ResNets are unrolled recurrent networks".
    """
    n_train, n_test = check_int("n_train", n_train, low=1), check_int("n_test", n_test, low=1)
    turns = check_positive("turns", turns)
    gen = torch.Generator().manual_seed(seed)  # cpu: same data on every device
    n = n_train + n_test
    r = torch.rand(n, generator=gen, dtype=torch.float64).sqrt()  # cpu: CPU generator
    y = torch.randint(0, 2, (n,), generator=gen)  # cpu: CPU generator
    angle = 2 * math.pi * turns * r + math.pi * y
    x = (2 * r[:, None] * torch.stack([angle.cos(), angle.sin()], 1)).float()  # (n, 2)
    x, y = x.to(device), y.to(device)
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], 2)
