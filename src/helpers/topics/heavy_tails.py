"""Empirical spectral densities of weight matrices: Marchenko–Pastur bulk and power-law tails.

For the chapter "Heavy-tailed self-regularisation", after Martin & Mahoney (2019),
*Traditional and heavy-tailed self regularization in neural network models*. A layer W of
shape (N, M), N ≥ M (transposed otherwise), has the correlation matrix ``X = WᵀW / N`` whose
eigenvalues form the empirical spectral density (ESD). For i.i.d. entries of variance σ² the ESD
tends to the Marchenko–Pastur (MP) law with ``q = M/N``:

    ρ(λ) = sqrt((λ₊ − λ)(λ − λ₋)) / (2π σ² q λ),   λ± = σ² (1 ± sqrt(q))²,

while entries with Pareto tails ``P(|w| > t) ~ t^(−μ)``, 0 < μ < 2, give an ESD with a power-law
tail ``ρ(λ) ~ λ^(−α)``, ``α = 1 + μ/2``. Power-law exponents are fitted by maximum likelihood
with the lower cut-off chosen by the Kolmogorov–Smirnov distance (Clauset, Shalizi & Newman
2009), with ``scipy.stats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, stats

from helpers.core.seeding import make_generator
from helpers.core.validation import check_int, check_positive, check_real

Tensor = torch.Tensor


def _check_q_sigma(q: float, sigma2: float) -> None:
    check_real("q", q, low=0.0, high=1.0, low_open=True)
    check_positive("sigma2", sigma2)


def mp_edges(q: float, sigma2: float = 1.0) -> tuple[float, float]:
    """The MP support ``(λ₋, λ₊) = (σ²(1 − √q)², σ²(1 + √q)²)``."""
    _check_q_sigma(q, sigma2)
    return sigma2 * (1 - q ** 0.5) ** 2, sigma2 * (1 + q ** 0.5) ** 2


def mp_density(lam: np.ndarray, q: float, sigma2: float = 1.0) -> np.ndarray:
    """MP density ``sqrt((λ₊ − λ)(λ − λ₋)) / (2π σ² q λ)`` on its support, 0 outside."""
    lo, hi = mp_edges(q, sigma2)
    lam = np.asarray(lam, dtype=np.float64)
    inside = (lam > lo) & (lam < hi)
    out = np.zeros_like(lam)
    li = lam[inside]
    out[inside] = np.sqrt((hi - li) * (li - lo)) / (2 * np.pi * sigma2 * q * li)
    return out


def mp_cdf(q: float, sigma2: float = 1.0, *, n_grid: int = 4001):
    """The MP cumulative distribution function as a vectorised callable.

    Integrates the density in the variable θ with ``λ = λ₋ + (λ₊ − λ₋) sin²θ``, which removes
    the square-root end points, by the cumulative trapezoid rule on ``n_grid`` points.
    """
    lo, hi = mp_edges(q, sigma2)
    theta = np.linspace(0.0, np.pi / 2, n_grid)
    lam = lo + (hi - lo) * np.sin(theta) ** 2
    width = hi - lo
    if lo > 0:
        integrand = width ** 2 * 2 * (np.sin(theta) * np.cos(theta)) ** 2 / (
            2 * np.pi * sigma2 * q * lam)
    else:  # q = 1: λ = (λ₊ − λ₋) sin²θ cancels, leaving a smooth integrand
        integrand = width * 2 * np.cos(theta) ** 2 / (2 * np.pi * sigma2 * q)
    F = integrate.cumulative_trapezoid(integrand, theta, initial=0.0)
    F /= F[-1]  # the trapezoid rule is accurate to ~1e-7 here; fix the last digits
    return lambda x: np.interp(np.asarray(x, dtype=np.float64), lam, F, left=0.0, right=1.0)


def esd(W: Tensor) -> tuple[np.ndarray, float]:
    """Eigenvalues of ``X = WᵀW/N`` for W (N, M) with N ≥ M (W is transposed otherwise).

    Returns the M eigenvalues in ascending order (float64) and ``q = M/N``.
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise ValueError("W must be a 2-D tensor")
    W = W.detach().to(torch.float64)
    if W.shape[0] < W.shape[1]:
        W = W.T
    N, M = W.shape
    s = torch.linalg.svdvals(W)
    return np.sort((s ** 2 / N).cpu().numpy()), M / N


