"""Batch-norm backward as a projection, and student specialisation in a teacher-student setting.

Two mechanisms from Tian, "A theoretical framework for deep locally connected ReLU network"
(2018), introduced in the chapter "A teacher-student framework for deep ReLU networks".

Batch norm in training mode maps a channel's batch ``x`` (N values) to
``xhat = (x - mean x) / s`` with ``s = sqrt(var x + eps)``. Its backward pass is

    dL/dx = (1 / s) (g - mean(g) 1 - mean(g * xhat) xhat),     g = dL/dxhat,

which for ``eps = 0`` (then ``||xhat||^2 = N``) is ``(1/s) P g`` with ``P`` the orthogonal
projection onto the complement of span{1, xhat}. With ``eps > 0`` the component along ``xhat``
is not removed completely: it keeps the fraction ``eps / (var + eps)``.

In the teacher-student setting a fixed two-layer ReLU teacher
``y = sum_j v_j relu(w_j . x + b_j)`` labels fresh Gaussian inputs, and an over-realised
student (more hidden nodes) is trained on them. Student nodes *specialise*: each strong teacher
node ends up highly correlated with some student node, strong nodes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from helpers.core.progress import progress


def batch_norm_train(x: Tensor, eps: float = 0.0) -> Tensor:
    """Hand-written training-mode batch norm ``(x - mean) / sqrt(var + eps)`` over dim 0.

    ``x`` is (N, C); the variance is the biased one (divide by N), as in torch. No affine part.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (N, C) with N >= 2, got {tuple(x.shape)}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    mu = x.mean(dim=0)
    var = x.var(dim=0, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps)


def bn_projected_gradient(x: Tensor, grad_out: Tensor) -> Tensor:
    """The backward pass of batch norm at ``eps = 0`` written as a projection: ``(1/s) P g``.

    ``P g = g - mean(g) 1 - (xhat . g / N) xhat`` removes the components of ``g`` along ``1``
    and ``xhat`` (orthogonal, with ``||xhat||^2 = N``), per channel. Shapes: (N, C) both.
    """
    if x.shape != grad_out.shape:
        raise ValueError(f"grad_out must have the shape of x {tuple(x.shape)}, "
                         f"got {tuple(grad_out.shape)}")
    xhat = batch_norm_train(x)
    s = x.std(dim=0, unbiased=False)
    projected = grad_out - grad_out.mean(dim=0) - xhat * (grad_out * xhat).mean(dim=0)
    return projected / s


def eps_leak(var: Tensor, eps: float) -> Tensor:
    """Fraction ``eps / (var + eps)`` of the ``xhat`` component that batch norm's backward keeps."""
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return eps / (var + eps)


@dataclass
class Teacher:
    """K independent two-layer ReLU teachers ``y = sum_j v_j relu(w_j . x + b_j)``.

    Fields: ``w`` (K, m, d) unit-norm rows; ``b`` (K, m); ``v`` (m,) output weights sorted from
    strongest to weakest, ``v_j = j^(-decay)``.
    """

    w: Tensor
    b: Tensor
    v: Tensor

    def __call__(self, x: Tensor) -> Tensor:  # (K, B, d) or (B, d) -> (K, B)
        return relu_nodes(self.w, self.b, x) @ self.v


def make_teacher(n_teachers: int, d: int, m: int, *, decay: float = 1.0, seed: int = 0,
                 bias_range: float = 0.25) -> Teacher:
    """Random teachers with ``m`` hidden nodes, output weights ``j^(-decay)``, ``j = 1..m``."""
    for name, value in (("n_teachers", n_teachers), ("d", d), ("m", m)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if decay < 0:
        raise ValueError(f"decay must be non-negative, got {decay}")
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n_teachers, m, d, generator=gen)
    w = w / w.norm(dim=-1, keepdim=True)
    b = (2 * torch.rand(n_teachers, m, generator=gen) - 1) * bias_range
    v = torch.arange(1, m + 1, dtype=w.dtype) ** -decay
    return Teacher(w, b, v)


