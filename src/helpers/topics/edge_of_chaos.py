"""Mean-field signal propagation in deep random networks: variance map, correlation map, EOC.

A fully connected network with weights W_ij ~ N(0, σ_w²/N) and biases b_i ~ N(0, σ_b²) maps
pre-activations z^l to z^{l+1} = W φ(z^l) + b. For infinite width the variance q of a
pre-activation and the correlation c between two inputs follow deterministic maps

    q' = σ_b² + σ_w² E[φ(√q Z)²],
    c' = (σ_b² + σ_w² E[φ(u₁)φ(u₂)]) / q',   (u₁, u₂) centred Gaussian, variance q, corr c,

and the slope of the correlation map at c = 1 is χ = σ_w² E[φ'(√q Z)²]. The edge of chaos (EOC)
is the curve of (σ_b, σ_w) with χ = 1 at the variance fixed point q* (Hayou, Doucet & Rousseau
2019, ICML, arXiv:1902.06853). Near c = 1 the map must be evaluated on δ = 1 − c, which this
module does stably:

    1 − c' = σ_w² E[(φ(u₁) − φ(u₂))²] / (2 q'),

with the closed-form arc-cosine kernel for ReLU and, for tanh, the exact identity
tanh a − tanh b = sinh(a − b) / (cosh a cosh b) inside a Gauss–Hermite rule.

Introduced in the chapter "Edge of chaos" (book/depth/edge_of_chaos.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from helpers.core.validation import check_choice, check_int, check_positive, check_shape

ACTIVATIONS = ("relu", "tanh")
_H, _Z_MAX = 0.3, 9.0  # trapezoid step scale and range in z: errors below 1e-14 (see _nodes)

# Series of sqrt(δ(2−δ)) − (1−δ)·arccos(1−δ) in x = sqrt(δ/2) (sympy, in the chapter).
GAP_SERIES = (8 / 3, 4 / 15, 3 / 35, 5 / 126, 35 / 1584, 63 / 4576, 77 / 8320)


def _check_activation(activation: str) -> str:
    return check_choice("activation", activation, ACTIVATIONS)


def _positive(name: str, value, allow_zero: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad) or np.any(~np.isfinite(arr)):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} "
                         f"and finite, got {value!r}")
    return arr


def _nodes(q_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with Σ w f(√q z) ≈ E[f(√q Z)], Z ~ N(0, 1), for all q ≤ ``q_max``.

    The trapezoid rule on a uniform grid converges geometrically for integrands analytic in a
    strip: tanh(√q z) has poles at Im z = ±π/(2√q), so a step h ≤ 0.3/√q keeps the error
    below exp(−π²/0.3) ≈ 1e-14. (Gauss–Hermite converges slowly here: 64 nodes are 2 % off
    for E[φ''²] at q = 3.)
    """
    h = _H / max(1.0, math.sqrt(q_max))
    z = np.arange(-_Z_MAX, _Z_MAX + h / 2, h)
    return z, h * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)


def _phi(activation: str, x: np.ndarray, order: int = 0) -> np.ndarray:
    """φ, φ' or φ'' (``order`` 0, 1, 2) of ReLU or tanh."""
    if activation == "relu":
        return (np.maximum(x, 0), (x > 0).astype(float), np.zeros_like(x))[order]
    t = np.tanh(x)
    return (t, 1 - t**2, -2 * t * (1 - t**2))[order]


def gaussian_moment(q, activation: str, order: int = 0) -> np.ndarray:
    """E[φ^{(order)}(√q Z)²] for Z ~ N(0, 1) (closed form for ReLU, Gauss–Hermite for tanh)."""
    q = _positive("q", q, allow_zero=True)
    if _check_activation(activation) == "relu":
        return (q / 2, np.full_like(q, 0.5), np.zeros_like(q))[order]
    z, w = _nodes(float(np.max(q, initial=0.0)))
    return (_phi(activation, np.sqrt(q)[..., None] * z, order) ** 2) @ w


