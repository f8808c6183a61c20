"""Paths inside sublevel sets of leaky-ReLU networks (squared loss).

Nguyen (arXiv:2101.08576, 2021) shows that when one hidden layer of a deep network with
piecewise linear, strictly monotone activations (leaky ReLU) has at least N + 1 neurons, N
the number of training samples, every sublevel set {θ : L(θ) ≤ c} of the training loss is
connected; in the two-layer setting width N can already fail. The ICML 2019 paper
(arXiv:1901.07417) proves that a layer wider than N rules out bad local valleys, and
connectivity under an extra condition on the wide layer.

The construction used here, for f(x) = vᵀσ(Wx + b) + c and
L = (1/2N) Σ_i (f(x_i) − y_i)²: for fixed first layer (W, b) the loss is convex in the
read-out (v, c), and with hidden features H(W, b) = [σ(XWᵀ + 1bᵀ), 1] of rank N it reaches
zero. So (1) move the read-out of minimum A in a straight line to the least-squares read-out
(convex: the loss stays below its endpoint values), (2) interpolate the first layer linearly
from A to B, re-solving the read-out by least squares at every point, (3) move the read-out
in a straight line to B's. Step (2) keeps the loss at zero as long as H keeps rank N. The
same construction works for a deeper network whose last hidden layer is the wide one
(:class:`DeepNet`, :func:`deep_path`): interpolate every hidden layer, re-solve the read-out.
Between two points of loss at most c, steps (1) and (3) are convex segments from a point of
loss ≤ c to one of loss 0, so the whole path stays in {L ≤ c}.

Introduced in the chapter "Connected sublevel sets" (sublevel-sets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from helpers.core.validation import check_int, check_real

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


@dataclass(frozen=True)
class DeepNet:
    """Weights of f(x) = vᵀσ(W_L σ(⋯σ(W_1x + b_1)⋯) + b_L) + c: lists of W (m_l, m_{l−1}), b."""

    Ws: tuple[Tensor, ...]
    bs: tuple[Tensor, ...]
    v: Tensor
    c: Tensor

    @classmethod
    def from_mlp(cls, mlp: nn.Module) -> DeepNet:
        """The weights of a ``helpers.MLP([d, m_1, …, m_L, 1])`` (detached copies)."""
        lin = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        if len(lin) < 2 or lin[-1].out_features != 1:
            raise ValueError("mlp must have at least one hidden layer and one output")
        return cls(tuple(m.weight.detach().clone() for m in lin[:-1]),
                   tuple(m.bias.detach().clone() for m in lin[:-1]),
                   lin[-1].weight.detach()[0].clone(), lin[-1].bias.detach()[0].clone())


def _check_slope(slope: float) -> None:
    check_real("slope", slope, low=0.0, high=1.0, high_open=True)


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


def deep_features(Ws: tuple[Tensor, ...], bs: tuple[Tensor, ...], x: Tensor,
                  slope: float) -> Tensor:
    """Last hidden layer's features of every sample; W_l (..., m_l, m_{l−1}) → (..., N, m_L)."""
    z = x
    for W, b in zip(Ws, bs, strict=True):
        z = hidden_features(W, b, z, slope)
    return z


def deep_loss(p: DeepNet, x: Tensor, y: Tensor, slope: float) -> float:
    """The training loss L(θ) of the deep network with weights ``p``."""
    return half_mse(deep_features(p.Ws, p.bs, x, slope), p.v, p.c, y).item()


