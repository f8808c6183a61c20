"""Gradient descent on several deep linear networks at once, one stack of weights.

A deep linear network x ↦ W_L ⋯ W_1 x (``helpers.DeepLinear``) fitted by full-batch gradient
descent on L(θ) = ½‖X βᵀ − y‖², β = W_L ⋯ W_1, moves W_1 only within the row space of X
(Poggio et al., Theory III, arXiv:1801.00173). The chapter trains the same network from
several initial scales; stacking their weights along a leading axis runs all of them in one
loop, each with its own step size.

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from helpers.core.validation import check_int, check_positive

Tensor = torch.Tensor


def _check_nets(nets: Sequence[torch.nn.Module]) -> list[list[Tensor]]:
    """The weight lists of ``nets``: deep linear networks with identical shapes."""
    if not isinstance(nets, Sequence) or not nets:
        raise ValueError("nets must be a non-empty sequence of deep linear networks")
    weights = []
    for net in nets:
        if not isinstance(getattr(net, "weights", None), torch.nn.ParameterList):
            raise TypeError(f"nets must hold deep linear networks (with a ParameterList "
                            f"`weights`), got {type(net).__name__}")
        weights.append(list(net.weights))
    shapes = [tuple(w.shape for w in ws) for ws in weights]
    if len(set(shapes)) != 1:
        raise ValueError(f"nets must all have the same weight shapes, got {sorted(set(shapes))}")
    return weights


def deep_linear_gd(nets: Sequence[torch.nn.Module], X: Tensor, y: Tensor, *,
                   etas: Sequence[float], steps: int) -> None:
    """θ_s ← θ_s − η_s ∇L_s(θ_s) for every network s, ``steps`` times, in place.

    L_s = ½ Σ_i (β_sᵀx_i − y_i)² with β_sᵀ = W_L ⋯ W_1 of network s (one output). The S
    networks' weights are stacked as (S, d_out, d_in) per layer and trained in one loop: the
    summed loss leaves each network's gradient its own, so each follows exactly its own
    gradient descent (``helpers.train_gd`` on that network alone, up to the rounding of
    batched products).

    Args:
        nets: S ``helpers.DeepLinear`` networks with equal widths and one output.
        X: (n, d_in) inputs; y: (n,) targets.
        etas: S step sizes; steps: number of steps.
    """
    weights = _check_nets(nets)
    if len(etas) != len(nets):
        raise ValueError(f"etas must hold one step size per network ({len(nets)}), "
                         f"got {len(etas)}")
    for eta in etas:
        check_positive("etas", eta)
    steps = check_int("steps", steps, low=1)
    ref = weights[0][0]
    if not isinstance(X, Tensor) or X.ndim != 2 or X.shape[1] != ref.shape[1]:
        raise ValueError(f"X must be a (n, {ref.shape[1]}) tensor, got "
                         f"{getattr(X, 'shape', type(X).__name__)}")
    if not isinstance(y, Tensor) or y.shape != X.shape[:1] or weights[0][-1].shape[0] != 1:
        raise ValueError("y must have shape (n,) and the networks one output")
    stack = [torch.stack([ws[i].detach() for ws in weights]).requires_grad_()
             for i in range(len(weights[0]))]  # per layer: (S, d_out, d_in)
    eta = torch.tensor(list(etas), dtype=ref.dtype, device=ref.device)[:, None, None]  # (S,1,1)
    for _ in range(steps):
        beta = stack[0]
        for w in stack[1:]:
            beta = w @ beta  # (S, d_out, d_in), multiplied in the order of end_to_end()
        loss = 0.5 * (((X @ beta.transpose(-1, -2))[..., 0] - y) ** 2).sum()  # Σ_s L_s
        grads = torch.autograd.grad(loss, stack)
        with torch.no_grad():
            for w, g in zip(stack, grads, strict=True):
                w -= eta * g
    with torch.no_grad():
        for i, w in enumerate(stack):
            for s, ws in enumerate(weights):
                ws[i].copy_(w[s])
