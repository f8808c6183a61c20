"""Gradient descent started near a degenerate minimum of a one-hidden-layer tanh network.

Near a zero-loss minimum θ* of L(θ) = ½ Σ_i (f(x_i; θ) − y_i)², the Hessian is JᵀJ (J the
n × P Jacobian of the outputs) and its null space is the tangent space of the set of minima.
Gradient descent started at θ* + δ moves, to first order, only along the range of Jᵀ, so it
ends at θ* + (I − J⁺J)δ + O(‖δ‖²): the null-space part of the perturbation survives, the rest
is removed (Poggio et al., Theory III, arXiv:1801.00173, the nonlinear case). The limit map of
gradient descent is smooth near θ* with derivative I − J⁺J there, so the remainder is of
second order in ‖δ‖.

The network is f(x) = aᵀ tanh(Wx + b) + c with parameters flattened as [W (h, d), b (h),
a (h), c (1)], the order of ``helpers.MLP([d, h, 1], activation=nn.Tanh).parameters()``.
Gradients are written out by hand so that many starting points run as one batch.

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

import torch

from helpers.core.validation import check_int, check_positive, check_shape

Tensor = torch.Tensor


def _split(theta: Tensor, d: int, h: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    W = theta[..., :h * d].reshape(*theta.shape[:-1], h, d)  # (B, h, d)
    b = theta[..., h * d:h * d + h]  # (B, h)
    a = theta[..., h * d + h:h * d + 2 * h]  # (B, h)
    c = theta[..., -1:]  # (B, 1)
    return W, b, a, c


def _hidden_size(theta: Tensor, x: Tensor) -> int:
    d = x.shape[1]
    h, rest = divmod(theta.shape[-1] - 1, d + 2)
    if rest or h < 1:
        raise ValueError(f"theta must have h(d + 2) + 1 entries for d = {d}, got "
                         f"{theta.shape[-1]}")
    return h


def tanh_net(theta: Tensor, x: Tensor) -> Tensor:
    """Outputs f(x_i; θ_k) = a_kᵀ tanh(W_k x_i + b_k) + c_k; θ (B, P), x (n, d) → (B, n)."""
    check_shape("theta", theta, (None, None))
    check_shape("x", x, (None, None))
    W, b, a, c = _split(theta, x.shape[1], _hidden_size(theta, x))
    z = torch.tanh(x @ W.transpose(-1, -2) + b[:, None, :])  # (B, n, h)
    return (z @ a[..., None])[..., 0] + c  # (B, n)


def loss_and_grad(theta: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """L(θ_k) = ½ Σ_i (f(x_i; θ_k) − y_i)² and ∇L(θ_k) for each row of θ (B, P); y (n,)."""
    d, h = x.shape[1], _hidden_size(theta, x)
    W, b, a, c = _split(theta, d, h)
    z = torch.tanh(x @ W.transpose(-1, -2) + b[:, None, :])  # (B, n, h)
    r = (z @ a[..., None])[..., 0] + c - y  # (B, n) residuals
    dz = r[..., None] * a[:, None, :] * (1 - z**2)  # (B, n, h): ∂L/∂(pre-activation)
    grad = torch.cat([(dz.transpose(-1, -2) @ x).reshape(len(theta), -1),  # ∂L/∂W
                      dz.sum(1), (r[..., None] * z).sum(1), r.sum(1, keepdim=True)], dim=-1)
    return 0.5 * (r**2).sum(-1), grad


def gd_to_minimum(theta0: Tensor, x: Tensor, y: Tensor, *, eta: float, max_steps: int,
                  tol: float = 1e-22, check_every: int = 200) -> tuple[Tensor, Tensor, int]:
    """Run θ ← θ − η∇L(θ) from every row of ``theta0`` (B, P) until every loss is below ``tol``.

    Returns ``(theta, losses, steps)``: the final points (B, P), their losses (B,) and the
    number of steps taken (at most ``max_steps``; the caller checks the losses).
    """
    check_shape("theta0", theta0, (None, None))
    check_shape("y", y, (x.shape[0],))
    eta = check_positive("eta", eta)
    max_steps = check_int("max_steps", max_steps, low=1)
    check_every = check_int("check_every", check_every, low=1)
    theta, steps = theta0.clone(), 0
    while steps < max_steps:
        for _ in range(min(check_every, max_steps - steps)):
            losses, grad = loss_and_grad(theta, x, y)
            theta -= eta * grad
        steps += min(check_every, max_steps - steps)
        losses = loss_and_grad(theta, x, y)[0]
        if bool((losses < tol).all()):
            break
    return theta, losses, steps


def tanh_jacobian(theta: Tensor, x: Tensor) -> Tensor:
    """∂f(x_i; θ)/∂θ at one point θ (P,), shape (n, P), in the flattening of this module."""
    check_shape("theta", theta, (None,))
    return torch.func.jacrev(lambda t: tanh_net(t[None], x)[0])(theta)


def order_of_deviation(eps: Tensor, deviation: Tensor) -> tuple[float, float]:
    """Least-squares slope of log(deviation) against log(eps), and its standard error.

    The slope estimates p in deviation ≈ C eps^p; a first-order error gives p = 1, a
    second-order one p = 2.
    """
    check_shape("eps", eps, (None,))
    check_shape("deviation", deviation, (eps.shape[0],))
    if eps.shape[0] < 3:
        raise ValueError(f"eps needs at least 3 values for a slope and its error, got "
                         f"{eps.shape[0]}")
    u, v = torch.log(eps.double()), torch.log(deviation.double())
    A = torch.stack([u, torch.ones_like(u)], 1)
    coef = torch.linalg.lstsq(A, v[:, None]).solution[:, 0]
    res = v - A @ coef
    sigma2 = (res**2).sum() / (len(u) - 2)
    se = (sigma2 / ((u - u.mean()) ** 2).sum()).sqrt()
    return coef[0].item(), se.item()
