"""Paths between global minima of a one-hidden-layer leaky-ReLU network (squared loss).

Nguyen (ICML 2019, arXiv:1901.07417) shows that when one hidden layer is wider than the number
N of training samples and the activation is piecewise linear and strictly monotone (leaky
ReLU), every sublevel set {θ : L(θ) ≤ c} of the training loss is connected: there are no bad
valleys, and any two global minima are joined by a path along which the loss never rises.

The construction used here, for f(x) = vᵀσ(Wx + b) + c and
L = (1/2N) Σ_i (f(x_i) − y_i)²: for fixed first layer (W, b) the loss is convex in the
read-out (v, c), and with hidden features H(W, b) = [σ(XWᵀ + 1bᵀ), 1] of rank N it reaches
zero. So (1) move the read-out of minimum A in a straight line to the least-squares read-out
(convex: the loss stays below its endpoint values), (2) interpolate the first layer linearly
from A to B, re-solving the read-out by least squares at every point, (3) move the read-out
in a straight line to B's. Step (2) keeps the loss at zero as long as H keeps rank N.

Introduced in the chapter "Connected sublevel sets" (sublevel-sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor


@dataclass(frozen=True)
class OneHidden:
    """Weights of f(x) = vᵀσ(Wx + b) + c: W (m, d), b (m,), v (m,), c scalar tensor."""

    W: Tensor
    b: Tensor
    v: Tensor
    c: Tensor

    @classmethod
    def from_mlp(cls, mlp: nn.Module) -> OneHidden:
        """The weights of a ``helpers.MLP([d, m, 1])`` (detached copies)."""
        lin = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        if len(lin) != 2 or lin[1].out_features != 1:
            raise ValueError("mlp must have one hidden layer and one output")
        return cls(lin[0].weight.detach().clone(), lin[0].bias.detach().clone(),
                   lin[1].weight.detach()[0].clone(), lin[1].bias.detach()[0].clone())


def _check_slope(slope: float) -> None:
    if not 0 <= slope < 1:
        raise ValueError(f"slope must lie in [0, 1), got {slope}")


def hidden_features(W: Tensor, b: Tensor, x: Tensor, slope: float) -> Tensor:
    """σ(x Wᵀ + b) with σ(z) = max(z, slope·z); W (..., m, d), b (..., m), x (N, d) → (..., N, m).

    ``slope = 0`` is the ReLU.
    """
    _check_slope(slope)
    z = x @ W.transpose(-1, -2) + b[..., None, :]
    return torch.where(z > 0, z, slope * z)


def lstsq_readout(H: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-norm least-squares read-out (v, c) for features H (..., N, m) and targets y (N,).

    Solves min ‖[H, 1](v; c) − y‖ with the pseudoinverse (SVD), so it is defined whatever the
    rank of H. Returns v (..., m) and c (...).
    """
    A = torch.cat([H, torch.ones_like(H[..., :1])], dim=-1)  # (..., N, m + 1)
    sol = (torch.linalg.pinv(A) @ y[:, None])[..., 0]
    return sol[..., :-1], sol[..., -1]


def half_mse(H: Tensor, v: Tensor, c: Tensor, y: Tensor) -> Tensor:
    """L = (1/2N) Σ_i (H_i·v + c − y_i)², batched over leading dimensions."""
    out = (H @ v[..., None])[..., 0] + c[..., None]
    return 0.5 * ((out - y) ** 2).mean(-1)


def network_loss(p: OneHidden, x: Tensor, y: Tensor, slope: float) -> float:
    """The training loss L(θ) of the network with weights ``p``."""
    return half_mse(hidden_features(p.W, p.b, x, slope), p.v, p.c, y).item()


def straight_line_losses(a: OneHidden, b: OneHidden, x: Tensor, y: Tensor, slope: float,
                         ts: Tensor) -> Tensor:
    """L((1 − t)θ_A + tθ_B) for every t in ``ts``: the naive path, all parameters at once."""
    t = ts[:, None]
    mix = lambda u, w: (1 - t.view(-1, *[1] * u.ndim)) * u + t.view(-1, *[1] * u.ndim) * w  # noqa: E731
    H = hidden_features(mix(a.W, b.W), mix(a.b, b.b), x, slope)
    return half_mse(H, mix(a.v, b.v), mix(a.c, b.c), y)


