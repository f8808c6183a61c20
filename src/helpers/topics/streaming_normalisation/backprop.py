"""Streaming normalisation's training step with its gradients written out by hand.

R feedforward runs train side by side in
:func:`helpers.topics.streaming_normalisation.normalization.train_online`, activations
(R, B, width);
each hidden layer computes h = relu(γ · u + β) with u = N(z) the normalisation of
:mod:`helpers.topics.streaming_normalisation.normalization` and s = σ_p its scale. The
backward pass through N is

    ∂L/∂z = (g − G − H (φ_p(u) − Φ)) / s,

with G, H, Φ the batch means of g, g·u and φ_p(u) (batch norm), their running averages kept in
:class:`helpers.topics.streaming_normalisation.state.StreamState` (streaming norm), or zero
(naive running statistics, or none). Runs of different kinds share one pass through masks. A
unit test checks every kind and p against autograd through
:func:`helpers.topics.streaming_normalisation.normalization.streaming_normalize`.

Introduced in the chapter "Streaming normalisation" (book/depth/streaming_normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.topics.streaming_normalisation.state import StreamState


@dataclass
class NormSpec:
    """How the hidden layers of R feedforward runs normalise, for the hand-written gradient.

    Either every run uses batch statistics (``batch``), or each run uses running statistics
    with its own kind among none / naive / streaming; a mask is None when all runs agree.
    """

    p: float | torch.Tensor  # order of σ_p: one number, or (R, 1, 1) per run
    rate: float  # window α of the running averages
    batch: bool  # batch statistics (every run)
    any_norm: bool  # some run normalises (kind != "none")
    any_stream: bool  # some run uses the streaming backward
    normed: torch.Tensor | None  # (R, 1, 1) bool, run normalises; None: all or none do
    stream: torch.Tensor | None  # (R, 1, 1) bool, streaming backward; None: all or none


def norm_spec(kinds: list[str], p: float | torch.Tensor, rate: float,
               device: torch.device | str) -> NormSpec:
    def mask(keep: list[bool]) -> torch.Tensor | None:
        if all(keep) or not any(keep):
            return None
        return torch.tensor(keep, device=device).view(-1, 1, 1)

    normed, stream = [k != "none" for k in kinds], [k == "streaming" for k in kinds]
    return NormSpec(p, rate, kinds[0] == "batch", any(normed), any(stream), mask(normed),
                     mask(stream))


def _mean_b(t: torch.Tensor) -> torch.Tensor:
    """Mean over the samples of a step, dim 1 (keepdim); with one sample, t itself."""
    return t if t.shape[1] == 1 else t.mean(1, keepdim=True)


def _sum_b(t: torch.Tensor) -> torch.Tensor:
    """Sum over the samples of a step, dim 1 (keepdim); with one sample, t itself."""
    return t if t.shape[1] == 1 else t.sum(1, keepdim=True)


def _abs_pow(d: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """|d|^p (p one number or a per-run tensor)."""
    if isinstance(p, float) and p in (1, 2):
        return d.abs() if p == 1 else d.square()
    return d.abs().pow(p)


def _phi(u: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """φ_p(u) = sign(u)|u|^{p−1}, the derivative of |u|^p / p."""
    if isinstance(p, float) and p in (1, 2):
        return u.sign() if p == 1 else u
    return u.sign() * u.abs().pow(p - 1)


def _outer_sum(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Σ_b h_bᵀ g_b, (R, a, n), the weight gradient; one sample: an outer product (faster)."""
    return h.mT * g if h.shape[1] == 1 else torch.bmm(h.mT, g)


