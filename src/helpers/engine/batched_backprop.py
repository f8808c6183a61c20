"""The batched engine's inner loop: forward and backward pass of K MLPs, written by hand.

For an MLP the backward pass is three lines per layer. With pre-activations
``Z_l = W_l H_{l-1} + b_l``, ``H_l = φ(Z_l)`` (features × samples, one matrix per model) and a
per-sample weight ``w_i`` (1/n for a full batch, 0 on padding),

    δ_L = (∂ℓ/∂Z_L) · w          softmax(Z_L) − onehot(y) for cross-entropy, 2 (Z_L − T) for mse
    ∇W_l = δ_l H_{l-1}ᵀ,   ∇b_l = δ_l 1,   δ_{l-1} = φ′ ⊙ (W_lᵀ δ_l)

with φ′ read off the stored output: 1[H > 0] for ReLU, 1 − H² for tanh. Written out, the pass
runs a fixed handful of batched products and in-place elementwise kernels, with no graph
recorded and no generic backward kernels; autograd remains the reference it is tested against
(through :func:`helpers.engine.batched.train_one`) and the path for any other activation.

The sample axis is padded to a multiple of 16 columns (64 bytes) when that adds at most an
eighth of the work: with n = 1 258 digits the rows of every (width × n) matrix then start on a
cache line and the products run 1.2–1.7× faster (measured on two CPU cores). Padded columns
carry weight 0, so they change no gradient and no loss.

Introduced in the appendix "Performance".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
ALIGN = 16  # float32 columns per 64-byte cache line


def _relu_(z: Tensor) -> Tensor:
    return z.clamp_(min=0)


def _relu_backward_(grad: Tensor, h: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad)


def _tanh_backward_(grad: Tensor, h: Tensor) -> Tensor:
    return torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad)


# activation → (in place, in-place backward from the stored output: grad ← φ′ ⊙ grad)
ACTIVATIONS: dict[Callable, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]]
ACTIVATIONS = {torch.relu: (_relu_, _relu_backward_), F.relu: (_relu_, _relu_backward_),
               torch.tanh: (torch.Tensor.tanh_, _tanh_backward_)}


def supported(activation: Callable) -> bool:
    """Whether the hand-written pass knows ``activation`` (else the engine uses autograd)."""
    return activation in ACTIVATIONS


def padded_columns(n: int) -> int:
    """n rounded up to a multiple of ``ALIGN``, when that adds at most n/8 columns."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    m = -(-n // ALIGN) * ALIGN
    return m if 8 * (m - n) <= n else n


@dataclass
class Batch:
    """One step's data in the engine's layout (m = padded sample count).

    Attributes:
        xt: inputs, (d, m) shared by all models or (K, d, m) per model; zero on padding.
        target: one-hot labels (cross-entropy) or targets (mse), (C, m) or (K, C, m).
        weight: per-sample weight of each model's loss, (1, m) or (K, m); 0 on padding.
    """

    xt: Tensor
    target: Tensor
    weight: Tensor


def _pad_last(t: Tensor, m: int) -> Tensor:
    """``t`` with its last axis zero-padded to length m, contiguous."""
    out = t.new_zeros(*t.shape[:-1], m)
    out[..., :t.shape[-1]] = t
    return out


def make_batch(x: Tensor, y: Tensor, loss: str, n_outputs: int,
               weight: Tensor | None = None) -> Batch:
    """Transpose and pad one step's samples.

    Args:
        x: (b, d) or (K, b, d); y: labels (b,) or (K, b) for cross-entropy, targets (b, C) or
            (K, b, C) for mse; n_outputs: C.
        weight: per-sample loss weights (K, b); default 1/b for every sample.
    """
    b = x.shape[-2]
    m = padded_columns(b)
    if loss == "cross_entropy":
        target = F.one_hot(y, n_outputs).to(x.dtype).transpose(-1, -2)  # (…, C, b)
    else:
        target = y.transpose(-1, -2)
    if weight is None:
        weight = torch.full((1, b), 1 / b, dtype=x.dtype, device=x.device)
    return Batch(_pad_last(x.transpose(-1, -2), m), _pad_last(target, m), _pad_last(weight, m))


