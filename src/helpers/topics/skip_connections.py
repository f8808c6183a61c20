"""Local linear maps of plain and residual leaky-ReLU networks, and the loss they shape.

A network built from (leaky) ReLUs is piecewise affine: on the region of input and parameter
space where the activation pattern is fixed, layer ``l`` acts as the matrix ``D_l W_l`` with
``D_l`` diagonal (entries 1 or the leaky slope ``a``). The plain network
``z_{l+1} = sigma(W_l z_l)`` has the local linear map

    J_plain = D_L W_L ... D_1 W_1,

and the residual network ``z_{l+1} = z_l + alpha sigma(W_l z_l)`` has

    J_res = (I + alpha D_L W_L) ... (I + alpha D_1 W_1).

With the squared loss the loss is quadratic in any one layer's weights inside a region (the
output is affine in them there), with Hessian ``(B^T B) kron (X X^T)`` for the downstream map
``B`` and the layer input ``X``; its condition number is ``cond(B)^2 cond(X)^2``, so the
singular values of the local linear maps set the conditioning of the loss. Weyl's inequality
puts the singular values of ``I + alpha E`` in ``[1 - alpha ||E||, 1 + alpha ||E||]``, which is
why the identity branch keeps the residual map well conditioned (Riedi, Balestriero &
Baraniuk, "Singular value perturbation and deep network optimization", 2023).

Introduced in the chapter "Skip connections and the conditioning of the loss".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from helpers.core.validation import check_int, check_positive, check_real


def _check_slope(slope: float) -> None:
    check_real("slope", slope, low=0.0, high=1.0)


def random_weights(n_models: int, depth: int, width: int, *, gain: float = 2.0,
                   seed: int = 0, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> Tensor:
    """Gaussian weights ``W[k, l] ~ N(0, gain / width)``, shape (n_models, depth, width, width).

    ``gain = 2`` is He initialisation. Used for both the plain and the residual network.
    """
    for name, value in (("n_models", n_models), ("depth", depth), ("width", width)):
        check_int(name, value, low=1)
    gain = check_positive("gain", gain)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same weights on every device
    return torch.randn(n_models, depth, width, width, generator=gen,  # cpu: moved to device
                       dtype=dtype).to(device) * (gain / width) ** 0.5


def forward(weights: Tensor, x: Tensor, *, residual: bool, alpha: float = 1.0,
            slope: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """Run K networks on inputs and return output, local linear map and activation pattern.

    Args:
        weights: (K, L, n, n) layer matrices (see :func:`random_weights`).
        x: (K, n) one input per network, or (K, m, n) a batch of ``m`` inputs per network.
        residual: ``z <- z + alpha sigma(W z)`` if True, else ``z <- sigma(W z)``.
        alpha: the residual branch's scale (ignored for the plain network).
        slope: leaky-ReLU slope ``a`` in ``sigma(u) = max(u, a u)``; 0 is the ReLU.

    Returns:
        ``(z, J, pattern)``: outputs shaped like ``x``; the input-output Jacobian (the local
        linear map) of shape (K, n, n) for 2-D ``x`` and (K, m, n, n) for 3-D ``x``; and the
        boolean pattern ``W z > 0`` of shape (K, L, n) or (K, L, m, n).
    """
    if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must have shape (K, L, n, n), got {tuple(weights.shape)}")
    if x.ndim not in (2, 3) or x.shape[0] != weights.shape[0] or x.shape[-1] != weights.shape[-1]:
        raise ValueError(f"x must have shape (K, n) or (K, m, n) matching weights "
                         f"{tuple(weights.shape)}, got {tuple(x.shape)}")
    _check_slope(slope)
    z = x if x.ndim == 3 else x[:, None]  # (K, m, n)
    K, m, n = z.shape
    eye = torch.eye(n, dtype=weights.dtype, device=weights.device)
    J = eye.expand(K, m, n, n)
    patterns = []
    for layer in range(weights.shape[1]):
        W = weights[:, layer]  # (K, n, n)
        pre = z @ W.transpose(-1, -2)  # (K, m, n)
        on = pre > 0
        d = torch.where(on, 1.0, slope).to(pre.dtype)
        step = d[..., None] * W[:, None]  # (K, m, n, n): D W
        if residual:
            z, J = z + alpha * d * pre, (eye + alpha * step) @ J
        else:
            z, J = d * pre, step @ J
        patterns.append(on)
    pattern = torch.stack(patterns, dim=1)  # (K, L, m, n)
    if x.ndim == 2:
        return z[:, 0], J[:, 0], pattern[:, :, 0]
    return z, J, pattern


def log10_condition(J: Tensor) -> Tensor:
    """``log10(sigma_max / sigma_min)`` of each square matrix in the batch ``J`` (..., n, n)."""
    if J.ndim < 2 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"J must be a batch of square matrices, got shape {tuple(J.shape)}")
    s = torch.linalg.svdvals(J)
    return torch.log10(s[..., 0] / s[..., -1])


def layer_line_losses(weights: Tensor, layer: int, direction: Tensor, x: Tensor, y: Tensor,
                      ts: Tensor, *, residual: bool, alpha: float = 1.0,
                      slope: float = 0.1) -> tuple[Tensor, Tensor]:
    """``L(t) = 1/2 sum_i ||f(x_i; W_layer + t V) - y_i||^2`` for one network, at each ``t``.

    Args:
        weights: (L, n, n) one network's layers; ``direction`` is ``V``, shape (n, n).
        x, y: (m, n) inputs and targets; ``ts``: (T,) positions along the line.

    Returns:
        ``(losses, same_region)``: the (T,) losses and whether every point of the line has the
        activation pattern of ``t = ts[0]`` on every sample (then ``L`` is exactly quadratic).
    """
    if weights.ndim != 3:
        raise ValueError(f"weights must have shape (L, n, n), got {tuple(weights.shape)}")
    if not 0 <= layer < weights.shape[0]:
        raise ValueError(f"layer must lie in [0, {weights.shape[0]}), got {layer}")
    if direction.shape != weights.shape[1:]:
        raise ValueError(f"direction must have shape {tuple(weights.shape[1:])}, "
                         f"got {tuple(direction.shape)}")
    T = ts.numel()
    W = weights.expand(T, *weights.shape).clone()  # (T, L, n, n)
    W[:, layer] += ts.to(W.dtype)[:, None, None] * direction
    out, _, pattern = forward(W, x.expand(T, *x.shape), residual=residual, alpha=alpha,
                              slope=slope)
    losses = 0.5 * ((out - y) ** 2).sum(dim=(-1, -2))
    return losses, bool((pattern == pattern[:1]).all())


def third_difference(values: Tensor) -> Tensor:
    """Relative third finite difference ``|L0 - 3 L1 + 3 L2 - L3| / max |L_i|`` of 4 samples.

    Zero (up to rounding) exactly when the four equally spaced samples lie on a quadratic.
    """
    if values.shape[-1] != 4:
        raise ValueError(f"values must end in a dimension of size 4, got {tuple(values.shape)}")
    d3 = values[..., 0] - 3 * values[..., 1] + 3 * values[..., 2] - values[..., 3]
    return d3.abs() / values.abs().amax(dim=-1)


def kronecker_hessian(B: Tensor, X: Tensor) -> Tensor:
    """Hessian of ``1/2 ||B W X - Y||_F^2`` in the row-major ``vec(W)``: ``(B^T B) kron (X X^T)``.

    Args:
        B: (p, q) the downstream linear map; X: (r, m) the layer's inputs as columns.

    Returns:
        The (q r, q r) Hessian, independent of ``W`` and ``Y``: the loss is exactly quadratic.
    """
    if B.ndim != 2 or X.ndim != 2:
        raise ValueError(f"B and X must be matrices, got shapes {tuple(B.shape)}, "
                         f"{tuple(X.shape)}")
    return torch.kron(B.T @ B, X @ X.T)


def gauss_newton_log10_condition(weights: Tensor, x: Tensor, *, residual: bool,
                                 alpha: float = 1.0, slope: float = 0.1,
                                 chunk: int = 25) -> Tensor:
    """log10 κ of the Gauss–Newton matrix JᵀJ on its range, for each of K networks.

    ``J = ∂ vec(f(x_1..x_m; W)) / ∂ vec(W_1..W_L)`` is the (m n, L n²) Jacobian of all outputs
    with respect to all weights; JᵀJ is the Hessian of the squared loss at any point of zero
    residual and the matrix that sets the speed of gradient descent near one. Its non-zero
    eigenvalues are those of J Jᵀ (m n × m n), computed in chunks of ``chunk`` networks.

    Args:
        weights: (K, L, n, n); x: (K, m, n) inputs per network, with m n ≤ L n².

    Returns:
        (K,) values of log10(λ_max / λ_min) of J Jᵀ.
    """
    return gauss_newton_top(weights, x, residual=residual, alpha=alpha, slope=slope,
                            chunk=chunk)[1]


def _outputs(weights: Tensor, x: Tensor, *, residual: bool, alpha: float,
             slope: float) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Outputs (K, m, n) of K networks on (K, m, n) inputs; per layer (input z_l, slopes d_l)."""
    z, cache = x, []
    for layer in range(weights.shape[1]):
        pre = z @ weights[:, layer].transpose(-1, -2)  # (K, m, n)
        d = torch.where(pre > 0, 1.0, slope).to(pre.dtype)
        cache.append((z, d))
        z = z + alpha * d * pre if residual else d * pre
    return z, cache