def variance_map(q, sigma_w, sigma_b, activation: str = "tanh") -> np.ndarray:
    """q' = σ_b² + σ_w² E[φ(√q Z)²] (broadcasts over q, σ_w and σ_b)."""
    sigma_w, sigma_b = _positive("sigma_w", sigma_w), _positive("sigma_b", sigma_b, True)
    return sigma_b**2 + sigma_w**2 * gaussian_moment(q, activation)


def variance_fixed_point(sigma_w, sigma_b, activation: str = "tanh", *, q0: float = 1.0,
                         iters: int = 500) -> np.ndarray:
    """The fixed point q* of :func:`variance_map`, by iteration from ``q0`` (broadcasts).

    For ReLU it is the closed form σ_b² / (1 − σ_w²/2), which needs σ_w² < 2 unless σ_b = 0
    (then every q is fixed on the EOC σ_w = √2 and ``q0`` is returned).
    """
    sigma_w, sigma_b = _positive("sigma_w", sigma_w), _positive("sigma_b", sigma_b, True)
    if _check_activation(activation) == "relu":
        sw, sb = np.broadcast_arrays(sigma_w, sigma_b)
        if np.any((sw**2 >= 2) & ~((sw**2 == 2) & (sb == 0))):
            raise ValueError("sigma_w must satisfy sigma_w**2 < 2 for a ReLU variance fixed point")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sw**2 == 2, q0, sb**2 / (1 - sw**2 / 2))
    q = np.full(np.broadcast_shapes(sigma_w.shape, sigma_b.shape), float(q0))
    for _ in range(iters):
        q = variance_map(q, sigma_w, sigma_b, activation)
    return q


def chi(q, sigma_w, activation: str = "tanh") -> np.ndarray:
    """χ = σ_w² E[φ'(√q Z)²], the slope of the correlation map at c = 1."""
    return _positive("sigma_w", sigma_w) ** 2 * gaussian_moment(q, activation, order=1)


def edge_of_chaos(sigma_b, activation: str = "tanh") -> np.ndarray:
    """σ_w on the EOC for bias scale σ_b: the root of χ(q*(σ_w, σ_b), σ_w) = 1 (broadcasts).

    ReLU's EOC is the single point (σ_b, σ_w) = (0, √2). For tanh, q ↦ q* solves
    q = σ_b² + E[φ(√q Z)²] / E[φ'(√q Z)²] and then σ_w = E[φ'(√q* Z)²]^{-1/2}.
    """
    sigma_b = _positive("sigma_b", sigma_b, allow_zero=True)
    if _check_activation(activation) == "relu":
        if np.any(sigma_b != 0):
            raise ValueError("sigma_b must be 0: ReLU's edge of chaos is (0, sqrt(2))")
        return np.full_like(sigma_b, math.sqrt(2))
    lo, hi = np.zeros_like(sigma_b), np.full_like(sigma_b, 4.0 + 4 * sigma_b**2)
    for _ in range(60):  # bisection on g(q) = σ_b² + E φ²/E φ'² − q, decreasing in q
        mid = (lo + hi) / 2
        g = sigma_b**2 + gaussian_moment(mid, "tanh") / gaussian_moment(mid, "tanh", 1) - mid
        lo, hi = np.where(g > 0, mid, lo), np.where(g > 0, hi, mid)
    return 1 / np.sqrt(gaussian_moment((lo + hi) / 2, "tanh", 1))


def beta_q(q, activation: str = "tanh") -> np.ndarray:
    """β_q = 2 E[φ'(√q Z)²] / (q E[φ''(√q Z)²]): on the EOC, l (1 − c_l) → β_q (smooth φ)."""
    if _check_activation(activation) == "relu":
        raise ValueError("activation must be smooth (tanh): ReLU has φ'' = 0 and a 1/l² law")
    q = _positive("q", q)
    return 2 * gaussian_moment(q, activation, 1) / (q * gaussian_moment(q, activation, 2))


def relu_correlation_map(c) -> np.ndarray:
    """The normalised arc-cosine kernel f(c) = (√(1 − c²) + (π − arccos c) c) / π."""
    c = np.asarray(c, dtype=np.float64)
    if np.any(np.abs(c) > 1):
        raise ValueError("c must lie in [-1, 1]")
    return (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c) / np.pi


