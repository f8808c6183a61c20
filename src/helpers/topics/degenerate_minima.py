"""Polynomial networks that stand in for ReLU networks, and 2-D slices of a loss landscape.

Poggio & Liao (Theory II, arXiv:1703.09833) replace the ReLU σ(z) = max(z, 0) by a polynomial
p(z) = Σ_k c_k (z/r)^k fitted to it by least squares on [−r, r]. A network built from p is a
polynomial in its weights, so the equations f(x_i; θ) = y_i, i = 1..n, are polynomial, Bézout's
theorem bounds the number of isolated solutions, and when the network has W > n weights the
zero set of the residuals has dimension at least W − n: global minima are degenerate. A
normalisation layer (batch standardisation without learned scale) keeps pre-activations inside
the fitted range [−r, r], where p is close to the ReLU.

Introduced in the chapter "The landscape of over-parametrised networks" (degenerate-minima).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev

from helpers.core.validation import check_int, check_positive, check_real

Tensor = torch.Tensor


def fit_relu_polynomial(degree: int, radius: float, *, n_points: int = 2001) -> Tensor:
    """Least-squares coefficients c_0..c_degree of p(z) = Σ_k c_k (z/r)^k ≈ max(z, 0) on [−r, r].

    The fit minimises Σ_j (p(z_j) − max(z_j, 0))² over ``n_points`` equispaced z_j in [−r, r]
    (float64). Coefficients refer to the scaled variable t = z/r, which keeps the monomial
    basis well conditioned. Returns a (degree + 1,) float64 tensor.
    """
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise ValueError(f"degree must be a positive integer, got {degree!r}")
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if n_points < degree + 1:
        raise ValueError(f"n_points must be at least degree + 1 = {degree + 1}, got {n_points}")
    t = torch.linspace(-1.0, 1.0, n_points, dtype=torch.float64)  # cpu: a fixed 1-D fit
    basis = t[:, None] ** torch.arange(degree + 1, dtype=torch.float64)  # cpu: as above
    target = torch.relu(radius * t)
    return torch.linalg.lstsq(basis, target[:, None]).solution[:, 0]


def eval_polynomial(coeffs: Tensor, z: Tensor, radius: float) -> Tensor:
    """p(z) = Σ_k c_k (z/r)^k by Horner's rule, in the dtype of ``z``."""
    t = z / radius
    c = coeffs.to(dtype=z.dtype, device=z.device)
    out = torch.zeros_like(z) + c[-1]
    for ck in c.flip(0)[1:]:
        out = out * t + ck
    return out


class PolyReLU(nn.Module):
    """The least-squares polynomial fit of ReLU of degree ``degree`` on [−radius, radius].

    Usable as ``helpers.MLP(widths, activation=PolyReLU)``; the coefficients are a buffer.
    """

    def __init__(self, degree: int = 8, radius: float = 4.0):
        super().__init__()
        self.degree, self.radius = degree, float(radius)
        self.register_buffer("coeffs", fit_relu_polynomial(degree, radius))

    def forward(self, z: Tensor) -> Tensor:
        return eval_polynomial(self.coeffs, z, self.radius)

    def max_error(self, n_points: int = 4001) -> float:
        """max over [−r, r] of ``|p(z) − max(z, 0)|`` (on a fine grid)."""
        z = torch.linspace(-self.radius, self.radius, n_points,  # cpu: a 1-D check
                           dtype=torch.float64)
        return (self(z) - torch.relu(z)).abs().max().item()


def normalised_net(widths: list[int], activation: str, *, seed: int, degree: int = 8,
                   radius: float = 4.0, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> nn.Sequential:
    """Linear → BatchNorm1d(affine=False) → σ per hidden layer, then a linear read-out.

    ``activation`` is ``"relu"`` or ``"poly"`` (:class:`PolyReLU` of ``degree`` on
    [−radius, radius]). The batch standardisation gives each pre-activation zero mean and unit
    variance over the batch, so almost all of them lie inside the fitted range. The same
    ``seed`` gives the same initial weights for both activations.
    """
    if activation not in ("relu", "poly"):
        raise ValueError(f"activation must be 'relu' or 'poly', got {activation!r}")
    if len(widths) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be at least two positive integers, got {widths}")
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(a, b, dtype=dtype))
            if i < len(widths) - 2:
                layers.append(nn.BatchNorm1d(b, affine=False, dtype=dtype))
                layers.append(nn.ReLU() if activation == "relu" else PolyReLU(degree, radius))
    return nn.Sequential(*layers).to(device)


def train_full_batch(model: nn.Module, x: Tensor, y: Tensor, *, steps: int,
                     lr: float = 1e-2) -> float:
    """Full-batch Adam on the cross-entropy for ``steps`` steps; returns the last loss.

    The model is left in evaluation mode (batch-norm running statistics), so that training and
    test accuracy are measured the same way.
    """
    steps = check_int("steps", steps, low=1)
    lr = check_positive("lr", lr)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