class Workspace(dict):
    """Buffers of one training run, reused every step.

    Allocating the (K, width, m) activations afresh every step made the kernel map and zero
    millions of new pages per run (up to a third of the run time in system time on two
    cores); with one buffer per role the pass allocates only small per-step tensors.
    """

    def buffer(self, key: tuple, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """The buffer ``key`` of ``shape`` (re)allocated like ``like`` when it changes."""
        t = self.get(key)
        if t is None or t.shape != shape or t.dtype != like.dtype or t.device != like.device:
            t = self[key] = like.new_empty(shape)
        return t


def _affine(W: Tensor, b: Tensor, h: Tensor, out: Tensor) -> Tensor:
    """out ← W h + b for every model, (K, n_out, m). A shared input h (d, m) makes it one
    product with the stacked weights viewed as a (K·n_out, d) matrix."""
    K, n_out, _ = W.shape
    if h.ndim == 2:
        torch.mm(W.view(K * n_out, -1), h, out=out.view(K * n_out, -1))
    else:
        torch.bmm(W, h, out=out)
    return out.add_(b[:, :, None])


def _weight_grad(delta: Tensor, h: Tensor, out: Tensor) -> Tensor:
    """out ← δ hᵀ for every model, (K, n_out, n_in)."""
    K, n_out, m = delta.shape
    if h.ndim == 2:
        torch.mm(delta.view(K * n_out, m), h.T, out=out.view(K * n_out, -1))
    else:
        torch.bmm(delta, h.transpose(1, 2), out=out)
    return out


def _output_delta_(out: Tensor, batch: Batch, loss: str,
                   need_loss: bool) -> tuple[Tensor, Tensor | None]:
    """Overwrite the outputs (K, C, m) with δ_L = w · ∂ℓ/∂Z_L; also the per-model loss
    Σ_i w_i ℓ_i when ``need_loss``."""
    w = batch.weight[:, None, :]  # (1 or K, 1, m)
    if loss == "cross_entropy":
        logp = torch.log_softmax(out, 1)  # one fused kernel (logsumexp takes eight)
        value = -(batch.target * logp * w).sum((1, 2)) if need_loss else None
        return torch.exp(logp, out=out).sub_(batch.target).mul_(w), value
    diff = out.sub_(batch.target)
    value = (diff * diff * w).sum((1, 2)) if need_loss else None
    return diff.mul_(2 * w), value


@torch.no_grad()
def loss_and_grads(weights: list[Tensor], biases: list[Tensor], activation: Callable,
                   batch: Batch, loss: str, need_loss: bool = True,
                   workspace: Workspace | None = None
                   ) -> tuple[Tensor | None, list[Tensor], list[Tensor]]:
    """Per-model losses (K,) (None unless ``need_loss``) and the gradients of every model's
    loss with respect to its own weights (K, n_out, n_in) and biases (K, n_out), by the
    recursion in the module docstring.

    The gradients live in ``workspace`` (a fresh one by default) and are overwritten by the
    next call with the same workspace.
    """
    ws = Workspace() if workspace is None else workspace
    act_, backward_ = ACTIVATIONS[activation]
    K, m = weights[0].shape[0], batch.xt.shape[-1]
    hs = [batch.xt]
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        z = _affine(W, b, hs[-1], ws.buffer(("h", i), (K, W.shape[1], m), W))
        hs.append(act_(z) if i < len(weights) - 1 else z)  # (K, width, m)
    delta, value = _output_delta_(hs.pop(), batch, loss, need_loss)
    grad_w = [ws.buffer(("gw", i), W.shape, W) for i, W in enumerate(weights)]
    grad_b = [ws.buffer(("gb", i), b.shape, b) for i, b in enumerate(biases)]
    for i in reversed(range(len(weights))):
        _weight_grad(delta, hs[i], grad_w[i])
        torch.sum(delta, -1, out=grad_b[i])
        if i > 0:
            prev = ws.buffer(("delta", i - 1), hs[i].shape, delta)
            delta = backward_(torch.bmm(weights[i].transpose(1, 2), delta, out=prev), hs[i])
    return value, grad_w, grad_b