def mp_ks(eigs: np.ndarray, q: float, sigma2: float = 1.0) -> float:
    """Kolmogorov–Smirnov distance between the eigenvalues and the MP law (``scipy.stats``)."""
    return float(stats.kstest(np.asarray(eigs), mp_cdf(q, sigma2)).statistic)


def count_spikes(eigs: np.ndarray, q: float, sigma2: float, *, tol: float = 0.1) -> int:
    """Number of eigenvalues above ``(1 + tol) λ₊``: outliers beyond the MP bulk edge."""
    check_real("tol", tol, low=0.0)
    return int((np.asarray(eigs) > (1 + tol) * mp_edges(q, sigma2)[1]).sum())


def pareto_matrix(N: int, M: int, mu: float, *, seed: int = 0,
                  device: torch.device | str = "cpu") -> Tensor:
    """(N, M) i.i.d. symmetric Pareto entries: ``±(U^(−1/μ))``, so ``P(|w| > t) = t^(−μ)``,
    t ≥ 1, float64."""
    check_positive("mu", mu)
    N, M = check_int("N", N, low=1), check_int("M", M, low=1)
    gen = make_generator(seed, device)
    u = torch.rand(N, M, generator=gen, dtype=torch.float64, device=device).clamp_min(1e-300)
    sign = torch.randint(0, 2, (N, M), generator=gen, device=device).to(torch.float64) * 2 - 1
    return sign * u ** (-1.0 / mu)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length sequences (``scipy.stats.spearmanr``);
    1 when y rises with x, −1 when it falls."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"x and y must be 1-D of equal length ≥ 3, got {x.shape}, {y.shape}")
    return float(stats.spearmanr(x, y).statistic)


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power-law fit ``p(x) ∝ x^(−α)`` for ``x ≥ xmin``.

    Attributes:
        alpha: the maximum-likelihood exponent ``1 + n / Σ log(x_i / xmin)``.
        xmin: the cut-off minimising the KS distance. ks: that distance. n_tail: points used.
    """

    alpha: float
    xmin: float
    ks: float
    n_tail: int


def fit_power_law(x: np.ndarray, *, min_tail: int = 20, max_tail_fraction: float = 0.5
                  ) -> PowerLawFit:
    """Clauset–Shalizi–Newman fit: for each candidate ``xmin`` (one of the data points, keeping
    between ``min_tail`` points and ``max_tail_fraction`` of them in the tail) the MLE
    ``α̂ = 1 + n / Σ log(x_i/xmin)`` and the KS distance between the tail and
    ``scipy.stats.pareto(α̂ − 1, scale=xmin)``; the fit with the smallest distance wins.
    All candidates are scored at once (one broadcast ``scipy.stats.pareto.cdf`` call)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    x = x[x > 0]
    if len(x) < 2 * min_tail:
        raise ValueError(f"x must have at least {2 * min_tail} positive values, got {len(x)}")
    if not 0 < max_tail_fraction <= 1:
        raise ValueError(f"max_tail_fraction must lie in (0, 1], got {max_tail_fraction}")
    L = len(x)
    first = max(0, L - int(max_tail_fraction * L))
    starts = np.arange(first, L - min_tail + 1)  # candidate xmin indices, (C,)
    n_tail = L - starts
    suffix_log = np.cumsum(np.log(x)[::-1])[::-1]  # Σ_{j ≥ i} log x_j
    logs = suffix_log[starts] - n_tail * np.log(x[starts])
    keep = logs > 0
    if not keep.any():
        raise ValueError("x has no spread in its upper part: no power law can be fitted")
    starts, n_tail, alpha = starts[keep], n_tail[keep], 1 + n_tail[keep] / logs[keep]
    # KS distance of every candidate at once: tail point j has empirical rank k = j − i.
    j = np.arange(L)[None, :]
    k = j - starts[:, None]  # (C, L)
    valid = k >= 0
    F = stats.pareto.cdf(x[None, :], (alpha - 1)[:, None], scale=x[starts][:, None])
    n = n_tail[:, None]
    gap = np.maximum((k + 1) / n - F, F - k / n)
    ks = np.where(valid, gap, -np.inf).max(axis=1)
    c = int(np.argmin(ks))
    return PowerLawFit(float(alpha[c]), float(x[starts[c]]), float(ks[c]), int(n_tail[c]))