@torch.no_grad()
def net_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of rows of ``x`` whose arg-max output equals the label ``y``."""
    return (model(x).argmax(-1) == y).to(torch.float64).mean().item()


def jacobian_rank(jac: Tensor, *, rel_tol: float = 1e-8) -> int:
    """Numerical rank of ``jac``: singular values above ``rel_tol`` times the largest."""
    rel_tol = check_positive("rel_tol", rel_tol)
    s = torch.linalg.svdvals(jac)
    return int((s > rel_tol * s.max()).sum())


def filter_normalised_direction(model: nn.Module, *, seed: int) -> Tensor:
    """A random direction in parameter space, flattened (P,), filter-normalised.

    Gaussian entries, then every row (filter) of every weight matrix is rescaled to the norm
    of the same row of the model's weight; bias vectors get no component (Li et al. 2018, the
    normalisation behind the usual landscape pictures). Without it, a slice along a random
    direction mostly measures the scale of each layer, not the shape of the loss.
    """
    gen = torch.Generator().manual_seed(seed)  # cpu: the same direction on every device
    parts = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)  # cpu: moved
        if w.ndim >= 2:
            rows, d_rows = w.reshape(w.shape[0], -1), d.reshape(d.shape[0], -1)
            d = (d_rows * rows.norm(dim=1, keepdim=True)
                 / d_rows.norm(dim=1, keepdim=True).clamp_min(1e-30)).reshape(w.shape)
        else:
            d = torch.zeros_like(w)
        parts.append(d.reshape(-1))
    return torch.cat(parts)


@torch.no_grad()
def loss_slice(model: nn.Module, loss_of: Callable[[nn.Module], Tensor], d1: Tensor, d2: Tensor,
               alphas: Tensor, betas: Tensor) -> Tensor:
    """L(θ* + α d1 + β d2) on the grid ``alphas`` × ``betas``, shape (len(alphas), len(betas)).

    ``loss_of(model)`` evaluates the loss at the model's current parameters; θ* is restored
    afterwards. d1, d2 are flat (P,) directions.
    """
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    for name, d in (("d1", d1), ("d2", d2)):
        if d.shape != theta.shape:
            raise ValueError(f"{name} must have shape {tuple(theta.shape)}, got {tuple(d.shape)}")
    out = torch.empty(len(alphas), len(betas), dtype=torch.float64)  # cpu: Python floats
    try:
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                _assign(model, theta + a * d1 + b * d2)
                out[i, j] = float(loss_of(model))
    finally:
        _assign(model, theta)
    return out


def _assign(model: nn.Module, theta: Tensor) -> None:
    i = 0
    for p in model.parameters():
        p.copy_(theta[i:i + p.numel()].view_as(p))
        i += p.numel()


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _residual_fn(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]

    def residual(theta: Tensor) -> Tensor:
        params, i = {}, 0
        for name, shape, size in shapes:
            params[name] = theta[i:i + size].view(shape)
            i += size
        return (functional_call(model, params, (x,)) - y).reshape(-1)

    return residual


def loss_order(model: nn.Module, x: Tensor, y: Tensor, direction: Tensor, ts: Tensor) -> float:
    """Slope of log L(θ* + t u) against log t over ``ts`` (u = direction / ‖direction‖).

    L = ½‖f(x; θ) − y‖². At a zero-loss minimum the slope is 2 along a direction with Ju ≠ 0
    and 4 along the null space of J (the residual is then O(t²)).
    """
    residual = _residual_fn(model, x, y)
    u = direction / direction.norm()
    theta = _flat(model)
    losses = torch.stack([0.5 * (residual(theta + t * u) ** 2).sum() for t in ts])
    A = torch.stack([torch.log(ts), torch.ones_like(ts)], 1)
    return torch.linalg.lstsq(A, torch.log(losses)[:, None]).solution[0, 0].item()


@torch.no_grad()
def walk_on_zero_set(model: nn.Module, x: Tensor, y: Tensor, direction: Tensor, *,
                     length: float, steps: int = 10, newton: int = 3) -> tuple[Tensor, float]:
    """Follow the zero set {f(x; θ) = y} from the model's θ* for a path length ``length``.

    Each step moves by length/steps along the direction projected on the current tangent
    space (the null space of the Jacobian J), then returns to the zero set by ``newton``
    Gauss–Newton corrections θ ← θ − J⁺r. Returns the end point (P,) and its residual norm.
    """
    length = check_real("length", length, low=0.0, low_open=True)
    steps = check_int("steps", steps, low=1)
    newton = check_int("newton", newton, low=0)
    residual = _residual_fn(model, x, y)
    jac = jacrev(residual)
    theta, d = _flat(model).clone(), direction.clone()
    for _ in range(steps):
        J = jac(theta)  # (n·k, P)
        d = d - torch.linalg.pinv(J) @ (J @ d)  # onto the tangent space
        theta = theta + (length / steps) * d / d.norm()
        for _ in range(newton):
            theta = theta - torch.linalg.pinv(jac(theta)) @ residual(theta)
    return theta, residual(theta).norm().item()


def zero_set_jacobian(model: nn.Module, x: Tensor, y: Tensor, theta: Tensor) -> Tensor:
    """The Jacobian ∂(f(x; θ) − y)/∂θ at a point θ (P,) of the walk, shape (n·k, P)."""
    return jacrev(_residual_fn(model, x, y))(theta)