@dataclass(frozen=True)
class ConstructedPath:
    """Losses along the three segments and the smallest singular value of [H, 1] in the middle.

    Attributes:
        s: path coordinate in [0, 3] (segment k covers [k − 1, k]), (T,).
        losses: loss at each point, (T,).
        middle_sigma_min: N-th singular value of [H(W(t)), 1] along segment 2, (T2,).
    """

    s: Tensor
    losses: Tensor
    middle_sigma_min: Tensor


def constructed_path(a: OneHidden, b: OneHidden, x: Tensor, y: Tensor, slope: float, *,
                     n_points: int = 201) -> ConstructedPath:
    """The three-segment path from minimum ``a`` to minimum ``b`` described in the module doc."""
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    ts = torch.linspace(0, 1, n_points, dtype=x.dtype)
    t = ts[:, None]
    W = (1 - t[..., None]) * a.W + t[..., None] * b.W  # (T, m, d)
    bias = (1 - t) * a.b + t * b.b  # (T, m)
    H = hidden_features(W, bias, x, slope)  # (T, N, m)
    v, c = lstsq_readout(H, y)
    middle = half_mse(H, v, c, y)
    ends = []
    for p, (v_star, c_star), ab in ((a, (v[0], c[0]), ts), (b, (v[-1], c[-1]), 1 - ts)):
        Hp = hidden_features(p.W, p.b, x, slope)
        vs = (1 - ab[:, None]) * p.v + ab[:, None] * v_star
        ends.append(half_mse(Hp, vs, (1 - ab) * p.c + ab * c_star, y))
    A = torch.cat([H, torch.ones_like(H[..., :1])], dim=-1)
    n = x.shape[0]
    sig = torch.linalg.svdvals(A)[:, n - 1] if A.shape[-1] >= n else torch.zeros(n_points)
    s = torch.cat([ts, 1 + ts, 2 + ts])
    return ConstructedPath(s, torch.cat([ends[0], middle, ends[1].flip(0)]), sig)


def mirrored_endpoint(p: OneHidden, x: Tensor, y: Tensor, units: int, *, slope: float,
                      seed: int, delta_scale: float = 0.1) -> tuple[OneHidden, OneHidden]:
    """Two zero-loss endpoints whose first-layer midpoint kills ``units`` ReLU units on all data.

    The ``units`` units of A whose pre-activations are most evenly split in sign (so that
    they are alive at both ends) get in B w_B = −w_A + δ_j, b_B = −b_A − 2c_j with δ_j small and
    c_j = max_i ``|δ_j·x_i|``/2 + 0.05, so at t = 1/2 its pre-activation δ_j·x/2 − c_j is
    negative on every sample: a dead ReLU unit (a zero feature), but for a leaky ReLU a
    non-constant feature in span{x, 1}. The other units are shared. Both read-outs are the
    least-squares ones for activation ``slope``. Returns the endpoints (A, B).
    """
    if not 1 <= units <= p.W.shape[0]:
        raise ValueError(f"units must lie in [1, {p.W.shape[0]}], got {units}")
    z = x @ p.W.T + p.b  # (N, m)
    balance = torch.minimum((z > 0).sum(0), (z < 0).sum(0))  # both signs: alive at A and B
    chosen = balance.argsort(descending=True)[:units]
    gen = torch.Generator().manual_seed(seed)
    delta = delta_scale * torch.randn(units, p.W.shape[1], generator=gen, dtype=p.W.dtype)
    c = (x @ delta.T).abs().max(0).values / 2 + 0.05
    W_b, b_b = p.W.clone(), p.b.clone()
    W_b[chosen] = -p.W[chosen] + delta
    b_b[chosen] = -p.b[chosen] - 2 * c
    ends = []
    for W, b in ((p.W, p.b), (W_b, b_b)):
        v, c0 = lstsq_readout(hidden_features(W, b, x, slope), y)
        ends.append(OneHidden(W, b, v, c0))
    return ends[0], ends[1]