def loss_and_grad(weights: Tensor, x: Tensor, y: Tensor, *, residual: bool, alpha: float = 1.0,
                  slope: float = 0.1) -> tuple[Tensor, Tensor]:
    """Per-network loss ``L_k = 1/2 Σ_i ||f(x_ki; W_k) − y_ki||²`` and its gradient in ``W_k``.

    Back-propagation written out for the leaky-ReLU layers: with ``g_{l+1} = ∂L/∂z_{l+1}`` and
    ``u_l = c d_l ⊙ g_{l+1}`` (``c = alpha`` for the residual network, 1 for the plain one),
    ``∂L/∂W_l = Σ_i u_l z_lᵀ`` and ``g_l = [g_{l+1}] + W_lᵀ u_l`` (the bracket only with the
    identity branch). Tested against autograd.

    Args:
        weights: (K, L, n, n); x, y: (K, m, n).

    Returns:
        ``(loss, grad)``: shapes (K,) and (K, L, n, n).
    """
    if weights.ndim != 4 or x.ndim != 3 or y.shape != x.shape or x.shape[0] != weights.shape[0]:
        raise ValueError(f"weights must be (K, L, n, n) and x, y (K, m, n), got "
                         f"{tuple(weights.shape)}, {tuple(x.shape)}, {tuple(y.shape)}")
    out, cache = _outputs(weights, x, residual=residual, alpha=alpha, slope=slope)
    g = out - y  # (K, m, n)
    grads = [None] * weights.shape[1]
    for layer in reversed(range(weights.shape[1])):
        z, d = cache[layer]
        u = (alpha if residual else 1.0) * d * g  # (K, m, n)
        grads[layer] = u.transpose(-1, -2) @ z  # (K, n, n)
        g = (g if residual else 0.0) + u @ weights[:, layer]
    return 0.5 * (out - y).pow(2).sum(dim=(-1, -2)), torch.stack(grads, dim=1)


