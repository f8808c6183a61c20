"""Batch-norm backward as a projection, and student specialisation in a teacher-student setting.

Two mechanisms from Tian's teacher-student analyses, introduced in the chapter "A
teacher-student framework for deep ReLU networks": batch norm's gradient as a projection, from
"A theoretical framework for deep locally connected ReLU network" (2018), and student
specialisation, from "Student specialization in deep ReLU networks with finite width and input
dimension" (2020, arXiv 1909.13458).

Batch norm in training mode maps a channel's batch ``x`` (N values) to
``xhat = (x - mean x) / s`` with ``s = sqrt(var x + eps)``. Its backward pass is

    dL/dx = (1 / s) (g - mean(g) 1 - mean(g * xhat) xhat),     g = dL/dxhat,

which for ``eps = 0`` (then ``||xhat||^2 = N``) is ``(1/s) P g`` with ``P`` the orthogonal
projection onto the complement of span{1, xhat}. With ``eps > 0`` the component along ``xhat``
is not removed completely: it keeps the fraction ``eps / (var + eps)``.

In the teacher-student setting a fixed two-layer ReLU teacher
``y = sum_j v_j relu(w_j . x + b_j)`` labels fresh Gaussian inputs, and an over-realised
student (more hidden nodes) is trained on them. Student nodes *specialise*: each strong teacher
node ends up highly correlated with some student node, strong nodes first, and an
over-realised student covers more teacher nodes than an exactly realised one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from helpers.core.progress import progress
from helpers.core.seeding import make_generator
from helpers.core.validation import check_int, check_ints, check_real, check_shape


def batch_norm_train(x: Tensor, eps: float = 0.0) -> Tensor:
    """Hand-written training-mode batch norm ``(x - mean) / sqrt(var + eps)`` over dim 0.

    ``x`` is (N, C); the variance is the biased one (divide by N), as in torch. No affine part.
    """
    check_shape("x", x, (None, None))
    check_int("x.shape[0]", x.shape[0], low=2)
    check_real("eps", eps, low=0.0)
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
    check_real("eps", eps, low=0.0)
    return eps / (var + eps)


@dataclass
class Teacher:
    """K independent two-layer ReLU teachers ``y = sum_j v_j relu(w_j . x + b_j)``.

    Fields: ``w`` (K, m, d) unit-norm rows; ``b`` (K, m); ``v`` (K, m) output weights of each
    teacher, sorted from strongest to weakest, ``v_j = j^(-decay)``.
    """

    w: Tensor
    b: Tensor
    v: Tensor

    def __call__(self, x: Tensor) -> Tensor:  # (K, B, d) or (B, d) -> (K, B)
        return (relu_nodes(self.w, self.b, x) * self.v[:, None, :]).sum(-1)


def make_teacher(n_teachers: int, d: int, m: int, *, decay: float = 1.0, seed: int = 0,
                 bias_range: float = 0.25, device: torch.device | str = "cpu") -> Teacher:
    """Random teachers with ``m`` hidden nodes, output weights ``j^(-decay)``, ``j = 1..m``."""
    check_int("n_teachers", n_teachers, low=1)
    check_int("d", d, low=1)
    check_int("m", m, low=1)
    check_real("decay", decay, low=0.0)
    gen = make_generator(seed, device)
    w = torch.randn(n_teachers, m, d, generator=gen, device=device)
    w = w / w.norm(dim=-1, keepdim=True)
    b = (2 * torch.rand(n_teachers, m, generator=gen, device=device) - 1) * bias_range
    v = torch.arange(1, m + 1, dtype=w.dtype, device=device) ** -decay
    return Teacher(w, b, v.expand(n_teachers, m).clone())


def stack_teachers(*teachers: Teacher) -> Teacher:
    """The teachers of several :class:`Teacher` objects as one, pairs concatenated in order."""
    if not teachers:
        raise ValueError("teachers must name at least one Teacher")
    return Teacher(*(torch.cat([getattr(t, f) for t in teachers]) for f in ("w", "b", "v")))


def relu_nodes(w: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """Hidden activations ``relu(w_j . x + b_j)``: w (K, m, d), b (K, m), x (B, d) or (K, B, d).

    Returns (K, B, m).
    """
    if x.ndim == 2:
        x = x.expand(w.shape[0], *x.shape)
    return torch.relu(x @ w.transpose(-1, -2) + b[:, None])


def best_correlations(teacher: Teacher, w_s: Tensor, b_s: Tensor, x: Tensor,
                      active: Tensor | None = None) -> Tensor:
    """For each teacher node, ``max_k corr(f_j(x), g_k(x))`` over student nodes, shape (K, m).

    ``corr`` is the Pearson correlation of the two activations over the inputs ``x`` (B, d); a
    student node that never fires has correlation 0, and so has a node outside ``active``
    (K, n), a mask of the nodes each student really has.
    """
    def standardise(a: Tensor) -> Tensor:  # (K, B, nodes), unit-norm centred columns
        a = a - a.mean(dim=1, keepdim=True)
        norm = a.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, a / norm.clamp_min(1e-30), torch.zeros_like(a))

    ft = standardise(relu_nodes(teacher.w, teacher.b, x))
    gs = standardise(relu_nodes(w_s, b_s, x))
    if active is not None:
        gs = gs * active[:, None, :].to(gs.dtype)
    return (ft.transpose(1, 2) @ gs).amax(dim=-1)


@dataclass
class StudentRun:
    """Result of :func:`train_students`: ``steps`` (T,), ``correlations`` (T, K, m) best
    correlation of each teacher node over training, ``first_match`` (K, m) first recorded step
    with correlation above the threshold (``inf`` if never: a censored time, not the step
    limit), ``final_loss`` (K,)."""

    steps: Tensor
    correlations: Tensor
    first_match: Tensor
    final_loss: Tensor


def train_students(teacher: Teacher, n: int | Sequence[int], *, steps: int, batch: int = 256,
                   lr: float = 3e-3, every: int = 50, threshold: float = 0.9,
                   n_eval: int = 4096, seed: int = 0) -> StudentRun:
    """Train one student (``n`` ReLU nodes, or ``n[k]`` for pair k) per teacher with Adam on
    fresh inputs.

    Each step draws ``batch`` new inputs ``x ~ N(0, I_d)`` and minimises the mean squared error
    to the teacher's outputs; every ``every`` steps it records :func:`best_correlations` on a
    fixed evaluation set of ``n_eval`` Gaussian inputs. Students of different sizes train in one
    run: each has ``max(n)`` nodes of which only its first ``n[k]`` are connected to the output
    (the others get zero gradient, so Adam never moves them, and they are not counted).
    """
    K, m, d = teacher.w.shape
    sizes = [check_int("n", n, low=1)] * K if not isinstance(n, Sequence) else check_ints(
        "n", n, low=1, length=K)
    for name, value in (("steps", steps), ("every", every), ("batch", batch),
                        ("n_eval", n_eval)):
        check_int(name, value, low=1)
    check_real("threshold", threshold, low=-1.0, high=1.0)
    device, n_max = teacher.w.device, max(sizes)
    gen = make_generator(seed, device)
    active = torch.arange(n_max, device=device) < torch.tensor(sizes, device=device)[:, None]
    w_s = (torch.randn(K, n_max, d, generator=gen, device=device) / d**0.5).requires_grad_()
    b_s = torch.zeros(K, n_max, device=device).requires_grad_()
    scale = torch.tensor(sizes, dtype=torch.float32, device=device)[:, None] ** -0.5
    v_s = (torch.randn(K, n_max, generator=gen, device=device) * scale).requires_grad_()
    c_s = torch.zeros(K, 1, device=device).requires_grad_()
    opt = torch.optim.Adam([w_s, b_s, v_s, c_s], lr=lr)
    x_eval = torch.randn(n_eval, d, generator=gen, device=device)
    recorded, history = [], []
    for t in progress(range(steps + 1), desc="students"):
        if t % every == 0 or t == steps:
            with torch.no_grad():
                history.append(best_correlations(teacher, w_s, b_s, x_eval, active))
            recorded.append(t)
        if t == steps:
            break
        x = torch.randn(batch, d, generator=gen, device=device)
        y = teacher(x)  # (K, B)
        out = (relu_nodes(w_s, b_s, x) * (v_s * active)[:, None]).sum(-1) + c_s  # (K, B)
        loss = ((out - y) ** 2).mean(dim=1)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    ts = torch.tensor(recorded, dtype=torch.float32, device=device)
    corr = torch.stack(history)  # (T, K, m)
    hit = corr > threshold
    first = torch.where(hit.any(0), ts[hit.float().argmax(0)], float("inf"))
    return StudentRun(ts, corr, first, loss.detach())


def order_concordance(first_match: Tensor, strong: Sequence[int], weak: Sequence[int]) -> Tensor:
    """Per pair, the share of (strong j, weak k) node pairs with ``first_j < first_k`` (ties
    count one half), (K,). Never-matched nodes have ``first = inf``, so a strong node matched
    before a never-matched weak one counts as earlier, and two never-matched ones tie.

    The Mann-Whitney statistic U / (|strong| |weak|) of each pair: 1/2 in expectation when the
    order of matching does not depend on strength, with variance
    ``(s + w + 1) / (12 s w)`` for s strong and w weak nodes under that null.
    """
    check_shape("first_match", first_match, (None, None))
    strong, weak = list(strong), list(weak)
    a = first_match[:, strong][:, :, None]  # (K, s, 1)
    b = first_match[:, weak][:, None, :]  # (K, 1, w)
    score = (a < b).to(torch.float64) + 0.5 * (a == b).to(torch.float64)
    return score.mean(dim=(1, 2))
