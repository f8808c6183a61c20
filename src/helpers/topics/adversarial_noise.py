"""Adversarial examples as test error in Gaussian noise: the isoperimetric distance bound.

For Gaussian noise ``x ~ N(x0, σ² I)`` and an error set E of measure ``μ = P(x ∈ E)``, the
Gaussian isoperimetric inequality says that the ε-expansion of E has measure at least that of
a half-space of the same measure,

    P(d(x, E) ≤ ε) ≥ Φ(Φ⁻¹(μ) + ε/σ),

with equality for half-spaces. So the median distance from a noisy point to the nearest
error is at most ``-σ Φ⁻¹(μ)``, the distance from x0 to the half-space of measure μ
(Ford, Gilmer, Carlini & Cubuk 2019, ``ford2019adversarial``). Introduced in the chapter
"Adversarial examples are test error in noise".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from helpers.core.validation import check_choice, check_int, check_positive

Array = np.ndarray


def _check_sigma(sigma: float) -> float:
    return check_positive("sigma", sigma)


def _check_mu(mu: float | Array) -> Array:
    m = np.asarray(mu, dtype=float)
    if np.any(~((m > 0) & (m < 1))):
        raise ValueError(f"mu must lie strictly between 0 and 1, got {mu!r}")
    return m


def isoperimetric_distance(mu: float | Array, sigma: float) -> float | Array:
    """The half-space distance ``d = -σ Φ⁻¹(μ)``: the solution of ``Φ(-d/σ) = μ``.

    It bounds the median distance to the nearest error of a noisy point when the error rate
    in noise ``N(x0, σ² I)`` is μ (ford2019adversarial). Negative when μ > 1/2.
    """
    sigma = _check_sigma(sigma)
    d = -sigma * stats.norm.ppf(_check_mu(mu))
    return float(d) if np.ndim(d) == 0 else d


def isoperimetric_cdf(eps: float | Array, mu: float, sigma: float) -> Array:
    """Lower bound ``Φ(Φ⁻¹(μ) + ε/σ)`` on the distance CDF ``P(d(x, E) ≤ ε)``, ε ≥ 0."""
    sigma = _check_sigma(sigma)
    return stats.norm.cdf(stats.norm.ppf(_check_mu(mu)) + np.asarray(eps, dtype=float) / sigma)


@dataclass(frozen=True)
class ErrorSet:
    """An error set with a known exact measure under ``N(0, σ² I)`` and exact distances.

    Attributes:
        name: short description.
        mu: its exact Gaussian measure.
        distance: maps noise vectors z = x − x0, (n, d), to the Euclidean distance from x to
            the set, (n,), zero inside it.
    """

    name: str
    mu: float
    distance: Callable[[Array], Array]


def error_sets(dim: int, mu: float, sigma: float, *, seed: int = 0) -> dict[str, ErrorSet]:
    """Four error sets of the same measure μ in ``dim`` dimensions, with exact distances.

    ``half-space``: ``{w·z ≥ b}`` with ``b = -σΦ⁻¹(μ)`` (extremal). ``union``: two half-spaces
    with orthogonal normals, each of measure ``1 − √(1 − μ)``. ``intersection``: two such
    half-spaces of measure ``√μ`` each (distance ``√(Σ max(0, b_i − u_i)²)``, exact because
    the normals are orthogonal). ``ball exterior``: ``{‖z‖ > R}`` with ``R² = σ² χ²_d``'s upper
    μ-quantile. Normals are random orthonormal directions drawn from ``seed``.
    """
    dim = check_int("dim", dim, low=2)
    sigma, mu = _check_sigma(sigma), float(_check_mu(mu))
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    w1, w2 = q[:, 0], q[:, 1]
    b = isoperimetric_distance(mu, sigma)
    b_union = isoperimetric_distance(1 - np.sqrt(1 - mu), sigma)
    b_inter = isoperimetric_distance(np.sqrt(mu), sigma)
    radius = sigma * np.sqrt(stats.chi2.isf(mu, dim))
    gap = lambda z, w, c: np.maximum(0.0, c - z @ w)  # noqa: E731
    return {
        "half-space": ErrorSet("half-space", mu, lambda z: gap(z, w1, b)),
        "union": ErrorSet("union of 2 half-spaces", mu,
                          lambda z: np.minimum(gap(z, w1, b_union), gap(z, w2, b_union))),
        "intersection": ErrorSet("intersection of 2 half-spaces", mu,
                                 lambda z: np.hypot(gap(z, w1, b_inter), gap(z, w2, b_inter))),
        "ball exterior": ErrorSet("outside a ball", mu,
                                  lambda z: np.maximum(0.0, radius - np.linalg.norm(z, axis=1))),
    }


def cdf_gap(distances: Array, mu: float, sigma: float) -> float:
    """``inf_{ε ≥ 0} [F_n(ε) − Φ(Φ⁻¹(μ) + ε/σ)]`` for the empirical CDF F_n of ``distances``.

    Exact: F_n is a step function and the bound increases, so the infimum is attained at
    ε = 0 or just before a jump. The isoperimetric inequality plus the DKW inequality say it
    is ≥ −t with probability ≥ 1 − exp(−2 n t²).
    """
    d = np.sort(np.asarray(distances, dtype=float).ravel())
    if d.size == 0 or np.any(d < 0) or not np.all(np.isfinite(d)):
        raise ValueError("distances must be a non-empty array of finite non-negative numbers")
    n = d.size
    at_zero = np.mean(d == 0) - isoperimetric_cdf(0.0, mu, sigma)
    pos = np.flatnonzero(d > 0)
    before_jumps = pos / n - isoperimetric_cdf(d[pos], mu, sigma)  # F_n just left of d[pos]
    return float(min(at_zero, before_jumps.min(initial=np.inf)))


def noise_error_rate(predict: Callable[[Array], Array], x: Array, y: Array, sigma: float, *,
                     n_noise: int, seed: int = 0) -> Array:
    """Monte Carlo error rate in noise, ``μ̂(x0) = mean_k 1[predict(x0 + σ z_k) ≠ y]``, per point.

    ``predict`` maps an (m, d) array to m labels; all N·n_noise noisy copies go in one call.
    """
    sigma = _check_sigma(sigma)
    n_noise = check_int("n_noise", n_noise, low=1)
    x, y = np.asarray(x, dtype=float), np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (N, d) and y (N,), got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    noisy = x[:, None, :] + sigma * rng.standard_normal((x.shape[0], n_noise, x.shape[1]))
    labels = np.asarray(predict(noisy.reshape(-1, x.shape[1]))).reshape(x.shape[0], n_noise)
    return (labels != y[:, None]).mean(axis=1)


def linear_error_distance(W: Array, b: Array, x: Array, y: Array) -> Array:
    """Exact distance to the nearest error of a linear classifier ``argmax_j (W x + b)_j``.

    The error set of a point of class c is the union over j ≠ c of the half-spaces
    ``{s_j ≥ s_c}``, so its distance is ``min_j (s_c − s_j)₊ / ‖w_c − w_j‖``.
    """
    W, b, x, y = (np.asarray(a) for a in (W, b, x, y))
    if W.ndim != 2 or b.shape != (W.shape[0],) or x.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"need W (C, d), b (C,), x (N, d); got {W.shape}, {b.shape}, {x.shape}")
    s = x @ W.T + b  # (N, C)
    idx = np.arange(len(x))
    margins = s[idx, y][:, None] - s  # (N, C)
    norms = np.linalg.norm(W[y][:, None, :] - W[None], axis=2)  # (N, C)
    ratio = np.where(norms > 0, np.maximum(margins, 0) / np.where(norms > 0, norms, 1), np.inf)
    ratio[idx, y] = np.inf
    return ratio.min(axis=1)


def line_search_distance(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         y: torch.Tensor, *, max_radius: float, n_grid: int = 64,
                         n_bisect: int = 20) -> torch.Tensor:
    """Distance to the nearest error along the margin-gradient direction (an upper bound).

    Direction ``u = −∇_x m / ‖∇_x m‖`` with margin ``m = s_y − max_{j≠y} s_j``; a grid of
    radii up to ``max_radius`` finds the first misclassified point, bisection refines it.
    Points whose ray never leaves the class get ``inf``. All points are processed at once.
    """
    if max_radius <= 0 or n_grid < 2 or n_bisect < 0:
        raise ValueError("max_radius must be positive, n_grid >= 2 and n_bisect >= 0")
    x = x.detach().clone().requires_grad_(True)
    s = model(x)
    other = s.masked_fill(torch.nn.functional.one_hot(y, s.shape[1]).bool(), -torch.inf)
    margin = s.gather(1, y[:, None])[:, 0] - other.max(1).values
    (g,) = torch.autograd.grad(margin.sum(), x)
    u = -g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x = x.detach()

    def wrong(r: torch.Tensor) -> torch.Tensor:  # r: (N, k) radii → (N, k) misclassified?
        pts = x[:, None, :] + r[..., None] * u[:, None, :]
        with torch.no_grad():
            return model(pts.reshape(-1, x.shape[1])).argmax(1).view(r.shape) != y[:, None]

    radii = torch.linspace(0, max_radius, n_grid, dtype=x.dtype, device=x.device)
    radii = radii.expand(len(x), n_grid)
    hit = wrong(radii)
    found = hit.any(1)
    first = hit.float().argmax(1).clamp_min(1)
    hi = radii.gather(1, first[:, None])[:, 0]
    lo = radii.gather(1, (first - 1)[:, None])[:, 0]
    for _ in range(n_bisect):
        mid = (lo + hi) / 2
        w = wrong(mid[:, None])[:, 0]
        hi, lo = torch.where(w, mid, hi), torch.where(w, lo, mid)
    zero = wrong(x.new_zeros(len(x), 1))[:, 0]
    out = torch.where(found, hi, torch.full_like(hi, torch.inf))
    return torch.where(zero, torch.zeros_like(out), out)


def _margin(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor) -> torch.Tensor:
    """``s_y − max_{j≠y} s_j`` per point, (N,): negative exactly where x is misclassified."""
    s = model(x)
    other = s.masked_fill(torch.nn.functional.one_hot(y, s.shape[1]).bool(), -torch.inf)
    return s.gather(1, y[:, None])[:, 0] - other.max(1).values


def _pgd_succeeds(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor, eps: torch.Tensor, norm: str, steps: int) -> torch.Tensor:
    """Does projected gradient descent on the margin find an error within ``eps`` (N,)?"""
    delta = torch.zeros_like(x)
    alpha = 2.5 * eps[:, None] / steps  # Madry et al.'s step: 2.5 ε / steps
    found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        delta.requires_grad_(True)
        m = _margin(model, x + delta, y)
        (g,) = torch.autograd.grad(m.sum(), delta)
        with torch.no_grad():
            found |= m < 0
            if norm == "l2":
                delta = delta - alpha * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
                scale = (eps[:, None] / delta.norm(dim=1, keepdim=True).clamp_min(1e-12))
                delta = delta * scale.clamp(max=1.0)  # project onto the ℓ2 ball of radius ε
            else:
                delta = (delta - alpha * g.sign()).clamp(-eps[:, None], eps[:, None])
    with torch.no_grad():
        return found | (_margin(model, x + delta, y) < 0)


def pgd_distance(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor, *, max_radius: float, norm: str = "l2", steps: int = 20,
                 n_bisect: int = 12) -> torch.Tensor:
    """Smallest radius at which a projected-gradient attack finds an error, per point, (N,).

    For each point, bisection over ε in [0, max_radius]: at each ε, ``steps`` steps of
    projected gradient descent on the margin ``s_y − max_{j≠y} s_j`` inside the ``norm`` ball
    (``"l2"``: normalised gradient steps; ``"linf"``: signed steps, Madry et al. 2018) stop at
    the first misclassified point. The result upper-bounds the true distance to the nearest
    error in that norm (it is an attack that succeeded), up to ``max_radius · 2^-n_bisect``;
    points with no error found within ``max_radius`` get ``inf``. All points run at once. Used
    in the chapter "Adversarial examples are test error in noise" (ford2019adversarial measure
    distances with PGD).
    """
    max_radius = check_positive("max_radius", max_radius)
    norm = check_choice("norm", norm, ("l2", "linf"))
    steps, n_bisect = check_int("steps", steps, low=1), check_int("n_bisect", n_bisect, low=0)
    x = x.detach()
    hi = torch.full((len(x),), max_radius, dtype=x.dtype, device=x.device)
    lo = torch.zeros_like(hi)
    reachable = _pgd_succeeds(model, x, y, hi, norm, steps)
    for _ in range(n_bisect):
        mid = (lo + hi) / 2
        ok = _pgd_succeeds(model, x, y, mid, norm, steps)
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    with torch.no_grad():
        hi = torch.where(_margin(model, x, y) < 0, torch.zeros_like(hi), hi)
    return torch.where(reachable, hi, torch.full_like(hi, torch.inf))


def linear_error_distance_linf(W: Array, b: Array, x: Array, y: Array) -> Array:
    """Exact ℓ∞ distance to the nearest error of ``argmax_j (W x + b)_j``.

    The ℓ∞ distance to the half-space ``{s_j ≥ s_c}`` is ``(s_c − s_j)₊ / ‖w_c − w_j‖₁``
    (Hölder's dual norm), so the distance is the minimum of that over j ≠ c.
    """
    W, b, x, y = (np.asarray(a) for a in (W, b, x, y))
    if W.ndim != 2 or b.shape != (W.shape[0],) or x.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"need W (C, d), b (C,), x (N, d); got {W.shape}, {b.shape}, {x.shape}")
    s = x @ W.T + b  # (N, C)
    idx = np.arange(len(x))
    margins = s[idx, y][:, None] - s  # (N, C)
    norms = np.abs(W[y][:, None, :] - W[None]).sum(axis=2)  # (N, C)
    ratio = np.where(norms > 0, np.maximum(margins, 0) / np.where(norms > 0, norms, 1), np.inf)
    ratio[idx, y] = np.inf
    return ratio.min(axis=1)


def median_ratio_interval(ratio: Array, *, level: float = 0.99) -> tuple[float, float, float]:
    """Sample median of ``ratio`` and a distribution-free ``level`` interval for the true median.

    The interval is ``[r_(k), r_(n+1−k)]`` between order statistics, with k the largest index
    such that ``P(Binomial(n, 1/2) < k) ≤ (1 − level)/2`` (the sign-test interval). Returns
    ``(median, low, high)``.
    """
    r = np.sort(np.asarray(ratio, dtype=float).ravel())
    n = r.size
    if n < 10 or not np.all(np.isfinite(r)):
        raise ValueError(f"ratio must hold at least 10 finite values, got {n}")
    k = int(stats.binom.ppf((1 - level) / 2, n, 0.5))  # P(B ≤ k−1) ≤ (1 − level)/2
    k = max(k, 1)
    return float(np.median(r)), float(r[k - 1]), float(r[n - k])