def gauss_newton_top(weights: Tensor, x: Tensor, *, residual: bool, alpha: float = 1.0,
                     slope: float = 0.1, chunk: int = 25) -> tuple[Tensor, Tensor]:
    """``(λ_max, log10 κ)`` of the Gauss–Newton matrix JᵀJ on its range, for each of K networks.

    As :func:`gauss_newton_log10_condition`, also returning the top eigenvalue λ_max (K,), which
    is the loss Hessian's at a minimum of zero residual and sets gradient descent's step size.
    """
    if weights.ndim != 4 or x.ndim != 3 or x.shape[0] != weights.shape[0]:
        raise ValueError(f"weights must be (K, L, n, n) and x (K, m, n), got "
                         f"{tuple(weights.shape)} and {tuple(x.shape)}")
    _check_slope(slope)
    check_int("chunk", chunk, low=1)

    def outputs(w: Tensor, xk: Tensor) -> Tensor:  # one network: (L, n, n), (m, n) -> (m n,)
        return _outputs(w[None], xk[None], residual=residual, alpha=alpha,
                        slope=slope)[0][0].reshape(-1)

    jac = torch.func.vmap(torch.func.jacrev(outputs))
    top, cond = [], []
    for start in range(0, weights.shape[0], chunk):
        J = jac(weights[start:start + chunk], x[start:start + chunk]).flatten(2)  # (c, mn, P)
        eig = torch.linalg.eigvalsh(J @ J.transpose(-1, -2))  # ascending, (c, mn)
        top.append(eig[:, -1])
        cond.append(torch.log10(eig[:, -1] / eig[:, 0]))
    return torch.cat(top), torch.cat(cond)