def _fast_norm(z: torch.Tensor, st: StreamState, spec: NormSpec, training: bool,
               eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor | None]:
    """u = N(z) and its scale s as in ``_norm`` (no autograd); updates the running statistics."""
    if not spec.any_norm:
        return z, None
    inv_p = 1 / spec.p
    if spec.batch and training:
        mu = _mean_b(z)
        d = z - mu
        m_p = _mean_b(_abs_pow(d, spec.p))
        st.steps += 1
        st.mu.lerp_(mu, max(spec.rate, 1 / st.steps))
        st.m_p.lerp_(m_p, max(spec.rate, 1 / st.steps))
        s = (m_p + eps).pow(inv_p)
        return d / s, s
    if training:
        st.steps += 1
        a = max(spec.rate, 1.0 / st.steps)
        st.mu.lerp_(_mean_b(z), a)
    d = z - st.mu
    if training:
        st.m_p.lerp_(_mean_b(_abs_pow(d, spec.p)), a)
    s = (st.m_p + eps).pow(inv_p)
    if spec.normed is not None:  # unnormalised runs: u = z exactly, s = 1
        d, s = torch.where(spec.normed, d, z), torch.where(spec.normed, s, 1.0)
    return d / s, s


def fast_forward(params: list[dict[str, torch.Tensor]], states: list[StreamState],
                  x: torch.Tensor, spec: NormSpec, training: bool
                  ) -> tuple[torch.Tensor, list[tuple]]:
    """Logits (R, B, classes) of the feedforward net and, per hidden layer, (h_in, u, s, h)."""
    h, cache = x, []
    for layer, st in zip(params[:-1], states, strict=True):
        u, s = _fast_norm(torch.bmm(h, layer["W"]), st, spec, training)  # (R, B, n)
        out = torch.relu(torch.addcmul(layer["beta"], layer["gamma"], u) if spec.any_norm
                         else u + layer["beta"])
        cache.append((h, u, s, out))
        h = out
    return torch.baddbmm(params[-1]["beta"], h, params[-1]["W"]), cache


def _norm_backward(g: torch.Tensor, u: torch.Tensor, s: torch.Tensor, st: StreamState,
                   spec: NormSpec) -> torch.Tensor:
    """∂L/∂z = (g − G − H(φ_p(u) − Φ))/s: batch means (batch), running ones (streaming), G = H
    = 0 (naive); the state's G, H, Φ are updated as in ``_StreamingBackward``."""
    if spec.batch:
        phi = _phi(u, spec.p)
        return (g - _mean_b(g) - _mean_b(g * u) * (phi - _mean_b(phi))) / s
    if not spec.any_stream:
        return g / s
    st.back_steps += 1
    a = max(spec.rate, 1.0 / st.back_steps)
    phi = _phi(u, spec.p)
    st.G.lerp_(_mean_b(g), a)
    st.H.lerp_(_mean_b(g * u), a)
    st.Phi.lerp_(_mean_b(phi), a)
    dz = g - st.G - st.H * (phi - st.Phi)
    return (dz if spec.stream is None else torch.where(spec.stream, dz, g)) / s


def fast_grads(params: list[dict[str, torch.Tensor]], states: list[StreamState],
                cache: list[tuple], logits: torch.Tensor, onehot: torch.Tensor,
                spec: NormSpec) -> list[dict[str, torch.Tensor]]:
    """Gradients of Σ cross-entropy / B by hand (backpropagation through ``fast_forward``)."""
    g = (torch.softmax(logits, -1) - onehot) / logits.shape[1]  # ∂L/∂logits, (R, B, classes)
    grads = [{"W": _outer_sum(cache[-1][3], g), "beta": _sum_b(g)}]
    dh = torch.bmm(g, params[-1]["W"].mT)
    for i in reversed(range(len(cache))):
        (h_in, u, s, out), layer = cache[i], params[i]
        dy = torch.where(out > 0, dh, 0.0)  # through the ReLU
        gl = {"beta": _sum_b(dy)}
        if spec.any_norm:
            g_gamma = _sum_b(dy * u)
            gl["gamma"] = g_gamma if spec.normed is None else torch.where(spec.normed, g_gamma, 0.0)
            dy = _norm_backward(dy * layer["gamma"], u, s, states[i], spec)
        gl["W"] = _outer_sum(h_in, dy)
        if i:
            dh = torch.bmm(dy, layer["W"].mT)
        grads.append({name: gl[name] for name in layer if name in gl})  # params' order
    return grads[::-1]