def _relu_gap(delta: np.ndarray) -> np.ndarray:
    """π (f(c) − c) = √(δ(2 − δ)) − (1 − δ) arccos(1 − δ), series below δ = 0.02."""
    x = np.sqrt(delta / 2)
    series = sum(a * x ** (2 * k + 3) for k, a in enumerate(GAP_SERIES))
    exact = np.sqrt(delta * (2 - delta)) - (1 - delta) * 2 * np.arcsin(np.minimum(x, 1))
    return np.where(delta < 0.02, series, exact)


def delta_map(delta, q, sigma_w, sigma_b, activation: str = "tanh") -> np.ndarray:
    """δ' = 1 − c' from δ = 1 − c for two inputs of equal variance q, without cancellation.

    Uses 1 − c' = σ_w² E[(φ(u₁) − φ(u₂))²] / (2q'), q' = :func:`variance_map` (q).
    """
    delta = np.asarray(delta, dtype=np.float64)
    if np.any((delta < 0) | (delta > 2)):
        raise ValueError("delta must lie in [0, 2] (delta = 1 - c)")
    q = _positive("q", q, allow_zero=True)
    q_next = variance_map(q, sigma_w, sigma_b, activation)
    if activation == "relu":  # E[(φ(u₁) − φ(u₂))²]/2 = q (πδ − gap(δ)) / (2π)
        half_sq = q * (np.pi * delta - _relu_gap(delta)) / (2 * np.pi)
    else:
        z, w = _nodes(float(np.max(q, initial=0.0)))
        z1, z2, ww = z[:, None], z[None, :], w[:, None] * w[None, :]
        d, s, rq = delta[..., None, None], np.sqrt(delta * (2 - delta))[..., None, None], \
            np.sqrt(q)[..., None, None]
        u1, diff = rq * z1, rq * (s * z2 - d * z1)  # u₂ − u₁, exact in δ
        gap = np.sinh(diff) / (np.cosh(u1) * np.cosh(u1 + diff))  # tanh u₂ − tanh u₁
        half_sq = (gap**2 * ww).sum((-1, -2)) / 2
    return np.asarray(sigma_w, dtype=np.float64) ** 2 * half_sq / q_next


def correlation_map(c, q, sigma_w, sigma_b, activation: str = "tanh") -> np.ndarray:
    """c' from c for two inputs of equal variance q (i.e. 1 − :func:`delta_map` (1 − c))."""
    return 1 - delta_map(1 - np.asarray(c, dtype=np.float64), q, sigma_w, sigma_b, activation)


