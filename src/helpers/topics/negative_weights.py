"""Networks with non-negative weights are order-preserving, and what that costs.

If every weight matrix of f(x) = W_L σ(W_{L−1} ⋯ σ(W_1 x + b_1) ⋯) + b_L is entrywise ≥ 0 and
σ is non-decreasing, then x ≤ y (componentwise) implies f(x) ≤ f(y): the Jacobian
W_L D_{L−1} W_{L−1} ⋯ D_1 W_1 with D_l = diag(σ'(z_l)) ≥ 0 is a product of non-negative
matrices. Such a network's decision region {f > t} is an upper set, so it cannot represent
XOR (at most 3 of its 4 points right) or separate a disc from the ring around it. Wang et al.
(2022), "Why do networks have inhibitory/negative connections?".

With ReLU such a network is moreover convex (non-negative sums and increasing convex functions
of convex functions are convex), an extra restriction, so the default activation here is tanh:
non-decreasing but saturating, which leaves order preservation as the only constraint.
:func:`best_monotone_accuracy` computes, by linear programming, the best accuracy that *any*
order-preserving classifier reaches on given points.

Models here are *batches* of R independent MLPs (weights (R, n_out, n_in)), trained together
by full-batch Adam; non-negativity is kept by projecting the weights (not the biases) onto
w ≥ 0 after every step.

Introduced in the chapter "Why networks need negative weights".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sps
import torch
from scipy.optimize import linprog

from helpers.core.validation import check_int, check_ints, check_positive

Params = list[tuple[torch.Tensor, torch.Tensor]]
Activation = Callable[[torch.Tensor], torch.Tensor]


def init_mlps(widths: Sequence[int], n_models: int, *, nonnegative: bool, seed: int = 0,
              dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Params:
    """R = n_models MLPs widths[0] → … → widths[-1]: W ~ N(0, 2/n_in), or |N(0, 2/n_in)| if
    ``nonnegative``; biases N(0, 1/4). Returns [(W (R, n_out, n_in), b (R, n_out)), …] on
    ``device`` (drawn on the CPU, so every device sees the same networks)."""
    widths = check_ints("widths", list(widths), low=1)
    if len(widths) < 2:
        raise ValueError(f"widths must have at least 2 entries, got {widths}")
    n_models = check_int("n_models", n_models, low=1)
    gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device
    params = []
    for n_in, n_out in zip(widths[:-1], widths[1:], strict=True):
        w = torch.randn(n_models, n_out, n_in, generator=gen, dtype=dtype).to(device)
        w = math.sqrt(2 / n_in) * w
        b = 0.5 * torch.randn(n_models, n_out, generator=gen, dtype=dtype).to(device)
        params.append((w.abs() if nonnegative else w, b))
    return params


def forward(params: Params, x: torch.Tensor, activation: Activation = torch.tanh
            ) -> torch.Tensor:
    """Outputs of all R models: x (n, d) shared or (R, n, d) → (R, n, n_out)."""
    h = x if x.ndim == 3 else x.expand(params[0][0].shape[0], *x.shape)
    for i, (w, b) in enumerate(params):
        h = torch.einsum("rnj,rij->rni", h, w) + b[:, None, :]
        if i < len(params) - 1:
            h = activation(h)
    return h


def is_nonnegative(params: Params) -> bool:
    """Whether every weight matrix (biases excluded) is entrywise ≥ 0."""
    return all(bool((w >= 0).all()) for w, _ in params)


def train_classifiers(params: Params, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                      lr: float = 0.01, nonnegative: bool = False,
                      activation: Activation = torch.tanh,
                      nonnegative_layers: Sequence[int] | None = None) -> Params:
    """Full-batch Adam on the mean logistic loss of every model (one output logit each).

    Args:
        x: (n, d) inputs; y: (n,) labels in {0, 1}.
        nonnegative: project the weights of every layer onto w ≥ 0 after each step.
        nonnegative_layers: project only these layer indices instead (for the chapter's
            "one unconstrained layer" experiment).

    Returns:
        New trained parameters (the input ones are not modified).
    """
    steps = check_int("steps", steps, low=1)
    lr = check_positive("lr", lr)
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    layers = list(range(len(params))) if nonnegative else list(nonnegative_layers or [])
    if any(not 0 <= i < len(params) for i in layers):
        raise ValueError(f"nonnegative_layers must index the {len(params)} layers, got {layers}")
    tensors = [t.detach().clone().requires_grad_(True) for wb in params for t in wb]
    opt = torch.optim.Adam(tensors, lr=lr)
    target = y.to(x.dtype).expand(params[0][0].shape[0], -1)
    for _ in range(steps):
        pairs = list(zip(tensors[::2], tensors[1::2], strict=True))
        logits = forward(pairs, x, activation)[..., 0]  # (R, n)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none").mean(dim=1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for i in layers:
                tensors[2 * i].clamp_(min=0.0)
    return [(w.detach(), b.detach()) for w, b in zip(tensors[::2], tensors[1::2], strict=True)]


def accuracy(params: Params, x: torch.Tensor, y: torch.Tensor,
             activation: Activation = torch.tanh) -> torch.Tensor:
    """Fraction of points with [f(x) > 0] = y, per model: (R,)."""
    pred = forward(params, x, activation)[..., 0] > 0
    return (pred == y.bool()).to(x.dtype).mean(dim=1)


def ordered_pairs(n: int, d: int, *, seed: int = 0, scale: float = 1.0,
                  dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs x ≤ y: x ~ N(0, scale² I), y = x + |N(0, scale² I)| (componentwise ≤)."""
    n, d = check_int("n", n, low=1), check_int("d", d, low=1)
    gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device
    x = scale * torch.randn(n, d, generator=gen, dtype=dtype).to(device)
    return x, x + scale * torch.randn(n, d, generator=gen, dtype=dtype).to(device).abs()


