"""Logistic regression by gradient descent on separable data, and the hard-margin SVM.

Soudry et al. (2018) prove that on linearly separable data gradient descent on the logistic
loss diverges in norm like log t while its direction converges to the hard-margin SVM
direction ŵ = argmin ‖w‖ s.t. y_i wᵀx_i ≥ 1, with an angle that shrinks like 1/log t.
Poggio et al. (Theory III) place this beside the minimum-norm bias of least squares.

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from helpers.core.validation import check_int, check_positive, check_real

Tensor = torch.Tensor


def _check_labels(X: Tensor, y: Tensor) -> None:
    if X.ndim < 2 or y.shape != X.shape[:-1]:
        raise ValueError(f"X must be (..., n, d) and y (..., n); got {tuple(X.shape)} and "
                         f"{tuple(y.shape)}")
    if not torch.all((y == 1) | (y == -1)):
        raise ValueError("y must contain only the labels +1 and -1")


def separable_data(n: int, d: int, *, margin: float = 0.1, seed: int = 0,
                   device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """n points in d dimensions, linearly separable through the origin with a gap.

    Points are standard Gaussian; a random unit teacher u labels them y = sign(uᵀx), and points
    with ``|uᵀx| < margin`` are redrawn, so every point lies at least ``margin`` from the plane.
    Returns X (n, d) and y (n,) in float64.
    """
    n = check_int("n", n, low=2)
    d = check_int("d", d, low=1)
    margin = check_real("margin", margin, low=0.0)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same points on every device
    u = torch.randn(d, generator=gen, dtype=torch.float64)  # cpu: drawn with gen, moved at the end
    u /= u.norm()
    rows: list[Tensor] = []
    while sum(len(r) for r in rows) < n:
        x = torch.randn(4 * n, d, generator=gen, dtype=torch.float64)  # cpu: as above
        rows.append(x[(x @ u).abs() >= margin])
    X = torch.cat(rows)[:n]
    y = torch.sign(X @ u)
    return X.to(device), y.to(device)


def _start_column(w0: Tensor, lead: tuple[int, ...], d: int) -> Tensor:
    """``w0`` of shape (..., d), broadcast to (*lead, d) and copied as columns (B, d, 1)."""
    try:
        return w0.expand(*lead, d).reshape(-1, d, 1).clone()
    except (AttributeError, RuntimeError):
        got = getattr(w0, "shape", type(w0).__name__)
        raise ValueError(f"w0 must be a tensor of shape (..., {d}) broadcasting to "
                         f"{(*lead, d)}, got {got}") from None


def logistic_gd(X: Tensor, y: Tensor, *, eta: float, checkpoints: list[int],
                w0: Tensor | None = None) -> Tensor:
    """Gradient descent on L(w) = (1/n) Σ log(1 + exp(−y_i x_iᵀw)), recorded at ``checkpoints``.

    Batched: X may be (B, n, d) with y (B, n) to run B independent problems at once.

    Args:
        X: (n, d) or (B, n, d) inputs; y: (n,) or (B, n) labels in {−1, +1}.
        eta: step size (the loss is σ_max²/(4n)-smooth, so η < 8n/σ_max² is stable).
        checkpoints: increasing step counts at which to record w.
        w0: starting point, shape (..., d); zeros when omitted.

    Returns:
        W of shape (len(checkpoints), d) or (len(checkpoints), B, d).
    """
    _check_labels(X, y)
    eta = check_positive("eta", eta)
    if not checkpoints or any(b <= a for a, b in zip(checkpoints, checkpoints[1:], strict=False)):
        raise ValueError("checkpoints must be a non-empty increasing list of step counts")
    n, d = X.shape[-2:]
    lead = X.shape[:-2]
    Z = (y[..., None] * X).reshape(-1, n, d)  # (B, n, d): rows y_i x_i, one batch axis
    w = torch.zeros(Z.shape[0], d, 1, dtype=X.dtype, device=X.device) if w0 is None \
        else _start_column(w0, lead, d)  # (B, d, 1): w as a column
    # The step w ← w + (η/n) Zᵀσ(−Zw) as three kernels on preallocated columns: negating
    # Z once is exact, so σ(−Zw) is computed bit for bit as before, with no per-step negation.
    neg_Z, Zt = -Z, Z.transpose(-1, -2).contiguous()  # (B, n, d), (B, d, n)
    p = torch.empty(Z.shape[0], n, 1, dtype=X.dtype, device=X.device)  # (B, n, 1)
    out, t = [], 0
    for stop in checkpoints:
        for _ in range(stop - t):
            torch.sigmoid(torch.bmm(neg_Z, w, out=p), out=p)  # σ(−y_i x_iᵀw)
            w = torch.baddbmm(w, Zt, p, alpha=eta / n)
        t = stop
        out.append(w[..., 0].reshape(*lead, d))
    return torch.stack(out)


def hard_margin_svm(X: Tensor, y: Tensor) -> Tensor:
    """The hard-margin SVM through the origin, ŵ = argmin ‖w‖² s.t. y_i wᵀx_i ≥ 1.

    Solved in the dual, max_α 1ᵀα − ½αᵀQα over α ≥ 0 with Q_ij = y_i y_j x_iᵀx_j, by
    L-BFGS-B (scipy), then ŵ = Σ α_i y_i x_i. Independent of any gradient-descent code here.

    Raises:
        ValueError: if the data are not linearly separable through the origin.
    """
    _check_labels(X, y)
    if X.ndim != 2:
        raise ValueError("hard_margin_svm takes one problem: X of shape (n, d)")
    Z = (y[:, None] * X).detach().cpu().numpy().astype(np.float64)
    Q = Z @ Z.T
    n = len(Z)

    def fun(a: np.ndarray) -> tuple[float, np.ndarray]:
        Qa = Q @ a
        return 0.5 * a @ Qa - a.sum(), Qa - 1.0

    res = minimize(fun, np.zeros(n), jac=True, method="L-BFGS-B", bounds=[(0, None)] * n,
                   options={"maxiter": 100_000, "ftol": 1e-15, "gtol": 1e-12})
    w = Z.T @ res.x
    if not np.isfinite(w).all() or (Z @ w).min() < 1 - 1e-5:
        raise ValueError("the data are not linearly separable through the origin "
                         f"(min margin {(Z @ w).min():.3g} after the dual solve)")
    return torch.as_tensor(w, dtype=X.dtype, device=X.device)


def angle_degrees(a: Tensor, b: Tensor) -> Tensor:
    """Angle between vectors a and b (last dimension) in degrees, broadcasting."""
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
