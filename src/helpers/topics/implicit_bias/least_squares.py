"""Least squares: the minimum-norm solution, gradient descent, its closed form, and ridge.

For the loss L(w) = ½‖Xw − y‖², gradient descent w_{t+1} = w_t − η Xᵀ(Xw_t − y) is stable iff
0 < η < 2/σ_max², and from w_0 it converges to X⁺y + (I − X⁺X)w_0 (Poggio et al., Theory III,
arXiv:1801.00173). In the SVD basis X = U S Vᵀ the coordinate along v_i is

    c_i(t) = (1 − (1 − ησ_i²)^t) · u_iᵀy/σ_i + (1 − ησ_i²)^t · v_iᵀw_0,

so stopping at step t acts like ridge regression with λ ≈ 1/(ηt). A deep linear network
computing x ↦ βᵀx has its own stability limit, set by its end-to-end vector
(:func:`balanced_sharpness`) and, away from a minimum, by its Hessian (:func:`hessian_sharpness`).

Introduced in the chapter "Implicit bias of gradient descent". All functions take and return
float64 tensors on the inputs' device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from helpers.core.validation import check_int, check_positive

Tensor = torch.Tensor


def _check_xy(X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise TypeError("X and y must be torch tensors")
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D (n, d) matrix, got shape {tuple(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {tuple(y.shape)}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("X and y must be finite")
    return X.to(torch.float64), y.to(device=X.device, dtype=torch.float64)


def _check_w0(w0: Tensor | None, X: Tensor) -> Tensor:
    d = X.shape[1]
    if w0 is None:
        return torch.zeros(d, dtype=torch.float64, device=X.device)
    if not isinstance(w0, Tensor) or w0.shape != (d,):
        raise ValueError(f"w0 must be a tensor of shape ({d},)")
    return w0.to(device=X.device, dtype=torch.float64)


def min_norm_solution(X: Tensor, y: Tensor) -> Tensor:
    """X⁺y: the least-squares solution of smallest Euclidean norm. Shapes (n, d), (n,) → (d,)."""
    X, y = _check_xy(X, y)
    return torch.linalg.pinv(X) @ y


def null_space_projector(X: Tensor) -> Tensor:
    """I − X⁺X, the orthogonal projector onto the null space of X. Shape (d, d)."""
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError("X must be a 2-D tensor")
    X = X.to(torch.float64)
    return torch.eye(X.shape[1], dtype=X.dtype, device=X.device) - torch.linalg.pinv(X) @ X


def stability_limit(X: Tensor) -> float:
    """2/σ_max²: gradient descent on ½‖Xw − y‖² converges iff 0 < η < this value."""
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError("X must be a 2-D tensor")
    sigma_max = torch.linalg.matrix_norm(X.to(torch.float64), ord=2).item()
    if sigma_max == 0:
        return math.inf
    return 2.0 / sigma_max**2


def balanced_sharpness(X: Tensor, beta: Tensor, depth: int) -> float:
    """λ_max(X P Xᵀ), P = ‖β‖^{2−2/N} (I + (N − 1) β̂β̂ᵀ), for N = ``depth``. Shapes (n, d), (d,).

    Under gradient flow the end-to-end vector of a *balanced* depth-N linear network
    (W_{j+1}ᵀW_{j+1} = W_j W_jᵀ, which a small initialisation keeps approximately) moves as
    β̇ = −P ∇_β L (Arora, Cohen & Hazan, ICML 2018, arXiv:1802.06509, one output), so the
    network's neural tangent kernel on X is X P Xᵀ. At a zero-loss point the Hessian of
    ½‖f − y‖² has the same non-zero spectrum, so gradient descent can settle at β only if
    η < 2/λ_max(X P Xᵀ). Depth 1 gives σ_max(X)², the limit of :func:`stability_limit`.
    """
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError("X must be a 2-D tensor")
    if not isinstance(beta, Tensor) or beta.shape != (X.shape[1],):
        raise ValueError(f"beta must be a tensor of shape ({X.shape[1]},)")
    depth = check_int("depth", depth, low=1)
    X, beta = X.to(torch.float64), beta.to(device=X.device, dtype=torch.float64)
    norm = beta.norm()
    if norm == 0:
        return 0.0
    u = X @ (beta / norm)  # (n,): X β̂
    kernel = norm ** (2 - 2 / depth) * (X @ X.T + (depth - 1) * torch.outer(u, u))
    return float(torch.linalg.eigvalsh(kernel).max())


def hessian_sharpness(model: torch.nn.Module, loss_fn: Callable[[], Tensor], *,
                      seed: int = 0, tol: float = 1e-6) -> float:
    """max |λ| of the Hessian ∇²_θ loss_fn() at ``model``'s current parameters θ.

    Lanczos iteration (scipy's ``eigsh``) on exact Hessian-vector products (double
    backpropagation), so the P × P Hessian is never formed; ``seed`` fixes the start vector.
    Gradient descent with step η is locally stable where η·max|λ| < 2.
    """
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    sizes = [p.numel() for p in params]
    ref = params[0]

    def hvp(v: np.ndarray) -> np.ndarray:
        vec = torch.as_tensor(np.asarray(v).reshape(-1), dtype=ref.dtype, device=ref.device)
        parts = [c.view_as(p) for c, p in zip(vec.split(sizes), params, strict=True)]
        out = torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True)
        return torch.cat([o.reshape(-1) for o in out]).double().cpu().numpy()

    dim = sum(sizes)
    start = torch.randn(dim, generator=torch.Generator().manual_seed(seed),  # cpu: same start
                        dtype=torch.float64).numpy()
    op = LinearOperator((dim, dim), matvec=hvp, dtype=np.float64)
    top = eigsh(op, k=1, which="LM", v0=start, tol=tol, return_eigenvectors=False)
    return float(abs(top[0]))


def gd_least_squares(
    X: Tensor,
    y: Tensor,
    *,
    eta: float,
    steps: int,
    w0: Tensor | None = None,
    record_at: Sequence[int] | None = None,
    allow_unstable: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Run ``steps`` of gradient descent on ½‖Xw − y‖² from ``w0`` (default 0), in float64.

    Args:
        X: (n, d) design matrix; y: (n,) targets.
        eta: step size; must satisfy 0 < η < 2/σ_max(X)² unless ``allow_unstable``.
        steps: number of iterations (≥ 0).
        w0: (d,) starting point; zeros when omitted.
        record_at: optional increasing step counts in [0, steps] at which to record w_t.
        allow_unstable: permit η at or above the stability limit (to show divergence).

    Returns:
        w_T of shape (d,), or ``(w_T, W)`` with ``W`` the iterates at ``record_at``, shape
        (len(record_at), d), when ``record_at`` is given.

    Raises:
        ValueError: for a non-positive step size, one above the stability limit, bad shapes.
    """
    X, y = _check_xy(X, y)
    steps = check_int("steps", steps, low=0)
    eta = check_positive("eta", eta)
    limit = stability_limit(X)
    if eta >= limit and not allow_unstable:
        raise ValueError(f"eta={eta:g} is above the stability limit 2/sigma_max^2={limit:g}: "
                         "gradient descent would diverge (pass allow_unstable=True to see it)")
    wanted = _check_record_at(record_at, steps)
    w = _check_w0(w0, X).clone()
    gram, xty = X.T @ X, X.T @ y  # (d, d), (d,)
    path = [w.clone()] if 0 in wanted else []
    step = torch.empty_like(w)  # η(Gw − Xᵀy), rewritten in place: no allocation per step
    for t in range(1, steps + 1):
        w.sub_(torch.mv(gram, w, out=step).sub_(xty).mul_(eta))
        if t in wanted:
            path.append(w.clone())
    if record_at is not None:
        return w, torch.stack(path)
    return w


