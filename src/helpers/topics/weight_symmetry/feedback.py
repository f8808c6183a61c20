"""Asymmetric backpropagation: linear layers whose backward pass uses a feedback matrix V ≠ W.

Backpropagation sends the error δ at a layer's output back to its input as ``δ W`` (per
sample, ``Wᵀδ``): the *weight transport* problem. Liao, Leibo & Poggio (2016, "How important
is weight symmetry in backpropagation?", arXiv:1510.05067) replace W by a feedback matrix V in
that step only; the weight gradient stays the outer product ``δᵀ x``. The feedback matrices:

========================  =====================================================
``feedback``              V
========================  =====================================================
``"backprop"``            S ∘ W                       (S = ±1 concordance mask)
``"sign"``                scale · S ∘ sign(W)         (uniform sign-concordant)
``"fixed_random_sign"``   scale · M ∘ S ∘ sign(W)     (M > 0 drawn once)
``"batch_random_sign"``   scale · M ∘ S ∘ sign(W)     (M redrawn every batch)
``"random"``              scale · M ∘ R               (R random signs: feedback alignment,
                                                       Lillicrap et al. 2016)
========================  =====================================================

The concordance mask S holds exactly ``round(q · numel)`` entries +1 (placed at random) and the
rest −1, so ``q`` is the fraction of feedback signs that agree with W: q = 1 is sign(W), q = 0
its negation. Magnitudes M are |N(0, 1)|, whose second moment 1 equals that of ``sign``.

Introduced in the chapter "How important is weight symmetry in backpropagation?"; the batched
training of many such networks at once lives in :mod:`helpers.topics.weight_symmetry.training`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from helpers.core.validation import check_positive

FEEDBACKS = ("backprop", "sign", "fixed_random_sign", "batch_random_sign", "random")


def check_feedback(feedback: str, q: float | None) -> float:
    """Validate a feedback name and concordance; return q (default 1 for sign-based feedback).

    Raises:
        ValueError: unknown ``feedback``; ``q`` outside [0, 1]; ``q`` given for ``"random"``,
            whose signs are independent of W (concordance 1/2 in expectation).
        TypeError: ``feedback`` not a string or ``q`` not a real number.
    """
    if not isinstance(feedback, str):
        raise TypeError(f"feedback must be a string, got {type(feedback).__name__}")
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
    if q is None:
        return 0.5 if feedback == "random" else 1.0
    if feedback == "random":
        raise ValueError("q does not apply to feedback='random' (its signs ignore W); "
                         "leave q as None")
    if isinstance(q, bool) or not isinstance(q, int | float):
        raise TypeError(f"q must be a real number in [0, 1], got {type(q).__name__}")
    if not 0.0 <= q <= 1.0 or math.isnan(q):
        raise ValueError(f"q (sign concordance) must lie in [0, 1], got {q}")
    return float(q)


def concordance_mask(shape: tuple[int, ...], q: float | torch.Tensor, *,
                     generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """A ±1 mask over the last two dims of ``shape`` with exactly round(q · n) entries +1.

    Args:
        shape: ``(out, in)`` or ``(models, out, in)``; n = out · in.
        q: the concordance, a number or a tensor of shape ``(models,)`` (one per model).

    Returns:
        Tensor of ``shape``; the +1 entries sit at uniformly random positions.
    """
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (out, in) or (models, out, in), got {shape}")
    n, lead = shape[-1] * shape[-2], shape[:-2]
    q_t = torch.as_tensor(q, dtype=torch.float64)  # cpu: the mask is drawn on the CPU, then moved
    if q_t.dim() == 1:
        if q_t.shape != lead:
            raise ValueError(f"q must be a number or have shape {lead}, got {tuple(q_t.shape)}")
        q_t = q_t[:, None]
    if not ((q_t >= 0) & (q_t <= 1)).all():
        raise ValueError(f"q (sign concordance) must lie in [0, 1], got {q}")
    keys = torch.rand(*lead, n, generator=generator)  # cpu: same masks on every device
    k = torch.round(q_t * n).long()  # drawn even when unused: the generator moves on alike
    if ((k == 0) | (k == n)).all():  # q ∈ {0, 1}: every sign agrees or none, no ranks needed
        agree = (k == n).expand(*lead, n)
    else:
        ranks = inverse_permutation(keys.argsort(dim=-1))  # a uniformly random permutation
        agree = ranks < k
    mask = torch.where(agree, 1.0, -1.0).reshape(shape)
    return mask.to(dtype=dtype, device=device)


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The inverse of each permutation along the last dim: ``inv[..., perm[..., i]] = i``.

    Equal to ``perm.argsort(-1)`` (a permutation's ranks), by one scatter instead of a sort.
    """
    order = torch.arange(perm.shape[-1], device=perm.device).expand_as(perm)
    return torch.empty_like(perm).scatter_(-1, perm, order)


