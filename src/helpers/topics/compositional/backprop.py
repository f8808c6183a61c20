"""Hand-written backward passes of :class:`~helpers.topics.compositional.models.TreeNet` and
:class:`~helpers.topics.compositional.models.ShallowNet` for the squared loss.

L = Σ_copies mean_B (f(x) − y)², so ∂L/∂f = 2 (f − y) / B, and the chain rule runs level by
level through the same batched products as the forward pass (samples last, one matmul per
level for every copy and node at once). Autograd would build and walk a graph of some forty
small nodes per network and step; at the chapter's sizes that bookkeeping cost as much as the
arithmetic. ``tests/test_compositional_backprop.py`` checks every gradient against autograd.

Introduced in the chapter "Deep vs shallow networks on compositional functions".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from helpers.topics.compositional.models import ShallowNet, TreeNet

#: g ← σ'(u) ⊙ g, in place (g is a fresh tensor of the backward pass), as autograd computes it.
_ACT_BACKWARD_: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "gelu": lambda g, u: torch.ops.aten.gelu_backward.grad_input(g, u, grad_input=g),
    "relu": lambda g, u: torch.ops.aten.threshold_backward.grad_input(g, u, 0, grad_input=g),
    "tanh": lambda g, u: torch.ops.aten.tanh_backward.grad_input(g, torch.tanh(u),
                                                                  grad_input=g),
    "softplus": lambda g, u: torch.ops.aten.softplus_backward.grad_input(g, u, 1, 20,
                                                                          grad_input=g),
    "silu": lambda g, u: torch.ops.aten.silu_backward.grad_input(g, u, grad_input=g),
    "identity": lambda g, u: g,
}


def _input_weight_grad(grad_pre: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_B grad_pre zᵀ per node: (..., m, k, B), (m, 2, B) → (..., m, k, 2).

    When every copy reads the same inputs z (no leading axes), the copies of a node stack into
    one (copies·k, B) @ (B, 2) product per node: one small batch of tall products instead of
    a batch of copies·m tiny ones, for which a broadcast matmul would also copy z per copy.
    """
    if z.dim() > 3:  # per-copy inputs
        return grad_pre @ z.transpose(-1, -2)
    m, k, batch = grad_pre.shape[-3:]
    lead = grad_pre.shape[:-3]
    stacked = grad_pre.movedim(-3, 0).reshape(m, -1, batch)  # (m, copies·k, B)
    return (stacked @ z.transpose(-1, -2)).view(m, *lead, k, 2).movedim(0, -3)


def _tree_grads(net: TreeNet, saved: list, g: torch.Tensor) -> dict:
    """∂L/∂θ of a TreeNet from ∂L/∂f = g (..., B) and the forward pass's ``saved`` levels."""
    act_backward_ = _ACT_BACKWARD_[net.activation]
    hidden, _, _ = saved[-1]  # the root's hidden units (..., 1, k, B)
    g = g[..., None, None, :]  # (..., 1, 1, B)
    grads = {net.w2[-1]: (g @ hidden.transpose(-1, -2))[..., 0, :],  # (..., 1, k)
             net.b2[-1]: g.sum(-1)[..., 0]}  # (..., 1)
    grad_hidden = net.w2[-1].unsqueeze(-1) * g  # (..., 1, k, B)
    for lv in reversed(range(net.levels)):
        inputs, pre, weight = saved[lv]  # (..., m, c, B), (..., m, k, B), (..., m, k, c)
        grad_pre = act_backward_(grad_hidden, pre)
        grad_bias = grad_pre.sum(-1)  # (..., m, k)
        if lv == 0:  # u = W1ᵀ z + b1
            grads[net.w1[0]] = _input_weight_grad(grad_pre, inputs).transpose(-1, -2)
            grads[net.b1[0]] = grad_bias
            break
        # u = C [h_0; h_1] + d with C[i, c·k + j] = W1[c, i] w2_c[j], d = b1 + Σ_c W1[c] b2_c.
        grad_weight = (grad_pre @ inputs.transpose(-1, -2)).unflatten(-1, (2, net.k))
        grad_hidden = (weight.transpose(-1, -2) @ grad_pre)  # (..., m, 2k, B)
        grad_hidden = grad_hidden.unflatten(-2, (2, net.k)).flatten(-4, -3)  # (..., 2m, k, B)
        w1 = net.w1[lv]  # (..., m, 2, k)
        w2 = net.w2[lv - 1].unflatten(-2, (w1.shape[-3], 2))  # (..., m, 2, k): children c
        b2 = net.b2[lv - 1].unflatten(-1, (w1.shape[-3], 2))  # (..., m, 2)
        grads[w1] = ((grad_weight * w2.unsqueeze(-3)).sum(-1).transpose(-1, -2)
                     + grad_bias.unsqueeze(-2) * b2.unsqueeze(-1))  # (..., m, 2, k)
        grads[net.b1[lv]] = grad_bias
        grads[net.w2[lv - 1]] = (grad_weight * w1.transpose(-1, -2).unsqueeze(-1)
                                 ).sum(-3).flatten(-3, -2)  # (..., 2m, k)
        grads[net.b2[lv - 1]] = (grad_bias.unsqueeze(-2) * w1).sum(-1).flatten(-2)  # (..., 2m)
    return grads


def _shallow_grads(net: ShallowNet, saved: list, g: torch.Tensor, x: torch.Tensor) -> dict:
    """∂L/∂θ of a ShallowNet from ∂L/∂f = g (..., B): f = vᵀ σ(Wᵀ x + b) + c."""
    ((pre, hidden),) = saved  # (..., W, B) each
    g = g.unsqueeze(-2)  # (..., 1, B)
    grad_pre = _ACT_BACKWARD_[net.activation](net.v.unsqueeze(-1) * g, pre)  # (..., W, B)
    return {net.w: (grad_pre @ x).transpose(-1, -2),  # (..., n, W)
            net.b: grad_pre.sum(-1),
            net.v: (g @ hidden.transpose(-1, -2))[..., 0, :],  # (..., W)
            net.c: g.sum(-1)[..., 0]}


def mse_backward_(net: TreeNet | ShallowNet, x: torch.Tensor, y: torch.Tensor) -> None:
    """Set ``p.grad`` = ∂L/∂p for L = Σ_copies mean_B (f(x) − y)², replacing any old gradient.

    Args:
        net: a TreeNet or ShallowNet (with or without ``n_models``).
        x: inputs (B, n) or (n_models, B, n).
        y: targets of the output's shape, (B,) or (n_models, B).
    """
    if not isinstance(net, TreeNet | ShallowNet):
        raise TypeError(f"net must be a TreeNet or ShallowNet, got {type(net).__name__}")
    net._check_input(x, net.n_inputs)
    saved: list = []
    with torch.no_grad():
        out = net._forward(x, saved)
        if not isinstance(y, torch.Tensor) or y.shape != out.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must have the output's shape {tuple(out.shape)}, got {got}")
        g = (out - y) * (2 / y.shape[-1])  # ∂L/∂f
        grads = (_tree_grads(net, saved, g) if isinstance(net, TreeNet)
                 else _shallow_grads(net, saved, g, x))
    for p in net.parameters():
        p.grad = grads[p].contiguous()