def _check_record_at(record_at: Sequence[int] | None, steps: int) -> set[int]:
    if record_at is None:
        return set()
    ts = [int(t) for t in record_at]
    if not ts or ts != sorted(set(ts)) or ts[0] < 0 or ts[-1] > steps:
        raise ValueError(f"record_at must be increasing step counts in [0, {steps}]")
    return set(ts)


def gd_closed_form(X: Tensor, y: Tensor, *, eta: float, ts: Tensor,
                   w0: Tensor | None = None) -> Tensor:
    """GD iterates at steps ``ts`` from the SVD-basis formula (no iteration). Returns (m, d).

    c_i(t) = (1 − (1 − ησ_i²)^t)·u_iᵀy/σ_i + (1 − ησ_i²)^t·v_iᵀw_0 on the row space; the
    null-space component of w_0 is unchanged.
    """
    X, y = _check_xy(X, y)
    w0 = _check_w0(w0, X)
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    keep = S > S.max() * max(X.shape) * torch.finfo(torch.float64).eps
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    t = torch.as_tensor(ts, dtype=torch.float64, device=X.device)[:, None]  # (m, 1)
    decay = (1 - eta * S**2) ** t  # (m, r)
    coords = (1 - decay) * (U.T @ y / S) + decay * (Vh @ w0)  # (m, r)
    null_part = w0 - Vh.T @ (Vh @ w0)  # (d,)
    return coords @ Vh + null_part


def ridge_solution(X: Tensor, y: Tensor, lam: float) -> Tensor:
    """argmin ½‖Xw − y‖² + ½λ‖w‖² = Xᵀ(XXᵀ + λI)⁻¹y, for λ > 0. Shape (d,)."""
    X, y = _check_xy(X, y)
    lam = check_positive("lam", lam)
    n = X.shape[0]
    return X.T @ torch.linalg.solve(X @ X.T + lam * torch.eye(n, dtype=X.dtype,
                                                                device=X.device), y)


def early_stopping_ridge_gap(x_max: float) -> float:
    """Bound on ‖w_GD(t) − w_ridge(1/(ηt))‖ / ‖w_ridge‖ along the whole GD path from 0.

    Per SVD coordinate the GD filter is g(x, t) = 1 − (1 − x)^t (x = ησ²) and the ridge filter
    with λ = 1/(ηt) is xt/(1 + xt). Since (1 − x)^t = exp(−c(x)·xt) with
    c(x) = −ln(1 − x)/x increasing in x, every coordinate's ratio g/ridge − 1 lies in
    [0, B] with B = sup_s (1 − e^{−c s})(1 + s)/s − 1 and c = c(x_max), x_max = ησ_max² < 1.
    Returns B (≈ 0.2985 for gradient flow, x_max → 0).
    """
    if not 0 <= x_max < 1:
        raise ValueError(f"x_max = eta*sigma_max^2 must lie in [0, 1), got {x_max!r}")
    c = 1.0 if x_max == 0 else -math.log1p(-x_max) / x_max
    s = torch.logspace(-4, 4, 200_001, dtype=torch.float64)
    return float(((1 - torch.exp(-c * s)) * (1 + s) / s - 1).max())