def at_level(p: DeepNet, x: Tensor, y: Tensor, slope: float, level: float, *,
             seed: int) -> DeepNet:
    """``p`` with its read-out moved along a random direction until the loss equals ``level``.

    Along (v, c) + s(u, u_c) the loss is a convex parabola in s; this solves for its positive
    root at ``level`` (which must be at least the loss of ``p``).
    """
    level = check_real("level", level, low=0.0)
    H = deep_features(p.Ws, p.bs, x, slope)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same direction on every device
    u = torch.randn(p.v.numel() + 1, generator=gen, dtype=p.v.dtype).to(p.v.device)  # (m + 1,)
    A = torch.cat([H, torch.ones_like(H[:, :1])], dim=1)  # (N, m + 1)
    r, Au, n = H @ p.v + p.c - y, A @ u, x.shape[0]
    qa, qb, qc = (Au @ Au).item(), 2 * (r @ Au).item(), (r @ r).item() - 2 * n * level
    if qc > 0:
        raise ValueError(f"level {level:g} is below the loss {(r @ r).item() / (2 * n):g} of p")
    s = (-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
    return DeepNet(p.Ws, p.bs, p.v + s * u[:-1], p.c + s * u[-1])


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


def _three_segments(H: Tensor, ends: tuple[tuple[Tensor, Tensor, Tensor], ...], y: Tensor,
                    ts: Tensor) -> ConstructedPath:
    """Segments (1)–(3) given the middle features H (T, N, m) and each end's (H, v, c)."""
    v, c = lstsq_readout(H, y)
    middle = half_mse(H, v, c, y)
    losses = []
    for (Hp, vp, cp), (v_star, c_star), ab in zip(ends, ((v[0], c[0]), (v[-1], c[-1])),
                                                   (ts, 1 - ts), strict=True):
        vs = (1 - ab[:, None]) * vp + ab[:, None] * v_star
        losses.append(half_mse(Hp, vs, (1 - ab) * cp + ab * c_star, y))
    A = torch.cat([H, torch.ones_like(H[..., :1])], dim=-1)
    n = y.shape[0]
    sig = (torch.linalg.svdvals(A)[:, n - 1] if A.shape[-1] >= n
           else torch.zeros(len(ts), dtype=H.dtype, device=H.device))
    s = torch.cat([ts, 1 + ts, 2 + ts])
    return ConstructedPath(s, torch.cat([losses[0], middle, losses[1].flip(0)]), sig)


def _path_grid(x: Tensor, n_points: int) -> tuple[Tensor, Tensor]:
    n_points = check_int("n_points", n_points, low=2)
    ts = torch.linspace(0, 1, n_points, dtype=x.dtype, device=x.device)
    return ts, ts[:, None]


def constructed_path(a: OneHidden, b: OneHidden, x: Tensor, y: Tensor, slope: float, *,
                     n_points: int = 201) -> ConstructedPath:
    """The three-segment path from minimum ``a`` to minimum ``b`` described in the module doc."""
    ts, t = _path_grid(x, n_points)
    W = (1 - t[..., None]) * a.W + t[..., None] * b.W  # (T, m, d)
    bias = (1 - t) * a.b + t * b.b  # (T, m)
    H = hidden_features(W, bias, x, slope)  # (T, N, m)
    ends = tuple((hidden_features(p.W, p.b, x, slope), p.v, p.c) for p in (a, b))
    return _three_segments(H, ends, y, ts)


def deep_path(a: DeepNet, b: DeepNet, x: Tensor, y: Tensor, slope: float, *,
              n_points: int = 201) -> ConstructedPath:
    """The same path for deep networks: every hidden layer interpolated, read-out re-solved.

    Keeps the loss at most max(L(a), L(b)) wherever the last hidden layer's features [H, 1]
    have rank N, which needs that layer to have at least N − 1 units (N + 1 in the theorem).
    """
    if len(a.Ws) != len(b.Ws):
        raise ValueError(f"a and b must have the same depth, got {len(a.Ws)} and {len(b.Ws)}")
    ts, t = _path_grid(x, n_points)
    Ws = tuple((1 - t[..., None]) * Wa + t[..., None] * Wb for Wa, Wb in zip(a.Ws, b.Ws,
                                                                             strict=True))
    bs = tuple((1 - t) * ba + t * bb for ba, bb in zip(a.bs, b.bs, strict=True))
    H = deep_features(Ws, bs, x, slope)  # (T, N, m_L)
    ends = tuple((deep_features(p.Ws, p.bs, x, slope), p.v, p.c) for p in (a, b))
    return _three_segments(H, ends, y, ts)


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
    units = check_int("units", units, low=1, high=p.W.shape[0])
    z = x @ p.W.T + p.b  # (N, m)
    balance = torch.minimum((z > 0).sum(0), (z < 0).sum(0))  # both signs: alive at A and B
    chosen = balance.argsort(descending=True)[:units]
    gen = torch.Generator().manual_seed(seed)  # cpu: the same draws on every device
    delta = delta_scale * torch.randn(units, p.W.shape[1], generator=gen,  # cpu: moved below
                                      dtype=p.W.dtype).to(p.W.device)
    c = (x @ delta.T).abs().max(0).values / 2 + 0.05
    W_b, b_b = p.W.clone(), p.b.clone()
    W_b[chosen] = -p.W[chosen] + delta
    b_b[chosen] = -p.b[chosen] - 2 * c
    ends = []
    for W, b in ((p.W, p.b), (W_b, b_b)):
        v, c0 = lstsq_readout(hidden_features(W, b, x, slope), y)
        ends.append(OneHidden(W, b, v, c0))
    return ends[0], ends[1]
