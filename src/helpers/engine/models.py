"""Small, device-agnostic PyTorch models shared by the chapters.

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from helpers.core.validation import check_ints, check_positive


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = check_ints("widths", list(widths), low=1)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output size, got {widths}")
    return widths


class MLP(nn.Sequential):
    """Fully connected network widths[0] → widths[1] → … → widths[-1].

    Hidden layers use ``activation`` (a module class, default ReLU); the last layer is linear.
    ``bias=False`` gives a positively homogeneous network when the activation is. With
    ``seed`` the initialisation is drawn from that seed without touching the global generator.
    """

    def __init__(self, widths: Sequence[int], *, activation: type[nn.Module] = nn.ReLU,
                 bias: bool = True, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, seed: int | None = None):
        widths = _check_widths(widths)
        layers: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                layers.append(nn.Linear(a, b, bias=bias, dtype=dtype, device=device))
                if i < len(widths) - 2:
                    layers.append(activation())
        super().__init__(*layers)
        self.widths = widths


class DeepLinear(nn.Module):
    """Deep linear network x ↦ W_L ⋯ W_1 x, each W_l initialised N(0, init_scale²).

    The end-to-end map :meth:`end_to_end` is the product W_L ⋯ W_1 of shape (d_out, d_in).
    """

    def __init__(self, widths: Sequence[int], *, init_scale: float = 1e-2, seed: int = 0,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        super().__init__()
        widths = _check_widths(widths)
        check_positive("init_scale", init_scale)
        gen = torch.Generator().manual_seed(seed)  # cpu: the same weights on every device
        self.weights = nn.ParameterList(
            nn.Parameter((init_scale * torch.randn(b, a, generator=gen, dtype=dtype)  # cpu: same
                          ).to(device))
            for a, b in zip(widths[:-1], widths[1:], strict=True))

    def end_to_end(self) -> torch.Tensor:
        """W_L ⋯ W_1, shape (d_out, d_in)."""
        # Index, never slice: a slice of a ParameterList re-wraps its entries as new
        # Parameters, cutting them off from torch.func.functional_call's substitutes.
        weights = [self.weights[i] for i in range(len(self.weights))]
        out = weights[0]
        for w in weights[1:]:
            out = w @ out
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, d_in) -> (n, d_out)
        return x @ self.end_to_end().T