def correlation_trajectory(c0: float, depth: int, sigma_w: float, sigma_b: float,
                           activation: str = "tanh", *, q0: float | None = None,
                           delta0: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Iterate both maps for ``depth`` layers from (q0, c0); q0 defaults to the fixed point.

    Returns ``(q, delta)``, arrays of length depth + 1 with q_l and δ_l = 1 − c_l. Give
    ``delta0`` instead of ``c0`` to start closer to c = 1 than float64 resolves.
    """
    depth = check_int("depth", depth, low=0)
    if q0 is None:
        q0 = float(variance_fixed_point(sigma_w, sigma_b, activation))
    q, delta = np.empty(depth + 1), np.empty(depth + 1)
    q[0], delta[0] = q0, (1 - c0) if delta0 is None else delta0
    for layer in range(depth):
        delta[layer + 1] = delta_map(delta[layer], q[layer], sigma_w, sigma_b, activation)
        q[layer + 1] = variance_map(q[layer], sigma_w, sigma_b, activation)
    return q, delta


def correlated_inputs(cs, q0: float, width: int, *, seed: int = 0,
                      dtype: torch.dtype = torch.float64,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """Pre-activations z^0 (1 + len(cs), width) of squared norm q0·width with exact correlations.

    Row 0 is a random direction u; row i is c_i u + √(1 − c_i²) v_i, with u, v_i orthonormal
    (QR of a Gaussian matrix), so the empirical q and c of the inputs are exactly q0 and c_i.
    The draw and the QR run on the CPU, so the inputs are the same on every device; the result
    is moved to ``device``.
    """
    cs = np.asarray(cs, dtype=np.float64).reshape(-1)
    if np.any(np.abs(cs) > 1):
        raise ValueError(f"cs must lie in [-1, 1], got {cs}")
    width = check_int("width", width, low=len(cs) + 1)
    q0 = check_positive("q0", q0)
    gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device
    gauss = torch.randn(width, len(cs) + 1, generator=gen, dtype=dtype)  # cpu: CPU generator
    basis, _ = torch.linalg.qr(gauss)
    basis = basis.T * math.sqrt(q0 * width)  # (k, N), orthogonal rows of squared norm q0·N
    rows = [basis[0]] + [c * basis[0] + math.sqrt(1 - c * c) * basis[i + 1]
                         for i, c in enumerate(cs.tolist())]
    return torch.stack(rows).to(device)


def random_network_gram(z0: torch.Tensor, depth: int, sigma_w: float, sigma_b: float,
                        activation: str = "tanh", *, n_nets: int = 1,
                        seed: int = 0) -> torch.Tensor:
    """Propagate pre-activations z0 (k, N) through ``n_nets`` random width-N networks.

    z^{l+1} = W^l φ(z^l) + b^l with W^l_ij ~ N(0, σ_w²/N), b^l_i ~ N(0, σ_b²), all networks in
    one batched matmul. Returns the empirical Gram matrices G_l = z^l z^lᵀ / N, shape
    (n_nets, depth + 1, k, k): q_l = diag G_l and c_l = G_l / √(q q) at finite width.
    """
    check_shape("z0", z0, (None, None))
    n_nets, depth = check_int("n_nets", n_nets, low=1), check_int("depth", depth, low=0)
    act = {"relu": torch.relu, "tanh": torch.tanh}[_check_activation(activation)]
    gen = torch.Generator(device=z0.device).manual_seed(seed)
    k, width = z0.shape
    z = z0.T.expand(n_nets, width, k)  # (B, N, k): columns are the inputs
    grams = [z.transpose(1, 2) @ z / width]
    for _ in range(depth):
        w = torch.randn(n_nets, width, width, generator=gen, dtype=z0.dtype, device=z0.device)
        b = torch.randn(n_nets, width, 1, generator=gen, dtype=z0.dtype, device=z0.device)
        z = torch.baddbmm(sigma_b * b, w, act(z), alpha=sigma_w / math.sqrt(width))
        grams.append(z.transpose(1, 2) @ z / width)
    return torch.stack(grams, dim=1)


def mean_field_init_(model, sigma_ws, sigma_b: float, *, seed: int = 0):
    """Re-initialise a :class:`helpers.engine.batched.BatchedMLP` in place: model k gets weight
    scale σ_w[k].

    Hidden layers get W ~ N(0, σ_w[k]²/fan-in) and b ~ N(0, σ_b²), the initialisation the
    mean-field maps describe; the read-out gets W ~ N(0, 1/fan-in) and b = 0. Returns the model.
    """
    sw = _positive("sigma_ws", sigma_ws).reshape(-1)
    _positive("sigma_b", sigma_b, allow_zero=True)
    if len(sw) != model.n_models:
        raise ValueError(f"sigma_ws must give one value per model ({model.n_models}), "
                         f"got {len(sw)}")
    gen = torch.Generator().manual_seed(seed)  # cpu: same draws on every device
    last = len(model.weights) - 1
    with torch.no_grad():
        for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
            scale = torch.as_tensor(sw if i < last else np.ones_like(sw), dtype=w.dtype,
                                    device=w.device)
            fresh = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
            w.copy_(scale[:, None, None] * fresh / math.sqrt(w.shape[-1]))
            bias = torch.randn(b.shape, generator=gen, dtype=b.dtype).to(b.device) * sigma_b
            b.copy_(bias if i < last else torch.zeros_like(b))
    return model