def relu_nodes(w: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """Hidden activations ``relu(w_j . x + b_j)``: w (K, m, d), b (K, m), x (B, d) or (K, B, d).

    Returns (K, B, m).
    """
    if x.ndim == 2:
        x = x.expand(w.shape[0], *x.shape)
    return torch.relu(x @ w.transpose(-1, -2) + b[:, None])


def best_correlations(teacher: Teacher, w_s: Tensor, b_s: Tensor, x: Tensor) -> Tensor:
    """For each teacher node, ``max_k corr(f_j(x), g_k(x))`` over student nodes, shape (K, m).

    ``corr`` is the Pearson correlation of the two activations over the inputs ``x`` (B, d); a
    student node that never fires has correlation 0.
    """
    def standardise(a: Tensor) -> Tensor:  # (K, B, nodes), unit-norm centred columns
        a = a - a.mean(dim=1, keepdim=True)
        norm = a.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, a / norm.clamp_min(1e-30), torch.zeros_like(a))

    ft = standardise(relu_nodes(teacher.w, teacher.b, x))
    gs = standardise(relu_nodes(w_s, b_s, x))
    return (ft.transpose(1, 2) @ gs).amax(dim=-1)


@dataclass
class StudentRun:
    """Result of :func:`train_students`: ``steps`` (T,), ``correlations`` (T, K, m) best
    correlation of each teacher node over training, ``first_match`` (K, m) first recorded step
    with correlation above the threshold (``steps[-1]`` if never), ``final_loss`` (K,)."""

    steps: Tensor
    correlations: Tensor
    first_match: Tensor
    final_loss: Tensor


def train_students(teacher: Teacher, n: int, *, steps: int, batch: int = 256, lr: float = 3e-3,
                   every: int = 50, threshold: float = 0.9, n_eval: int = 4096,
                   seed: int = 0) -> StudentRun:
    """Train one over-realised student (``n`` ReLU nodes) per teacher with Adam on fresh inputs.

    Each step draws ``batch`` new inputs ``x ~ N(0, I_d)`` and minimises the mean squared error
    to the teacher's outputs; every ``every`` steps it records :func:`best_correlations` on a
    fixed evaluation set of ``n_eval`` Gaussian inputs.
    """
    K, m, d = teacher.w.shape
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if steps < 1 or every < 1 or batch < 1:
        raise ValueError(f"steps, every and batch must be positive, got {steps}, {every}, {batch}")
    gen = torch.Generator().manual_seed(seed)
    w_s = (torch.randn(K, n, d, generator=gen) / d**0.5).requires_grad_()
    b_s = torch.zeros(K, n).requires_grad_()
    v_s = (torch.randn(K, n, generator=gen) / n**0.5).requires_grad_()
    c_s = torch.zeros(K, 1).requires_grad_()
    opt = torch.optim.Adam([w_s, b_s, v_s, c_s], lr=lr)
    x_eval = torch.randn(n_eval, d, generator=gen)
    recorded, history = [], []
    for t in progress(range(steps + 1), desc="students"):
        if t % every == 0 or t == steps:
            with torch.no_grad():
                history.append(best_correlations(teacher, w_s, b_s, x_eval))
            recorded.append(t)
        if t == steps:
            break
        x = torch.randn(batch, d, generator=gen)
        y = teacher(x)  # (K, B)
        out = (relu_nodes(w_s, b_s, x) * v_s[:, None]).sum(-1) + c_s  # (K, B)
        loss = ((out - y) ** 2).mean(dim=1)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    ts = torch.tensor(recorded, dtype=torch.float32)
    corr = torch.stack(history)  # (T, K, m)
    hit = corr > threshold
    first_idx = torch.where(hit.any(0), hit.float().argmax(0), len(recorded) - 1)
    first = torch.where(hit.any(0), ts[first_idx], float(steps))
    return StudentRun(ts, corr, first, loss.detach())
