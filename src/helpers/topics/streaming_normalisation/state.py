"""Running statistics of streaming-normalised layers (shared by the forward pass and the
hand-written backward pass).

Introduced in the chapter "Streaming normalisation" (book/depth/streaming_normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StreamState:
    """Running statistics of one streaming-normalised layer, for R models at once.

    Forward: μ and m_p = E|x − μ|^p. Backward: G = E[g], H = E[g·u], Φ = E[φ_p(u)] with
    φ_p(u) = sign(u)|u|^{p−1}. All have shape (R, 1, n); ``steps`` counts updates, so the first
    updates average cumulatively (rate max(α, 1/t)) before the exponential window takes over.
    """

    mu: torch.Tensor
    m_p: torch.Tensor
    G: torch.Tensor
    H: torch.Tensor
    Phi: torch.Tensor
    steps: int = 0
    back_steps: int = 0

    @classmethod
    def zeros(cls, runs: int, n: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> StreamState:
        z = lambda: torch.zeros(runs, 1, n, dtype=dtype, device=device)  # noqa: E731
        return cls(z(), torch.ones(runs, 1, n, dtype=dtype, device=device), z(), z(), z())
