"""Anisotropic gradient noise: the indicator Tr(HΣ) and escaping sharp minima.

For the chapter "Anisotropic SGD noise and escaping sharp minima", after Zhu, Wu, Yu, Wu & Ma
(2019), *The anisotropic noise in stochastic gradient descent: its behavior of escaping from
sharp minima and regularization effects*.

On a quadratic ``L(θ) = ½ θᵀHθ`` the noisy iteration ``θ_{t+1} = (I − ηH) θ_t + η ε_t`` with
``ε_t ~ N(0, Σ)``, started at the minimum, has covariance
``C_T = η² Σ_{s<T} A^s Σ A^s`` (``A = I − ηH``) and expected loss increase
``E L(θ_T) = ½ tr(H C_T)``, which to first order in ``ηTλ_max`` is ``½ η² T Tr(HΣ)``. For a
network, Σ is the covariance of the per-sample gradients (computed with ``torch.func.vmap``),
and the ratio ``r = Tr(HΣ) / (Tr H · Tr Σ / D)`` compares SGD's noise with isotropic noise of
the same trace (``r = 1``); noise exactly proportional to H would give
``r_H = D Tr(H²) / (Tr H)²``, the value the paper's claim (Σ ≈ H near a minimum) predicts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from helpers.core.seeding import make_generator
from helpers.core.validation import check_int, check_positive, check_real, check_shape

Tensor = torch.Tensor


def power_law_hessian(D: int, exponent: float = 1.0, *, seed: int = 0,
                      device: torch.device | str = "cpu") -> Tensor:
    """A random-basis ``H = U diag(i^(−exponent)) Uᵀ``, i = 1..D, float64 (D, D)."""
    D = check_int("D", D, low=2)
    check_real("exponent", exponent)
    gen = make_generator(seed, device)
    U, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64, device=device))
    lam = torch.arange(1, D + 1, dtype=torch.float64, device=device) ** -exponent
    return (U * lam) @ U.T


def equal_trace_noises(H: Tensor, trace: float = 1.0) -> dict[str, Tensor]:
    """Four noise covariances with ``Tr Σ = trace``: isotropic ``I/D``, aligned with H
    (``H / Tr H``), along the top eigenvector (``v₁v₁ᵀ``) and aligned with ``H⁻¹``."""
    check_shape("H", H, (None, None))
    check_shape("H", H, (H.shape[0], H.shape[0]))
    lam, V = torch.linalg.eigh(H)
    if lam.min() <= 0:
        raise ValueError("H must be positive definite")
    D = H.shape[0]
    H_inv = (V / lam) @ V.T
    noises = {"isotropic": torch.eye(D, dtype=H.dtype, device=H.device) / D,
              "aligned with H": H / H.trace(),
              "top eigenvector": torch.outer(V[:, -1], V[:, -1]),
              "aligned with H⁻¹": H_inv / H_inv.trace()}
    return {k: trace * v for k, v in noises.items()}


def expected_loss_increase(H: Tensor, Sigma: Tensor, *, eta: float, T: int) -> float:
    """Exact ``E L(θ_T) − L(θ_0) = ½ tr(H C_T)``, ``C_{t+1} = A C_t A + η² Σ``, ``C_0 = 0``.

    H must be symmetric (then so is ``A = I − ηH``)."""
    check_positive("eta", eta)
    T = check_int("T", T, low=1)
    # Doubling: C_{k+m} = C_k + A^k C_m A^k (A is symmetric), so O(log T) products.
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    A = eye - eta * H
    C, P = torch.zeros_like(H), eye  # C_k and A^k so far
    C_b, P_b = eta ** 2 * Sigma, A  # C_m and A^m for m = 2^j
    while T:
        if T & 1:
            C, P = C + P @ C_b @ P, P @ P_b
        C_b, P_b = C_b + P_b @ C_b @ P_b, P_b @ P_b
        T >>= 1
    return float(0.5 * torch.trace(H @ C))


def first_order_increase(H: Tensor, Sigma: Tensor, *, eta: float, T: int) -> float:
    """The first-order indicator ``½ η² T Tr(HΣ)`` (Zhu et al. 2019)."""
    return float(0.5 * eta ** 2 * T * torch.trace(H @ Sigma))


def simulate_quadratic(H: Tensor, Sigma: Tensor, *, eta: float, T: int, n_chains: int,
                       seed: int = 0) -> Tensor:
    """Loss ``½ θ_Tᵀ H θ_T`` of ``n_chains`` independent noisy chains from θ = 0, (n_chains,)."""
    n_chains = check_int("n_chains", n_chains, low=1)
    gen = make_generator(seed, H.device)
    L = torch.linalg.cholesky(Sigma + 1e-12 * torch.eye(H.shape[0], dtype=H.dtype, device=H.device))
    theta = torch.zeros(n_chains, H.shape[0], dtype=H.dtype, device=H.device)
    for _ in range(T):
        eps = torch.randn(n_chains, H.shape[0], generator=gen, dtype=H.dtype, device=H.device) @ L.T
        theta = theta - eta * theta @ H + eta * eps
    return 0.5 * ((theta @ H) * theta).sum(1)


def descend_to_loss(model: nn.Module, loss_fn: Callable[[], Tensor], *, eta: float,
                    target: float, max_steps: int) -> tuple[float, int]:
    """Full-batch gradient descent θ ← θ − η∇L until the loss first falls to ``target``.

    Fixes a minimum of the cross-entropy by its loss level rather than by a number of steps:
    on separable data the loss has no finite minimiser, and the Hessian and the gradient
    covariance both shrink with the loss as descent goes on. Raises ``RuntimeError`` when
    ``max_steps`` steps do not reach ``target``. Returns ``(loss, steps taken)``.
    """
    check_positive("eta", eta)
    check_positive("target", target)
    max_steps = check_int("max_steps", max_steps, low=1)
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(max_steps + 1):
        loss = loss_fn()
        if loss.item() <= target:
            return loss.item(), step
        if step < max_steps:
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p -= eta * g
    raise RuntimeError(f"loss {loss.item():.3g} after {max_steps} steps, above target {target:g}")


def flat_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor]
              ) -> tuple[Callable[[Tensor, Tensor, Tensor], Tensor], Tensor]:
    """``(f, θ₀)`` with ``f(θ, x, y) = loss_fn(model_θ(x), y)`` for a flat parameter vector θ."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        parts = torch.split(theta, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return f, theta0