def random_magnitudes(shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Feedback magnitudes M = |N(0, 1)| (mean √(2/π), second moment 1), drawn on the CPU."""
    draws = torch.randn(shape, generator=generator)  # cpu: same draws on every device
    return draws.abs().to(dtype=dtype, device=device)


def feedback_matrix(weight: torch.Tensor, feedback: str, *, sign_mask: torch.Tensor,
                    magnitude: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The feedback matrix V of the table above, for weights of shape (out, in) or (M, out, in).

    ``sign_mask`` is S (or R for ``"random"``), ``magnitude`` is M (ignored by ``"backprop"``
    and ``"sign"``). No gradient flows through V.
    """
    w = weight.detach()
    if feedback == "backprop":
        return sign_mask * w
    if feedback == "sign":
        return scale * sign_mask * torch.sign(w)
    if feedback in ("fixed_random_sign", "batch_random_sign"):
        return scale * magnitude * sign_mask * torch.sign(w)
    if feedback == "random":
        return scale * magnitude * sign_mask
    raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")


class _FeedbackMatmul(torch.autograd.Function):
    """y = x Wᵀ forward; backward ∂x = δ V (not δ W) and ∂W = δᵀ x (the usual outer product)."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x @ weight.transpose(-1, -2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, v = inputs
        ctx.save_for_backward(x, v)
        ctx.batched = weight.dim() == 3

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, v = ctx.saved_tensors
        grad_x = grad_out @ v  # (..., out) @ (out, in) -> (..., in)
        if ctx.batched:  # (M, n, out)ᵀ @ (M, n, in) -> (M, out, in)
            grad_w = grad_out.transpose(-1, -2) @ x
        else:  # every leading dim is a sample dim
            grad_w = grad_out.reshape(-1, grad_out.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_w, None


def feedback_matmul(x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x @ weight.mT`` whose backward sends the error through ``v`` instead of ``weight``.

    Shapes: ``x`` (..., in) with ``weight``, ``v`` (out, in); or batched over models,
    ``x`` (M, n, in) with ``weight``, ``v`` (M, out, in).
    """
    if v.shape != weight.shape:
        raise ValueError(f"v must have the shape of weight {tuple(weight.shape)}, "
                         f"got {tuple(v.shape)}")
    if weight.dim() not in (2, 3):
        raise ValueError(f"weight must be (out, in) or (M, out, in), got {tuple(weight.shape)}")
    return _FeedbackMatmul.apply(x, weight, v)


class FeedbackLinear(nn.Linear):
    """``nn.Linear`` whose backward pass uses a feedback matrix V instead of W (Liao et al. 2016).

    Forward: y = x Wᵀ + b. Backward: ∂L/∂x = (∂L/∂y) V, ∂L/∂W = (∂L/∂y)ᵀ x, ∂L/∂b = Σ ∂L/∂y.

    Args:
        in_features, out_features, bias: as for ``nn.Linear``.
        feedback: one of ``FEEDBACKS`` (see the module docstring for each V).
        q: sign concordance in [0, 1], the fraction of feedback signs that agree with W
            (default 1); not allowed for ``"random"``.
        scale: the feedback magnitude for the sign-based and random variants (default 1, the
            paper's V = sign(W)).
        seed: seeds the mask, the magnitudes and the initialisation without touching the global
            generator; ``None`` uses the global one.

    Buffers ``sign_mask`` (S, or R for ``"random"``) and ``magnitude`` (M) may be overwritten.
    ``"batch_random_sign"`` redraws M at every forward pass in training mode.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 feedback: str = "backprop", q: float | None = None, scale: float = 1.0,
                 seed: int | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None):
        self.q = check_feedback(feedback, q)
        check_positive("scale", scale)
        # masks and magnitudes come from a stream apart from the initialisation's, which must
        # not be the same stream: sign(W) would then predict the mask
        self._generator = None if seed is None else \
            torch.Generator().manual_seed(seed + 0x9E3779B9)  # cpu: same draws on every device
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.feedback, self.scale = feedback, float(scale)
        shape = (out_features, in_features)
        like = dict(dtype=self.weight.dtype, device=self.weight.device)
        self.register_buffer("sign_mask", concordance_mask(shape, self.q,
                                                           generator=self._generator, **like))
        self.register_buffer("magnitude", random_magnitudes(shape, generator=self._generator,
                                                            **like))

    def feedback_matrix(self) -> torch.Tensor:
        """The current feedback matrix V, shape (out, in)."""
        return feedback_matrix(self.weight, self.feedback, sign_mask=self.sign_mask,
                               magnitude=self.magnitude, scale=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feedback == "batch_random_sign" and self.training:
            self.magnitude.copy_(random_magnitudes(self.magnitude.shape,
                                                   generator=self._generator,
                                                   dtype=self.magnitude.dtype,
                                                   device=self.magnitude.device))
        y = feedback_matmul(x, self.weight, self.feedback_matrix())
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feedback={self.feedback!r}, q={self.q}, scale={self.scale}"


class BatchManhattan(torch.optim.Optimizer):
    """Batch Manhattan update (Liao et al. 2016): θ ← θ − η · sign(g), g the batch gradient.

    Only the sign of each coordinate of the (mini-)batch gradient is used, so the step of every
    parameter has the same size η whatever the scale of the error signal that reached it.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3):
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        super().__init__(params, dict(lr=float(lr)))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 (the class docstring states the update)
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])
        return loss
