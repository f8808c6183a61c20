"""Training loops shared by the chapters.

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from helpers.core.validation import check_int, check_positive


def fit_lbfgs(model: nn.Module, loss_fn: Callable[[], torch.Tensor], *, max_iter: int = 500,
              rounds: int = 20, tol: float = 1e-28) -> float:
    """Minimise ``loss_fn()`` over ``model``'s parameters with L-BFGS (strong-Wolfe line search).

    Runs up to ``rounds`` calls of ``max_iter`` iterations each, stopping once the loss is below
    ``tol``. Use float64 models to reach a minimum precise enough to see Hessian degeneracy.
    Returns the final loss.
    """
    check_int("max_iter", max_iter, low=1)
    check_int("rounds", rounds, low=1)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=max_iter, history_size=50,
                            tolerance_grad=1e-30, tolerance_change=1e-30,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    loss = loss_fn().item()
    for _ in range(rounds):
        opt.step(closure)
        loss = loss_fn().item()
        if loss < tol:
            break
    return loss


def train_gd(model: nn.Module, loss_fn: Callable[[], torch.Tensor], *, eta: float, steps: int,
             record_every: int = 0) -> list[float]:
    """Plain full-batch gradient descent θ ← θ − η∇L for ``steps`` steps.

    Returns the losses recorded every ``record_every`` steps (and at the last step), or just
    the final loss when ``record_every`` is 0.
    """
    check_positive("eta", eta)
    check_int("steps", steps, low=1)
    params = [p for p in model.parameters() if p.requires_grad]
    losses = []
    for t in range(1, steps + 1):
        loss = loss_fn()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= eta * g
        if (record_every and t % record_every == 0) or t == steps:
            losses.append(loss.item())
    return losses


def log_steps(max_step: int, per_decade: int = 8, *, include_zero: bool = False) -> list[int]:
    """Distinct step counts from 1 to ``max_step``, evenly spaced in log t (and 0 if asked)."""
    check_int("max_step", max_step, low=1)
    check_int("per_decade", per_decade, low=1)
    k = int(math.ceil(per_decade * math.log10(max_step))) + 1
    top = math.log10(max_step)
    steps = sorted({int(round(10 ** (i * top / max(k - 1, 1)))) for i in range(k)})
    return [0, *steps] if include_zero else steps


def fit_to_zero_loss(make_model: Callable[[int], nn.Module],
                     loss_of: Callable[[nn.Module], torch.Tensor], *, seed: int = 0,
                     tries: int = 5, tol: float = 1e-20) -> tuple[nn.Module, float, int]:
    """Fit an interpolating model with L-BFGS, re-initialising when it stalls above ``tol``.

    L-BFGS can stall at a kink of a ReLU network (a unit dying mid-line-search) although a
    zero-loss minimum exists. ``make_model(s)`` builds a fresh model from seed ``s``; tries use
    seeds ``seed, seed + 1, …``. Returns ``(model, final loss, number of tries used)``.

    Raises:
        RuntimeError: if no try reaches ``tol`` (then the model likely cannot interpolate).
    """
    check_int("tries", tries, low=1)
    best: tuple[nn.Module, float] | None = None
    for i in range(tries):
        model = make_model(seed + i)
        loss = fit_lbfgs(model, lambda m=model: loss_of(m), tol=tol)
        if loss < tol:
            return model, loss, i + 1
        if best is None or loss < best[1]:
            best = (model, loss)
    raise RuntimeError(f"no zero-loss fit in {tries} tries (best loss {best[1]:.3g}); "
                       "widen the model or add tries")