def monotonicity_violations(params: Params, x: torch.Tensor, y: torch.Tensor,
                            activation: Activation = torch.tanh, *,
                            chunk: int = 8192) -> torch.Tensor:
    """Per model, how many ordered pairs x_i ≤ y_i have f(x_i) > f(y_i) (any output): (R,).

    Pairs are evaluated ``chunk`` at a time, so memory stays small for 10⁵ pairs × many models.
    """
    if x.shape != y.shape or not bool((x <= y).all()):
        raise ValueError("x and y must have equal shapes and satisfy x <= y componentwise")
    chunk = check_int("chunk", chunk, low=1)
    total = None
    for start in range(0, len(x), chunk):
        xs, ys = x[start:start + chunk], y[start:start + chunk]
        out = forward(params, torch.cat([xs, ys]), activation)  # same arithmetic for both
        count = (out[:, : len(xs)] > out[:, len(xs):]).any(dim=2).sum(dim=1)
        total = count if total is None else total + count
    return total


def xor_data(dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The four points of {0,1}² and their XOR labels."""
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=dtype, device=device)
    return x, torch.tensor([0, 1, 1, 0], device=device)


def circles(n: int, *, noise: float = 0.05, factor: float = 0.5, seed: int = 0,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's concentric circles: label 1 on the inner circle (radius ``factor``)."""
    from sklearn.datasets import make_circles

    x, y = make_circles(check_int("n", n, low=2), noise=noise, factor=factor, random_state=seed)
    return torch.as_tensor(x, dtype=dtype, device=device), torch.as_tensor(y, device=device)


def best_monotone_accuracy(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Highest accuracy of any order-preserving classifier g (x_i ≤ x_j ⇒ g(x_i) ≤ g(x_j)) on
    the points, labels y ∈ {0, 1}: an upper bound for every non-negative network.

    Linear program: maximise Σ_i [y_i z_i + (1 − y_i)(1 − z_i)] over z ∈ [0, 1]^n subject to
    z_i ≤ z_j for every pair x_i ≤ x_j. The constraint matrix (differences of unit vectors) is
    totally unimodular, so scipy's HiGHS returns an integral vertex: an optimal 0/1 labelling.
    Uses all O(n²) comparable pairs; keep n to a few thousand.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu()
    xa = np.asarray(x, dtype=np.float64)  # the LP is CPU work (scipy)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 2 or ya.shape != xa.shape[:1]:
        raise ValueError(f"x must be (n, d) and y (n,), got {xa.shape} and {ya.shape}")
    if not set(np.unique(ya)) <= {0.0, 1.0}:
        raise ValueError("y must hold labels in {0, 1}")
    n = len(xa)
    below = (xa[:, None, :] <= xa[None, :, :]).all(axis=2)
    np.fill_diagonal(below, False)
    i, j = np.nonzero(below)
    k = len(i)
    a_ub = sps.csr_matrix((np.r_[np.ones(k), -np.ones(k)],
                           (np.r_[np.arange(k), np.arange(k)], np.r_[i, j])), shape=(k, n))
    res = linprog(-(2 * ya - 1), A_ub=a_ub if k else None, b_ub=np.zeros(k) if k else None,
                  bounds=[(0, 1)] * n, method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return float((np.round(res.x) == ya).mean())