def steps_to_loss(w_star: Tensor, x: Tensor, lam_max: Tensor, *, residual: bool,
                  alpha: float = 1.0, slope: float = 0.1, eps: float = 0.05,
                  reduction: float = 1e-2, max_steps: int = 5000, seed: int = 0) -> Tensor:
    """Gradient-descent steps to reduce the loss by ``reduction``, near a global minimum.

    Each network k is its own teacher: targets ``y_k = f(x_k; W*_k)`` make ``W*_k`` a minimum
    of zero loss, with Hessian ``J_kᵀJ_k`` there. Gradient descent
    ``W ← W − η_k ∇L_k(W)`` with ``η_k = 1/λ_max(J_kᵀJ_k)`` (half the stability limit) starts
    at ``W*_k + δ_k``, ``‖δ_k‖ = eps ‖W*_k‖`` in a uniformly random direction. Near the minimum
    the residual along the eigenvector of ``J Jᵀ`` with eigenvalue λ shrinks by
    ``1 − λ/λ_max`` per step, so a badly conditioned Hessian makes descent slow.

    Args:
        w_star: (K, L, n, n) the minima; x: (K, m, n) inputs; lam_max: (K,) top eigenvalues
            of J_kᵀJ_k at ``w_star``.
        eps: relative size of the starting perturbation; reduction: target ``L_t ≤ reduction L_0``.
        max_steps: step budget; seed: seed of the perturbation's directions.

    Returns:
        (K,) the first step t with ``L_t ≤ reduction · L_0``, ``inf`` where the budget ran out.
    """
    check_real("eps", eps, low=0.0)
    check_real("reduction", reduction, low=0.0, high=1.0)
    check_int("max_steps", max_steps, low=1)
    if lam_max.shape != w_star.shape[:1] or not bool((lam_max > 0).all()):
        raise ValueError(f"lam_max must hold {w_star.shape[0]} positive eigenvalues, got shape "
                         f"{tuple(lam_max.shape)}")
    kw = dict(residual=residual, alpha=alpha, slope=slope)
    eta = (1.0 / lam_max)[:, None, None, None]
    y = _outputs(w_star, x, **kw)[0]
    gen = torch.Generator(device=w_star.device).manual_seed(seed)
    delta = torch.randn(w_star.shape, generator=gen, dtype=w_star.dtype, device=w_star.device)
    scale = eps * w_star.flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1)
    w = w_star + scale[:, None, None, None] * delta
    steps = torch.full((w.shape[0],), math.inf, dtype=w.dtype, device=w.device)
    loss0 = None
    for t in range(max_steps + 1):
        loss, grad = loss_and_grad(w, x, y, **kw)
        loss0 = loss if loss0 is None else loss0
        steps = torch.where(torch.isinf(steps) & (loss <= reduction * loss0), float(t), steps)
        if not torch.isinf(steps).any():
            break
        w = w - eta * grad
    return steps


def median_and_iqr_se(values: Tensor) -> tuple[float, float]:
    """Sample median and its standard error √(π/2)·σ̂/√K with σ̂ = IQR/1.349.

    The robust form of :func:`median_and_se`: the interquartile range estimates the spread of a
    normal sample and stays finite when fewer than a quarter of the values are ``inf``
    (censored), so it serves step counts with a budget.
    """
    if values.ndim != 1 or values.numel() < 4:
        raise ValueError(f"values must be a 1-D tensor of at least 4 numbers, got shape "
                         f"{tuple(values.shape)}")
    q1, med, q3 = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=values.dtype,
                                                      device=values.device)).tolist()
    se = math.sqrt(math.pi / 2) * (q3 - q1) / 1.349 / math.sqrt(values.numel())
    return med, se


def median_and_se(values: Tensor) -> tuple[float, float]:
    """Sample median and its large-sample standard error √(π/2)·sd/√K (normal approximation)."""
    if values.ndim != 1 or values.numel() < 2:
        raise ValueError(f"values must be a 1-D tensor of at least 2 numbers, got shape "
                         f"{tuple(values.shape)}")
    se = math.sqrt(math.pi / 2) * values.std().item() / math.sqrt(values.numel())
    return values.median().item(), se