def per_sample_grads(f: Callable[[Tensor, Tensor, Tensor], Tensor], theta: Tensor, x: Tensor,
                     y: Tensor) -> Tensor:
    """Per-sample gradients ``∇_θ f(θ, x_i, y_i)``, (n, D), with ``torch.func.vmap``."""
    one = lambda th, xi, yi: f(th, xi[None], yi[None])  # noqa: E731
    return vmap(grad(one), in_dims=(None, 0, 0))(theta, x, y)


def noise_alignment(G: Tensor, H: Tensor) -> dict[str, float]:
    """For per-sample gradients G (n, D) and Hessian H (D, D), with
    ``Σ = (1/n) Σ_i (g_i − ḡ)(g_i − ḡ)ᵀ``: ``Tr(HΣ)``, ``Tr H``, ``Tr Σ``,
    ``r = Tr(HΣ) / (Tr H · Tr Σ / D)`` (1 for isotropic noise), ``r_H = D Tr(H²) / (Tr H)²``
    (the value of r for Σ ∝ H) and ``cos``, the cosine ``Tr(HΣ) / (‖H‖_F ‖Σ‖_F)``."""
    check_shape("G", G, (None, None))
    check_shape("H", H, (G.shape[1], G.shape[1]))
    n, D = G.shape
    Z = G - G.mean(0)
    tr_h_sigma = float(((Z @ H) * Z).sum() / n)
    tr_sigma = float((Z ** 2).sum() / n)
    tr_h = float(H.trace())
    sigma_norm = float((Z @ Z.T).norm() / n)  # ‖ZᵀZ‖_F = ‖ZZᵀ‖_F, an (n, n) product
    return {"tr_h_sigma": tr_h_sigma, "tr_h": tr_h, "tr_sigma": tr_sigma,
            "r": tr_h_sigma / (tr_h * tr_sigma / D),
            "r_H": D * float((H * H).sum()) / tr_h ** 2,
            "cos": tr_h_sigma / (float(H.norm()) * sigma_norm)}


def classify_chains(losses: Tensor, loss_star: float, *, factor: float = 10.0,
                    diverged_above: float = 1e3) -> dict[str, float]:
    """Shares of chains that diverged, escaped or stayed, from their final losses (n_chains,).

    A chain *diverged* when its loss is not finite or exceeds ``diverged_above`` (far beyond the
    loss of a constant predictor, ``log C``): that is a failure of the run, not an escape. It
    *escaped* when its finite loss exceeds ``factor · loss_star``, and *stayed* otherwise.
    """
    check_shape("losses", losses, (None,))
    check_positive("loss_star", loss_star)
    check_positive("factor", factor)
    diverged = ~torch.isfinite(losses) | (losses.nan_to_num(float("inf")) > diverged_above)
    escaped = ~diverged & (losses > factor * loss_star)
    n = len(losses)
    return {"diverged": float(diverged.sum()) / n, "escaped": float(escaped.sum()) / n,
            "stayed": float((~diverged & ~escaped).sum()) / n}


def noisy_chains(f: Callable[[Tensor, Tensor, Tensor], Tensor], theta0: Tensor, x: Tensor,
                 y: Tensor, *, eta: float, steps: int, n_chains: int, batch_size: int | None,
                 noise_std: float = 0.0, seed: int = 0) -> Tensor:
    """Run ``n_chains`` chains from ``theta0`` at once and return their final θ, (n_chains, D).

    ``batch_size`` set: SGD on mini-batches drawn with replacement (a different batch per
    chain). ``batch_size=None``: full-batch gradient descent plus isotropic Gaussian noise,
    ``θ ← θ − η ∇L(θ) + η · noise_std · ξ``, ``ξ ~ N(0, I)`` (Langevin dynamics).
    """
    check_int("steps", steps, low=1)
    check_int("n_chains", n_chains, low=1)
    check_positive("eta", eta)
    gen = make_generator(seed, theta0.device)
    theta = theta0.expand(n_chains, -1).clone()
    n = x.shape[0]
    batched_grad = vmap(grad(f), in_dims=(0, 0, 0))
    full_grad = vmap(grad(f), in_dims=(0, None, None))
    for _ in range(steps):
        if batch_size is not None:
            idx = torch.randint(n, (n_chains, batch_size), generator=gen, device=theta0.device)
            g = batched_grad(theta, x[idx], y[idx])
        else:
            g = full_grad(theta, x, y)
            g = g - noise_std * torch.randn(theta.shape, generator=gen, dtype=theta.dtype,
                                            device=theta.device)
        theta = theta - eta * g
    return theta
