"""What a PyTorch user would write instead of the batched engine: its peers in the benchmark.

Both train K MLPs of the same widths, each with plain gradient descent on its own mean
cross-entropy, W ← W − η ∇L_k(W), exactly the update of
:func:`helpers.engine.batched.train_batched`:

* :func:`train_torch_func`: PyTorch's model-ensembling recipe, the K modules' parameters
  stacked by ``torch.func.stack_module_state`` and per-model gradients from
  ``vmap(grad(loss))``;
* :func:`train_stacked_autograd`: the weights stacked as (K, out, in) tensors, the forward pass
  as batched matrix products and one ``backward()`` through the summed loss (the K losses are
  independent, so each model still receives its own gradient).

The benchmark (``python -m helpers.bench``) times them side by side with the engine; a unit test
checks that all three reach the same weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from helpers.core.validation import check_int, check_positive
from helpers.engine.models import MLP

Tensor = torch.Tensor


def _batch_indices(n: int, batch_size: int | None, steps: int, seed: int,
                   device: torch.device) -> list[Tensor | None]:
    """One shared draw of ``batch_size`` sample indices per step (None: the full batch)."""
    if batch_size is None:
        return [None] * steps
    gen = torch.Generator().manual_seed(seed)  # cpu: the same draws on every device
    return [torch.randint(n, (batch_size,), generator=gen).to(device) for _ in range(steps)]


def train_torch_func(widths: Sequence[int], seeds: Sequence[int], x: Tensor, y: Tensor, *,
                     lr: float, steps: int, batch_size: int | None = None,
                     seed: int = 0) -> dict[str, Tensor]:
    """Train ``len(seeds)`` :class:`~helpers.engine.models.MLP` with the torch.func recipe;
    returns the stacked parameters (name → (K, …))."""
    check_positive("lr", lr)
    check_int("steps", steps, low=1)
    from torch.func import functional_call, grad, stack_module_state, vmap

    models = [MLP(widths, seed=int(s), dtype=x.dtype, device=x.device) for s in seeds]
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, xb, yb):
        return nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    per_model_grad = vmap(grad(loss), in_dims=(0, 0, None, None))
    for idx in _batch_indices(len(x), batch_size, steps, seed, x.device):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        grads = per_model_grad(params, buffers, xb, yb)
        for name, g in grads.items():
            params[name].sub_(lr * g)
    return params


def train_stacked_autograd(widths: Sequence[int], seeds: Sequence[int], x: Tensor, y: Tensor,
                           *, lr: float, steps: int, batch_size: int | None = None,
                           seed: int = 0) -> list[Tensor]:
    """Train the same K models as stacked weights with autograd; returns [W_1, b_1, W_2, …]
    with W_l of shape (K, out, in) and b_l of shape (K, out)."""
    check_positive("lr", lr)
    check_int("steps", steps, low=1)
    linears = [[m for m in MLP(widths, seed=int(s), dtype=x.dtype, device=x.device)
                if isinstance(m, nn.Linear)] for s in seeds]
    params = []
    for layer in range(len(widths) - 1):
        params.append(torch.stack([lin[layer].weight.detach() for lin in linears]))
        params.append(torch.stack([lin[layer].bias.detach() for lin in linears]))
    for p in params:
        p.requires_grad_(True)
    K = len(seeds)
    for idx in _batch_indices(len(x), batch_size, steps, seed, x.device):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        h = xb.expand(K, -1, -1)  # (K, n, d)
        for layer in range(0, len(params), 2):
            h = torch.baddbmm(params[layer + 1].unsqueeze(1), h, params[layer].transpose(1, 2))
            if layer + 2 < len(params):
                h = torch.relu(h)
        losses = nn.functional.cross_entropy(h.flatten(0, 1), yb.repeat(K), reduction="none")
        losses.view(K, -1).mean(1).sum().backward()
        with torch.no_grad():
            for p in params:
                p.sub_(lr * p.grad)
                p.grad = None
    return [p.detach() for p in params]
