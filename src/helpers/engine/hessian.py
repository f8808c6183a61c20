"""Hessians of a model's loss with respect to all of its parameters, via ``torch.func``.

At a zero-loss minimum of L(θ) = ½ Σ_i ‖f(x_i; θ) − y_i‖² the Hessian equals JᵀJ (the residual
term vanishes), whose rank is at most n·k for n samples and k outputs; so at least P − n·k of
its P eigenvalues are zero: global minima of over-parametrised networks are degenerate
(Poggio et al., Theory II and III).

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from helpers.core.validation import check_positive


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one vector (P,), detached."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _unflatten(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    params, i = {}, 0
    for name, p in model.named_parameters():
        params[name] = theta[i:i + p.numel()].view_as(p)
        i += p.numel()
    if i != theta.numel():
        raise ValueError(f"theta has {theta.numel()} entries, the model has {i} parameters")
    return params


def loss_hessian(model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor) -> torch.Tensor:
    """∇²_θ loss_fn(model(x)) at the model's current parameters, shape (P, P)."""
    theta = flat_parameters(model)

    def loss_of(t: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, _unflatten(model, t), (x,)))

    return hessian(loss_of)(theta)


def output_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """∂ vec(model(x)) / ∂θ, shape (n·k, P)."""
    theta = flat_parameters(model)
    jac = jacrev(lambda t: functional_call(model, _unflatten(model, t), (x,)).reshape(-1))
    return jac(theta)


def count_near_zero(eigenvalues: torch.Tensor, *, rel_tol: float = 1e-8) -> int:
    """How many eigenvalues have ``|λ| ≤ rel_tol · max |λ|``."""
    check_positive("rel_tol", rel_tol)
    mags = eigenvalues.abs()
    return int((mags <= rel_tol * mags.max()).sum())
