"""Encoder–decoder CNNs as data-dependent frame expansions (Ye & Sung 2019).

A bias-free ReLU network is positively homogeneous, f(αx) = αf(x) for α > 0, and piecewise
linear, so Euler's identity gives f(x) = J(x) x with J(x) = ∂f/∂x constant on each activation
region. For an encoder–decoder, J(x) = B̃(x) B(x)ᵀ factors through the bottleneck: the
encoder's rows B(x)ᵀ and the decoder's columns B̃(x) form a *combinatorial convolution frame*
selected by the ReLU activation pattern of x, so rank J(x) is at most the number of bottleneck
neurons; skip connections add terms that bypass the bottleneck and raise the rank. Filters
paired with their negatives (CReLU: ReLU(t) − ReLU(−t) = t) turn an orthogonal wavelet (Haar)
into a ReLU network with perfect reconstruction. Each distinct activation pattern is one linear
representation, at most 2^(number of ReLU neurons) of them (Ye & Sung, "Understanding Geometry
of Encoder-Decoder CNNs", ICML 2019).

Introduced in the chapter "Geometry of encoder–decoder CNNs" (``encoder-decoder``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import jacfwd, vmap

from helpers.core.validation import check_int, check_ints, check_positive


class EncoderDecoder1d(nn.Module):
    """Bias-free ReLU encoder–decoder for 1-D signals of length ``n``.

    Encoder level l (l = 1..L): e_l = ReLU(conv_l(e_{l−1})), a kernel-4, stride-2 convolution
    with ``channels[l−1]`` filters that halves the length (e_0 = x, one channel). The bottleneck
    e_L has r = channels[−1] · n / 2^L neurons. Decoder: d_L = e_L and
    d_{l−1} = ReLU(deconv_l(d_l) + skip_l(e_{l−1})) with transposed convolutions, the ReLU
    omitted at the output d_0 = f(x); ``skips=True`` adds the 1×1 convolutions skip_l (a
    U-Net's concatenate-then-convolve, written as a sum), ``skips=False`` leaves them out.
    ``bias=True`` adds biases everywhere (breaking homogeneity). Default PyTorch
    initialisation drawn from ``seed``.
    """

    def __init__(self, n: int, channels: Sequence[int], *, skips: bool = False,
                 bias: bool = False, dtype: torch.dtype = torch.float64, seed: int = 0):
        super().__init__()
        channels = check_ints("channels", list(channels), low=1)
        levels = len(channels)
        if check_int("n", n, low=2**levels) % 2**levels:
            raise ValueError(f"n must be a positive multiple of 2**len(channels) = "
                             f"{2**levels}, got {n!r}")
        c = [1, *channels]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.enc = nn.ModuleList(nn.Conv1d(c[i], c[i + 1], 4, stride=2, padding=1,
                                               bias=bias, dtype=dtype) for i in range(levels))
            self.dec = nn.ModuleList(nn.ConvTranspose1d(c[i + 1], c[i], 4, stride=2, padding=1,
                                                        bias=bias, dtype=dtype)
                                     for i in range(levels))
            self.skip = nn.ModuleList(nn.Conv1d(c[i], c[i], 1, bias=bias, dtype=dtype)
                                      for i in range(levels)) if skips else None
        self.n, self.channels, self.skips = n, channels, skips
        self.bottleneck_width = channels[-1] * n // 2**levels
        #: The number of ReLU neurons (every encoder layer, every decoder layer but the output).
        self.n_relu = sum(ch * n // 2**(i + 1) for i, ch in enumerate(channels)) + sum(
            ch * n // 2**(i + 1) for i, ch in enumerate(channels[:-1]))

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.shape[-1] != self.n:
            raise ValueError(f"x must end in length n = {self.n}, got shape {tuple(x.shape)}")
        h = x.reshape(-1, 1, self.n)  # (B, 1, n)
        pre, enc = [], [h]
        for conv in self.enc:
            z = conv(h)
            pre.append(z)
            h = torch.relu(z)
            enc.append(h)
        for i in reversed(range(len(self.dec))):
            z = self.dec[i](h)
            if self.skip is not None:
                z = z + self.skip[i](enc[i])
            if i > 0:
                pre.append(z)
                h = torch.relu(z)
            else:
                h = z
        return h.reshape(x.shape), pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., n) -> (..., n)
        return self._run(x)[0]

    def activation_pattern(self, x: torch.Tensor) -> torch.Tensor:
        """The on/off state of every ReLU neuron, shape (B, n_relu) bool, for x of shape (B, n)."""
        _, pre = self._run(x)
        return torch.cat([z.reshape(z.shape[0], -1) > 0 for z in pre], dim=1)


def jacobians(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """J(x_b) = ∂f/∂x at each row of x (B, n), by ``torch.func.vmap(jacfwd(f))``: (B, n, n).

    Forward mode pushes the n basis tangents e_j through the network, J(x) e_j = jvp; for the
    square Jacobians here it costs the same as reverse mode, but the batched convolutions of
    its tangents stay one large product, whereas the vmapped convolution backward of
    ``jacrev`` splits into per-sample kernels (about 30 times slower on two CPU threads).
    Detached from the parameters' autograd graph (the Jacobian is data, not a loss).
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (B, n), got {tuple(x.shape)}")
    return vmap(jacfwd(f))(x).detach()


def frame_expansion_error(f: nn.Module, x: torch.Tensor) -> float:
    """max_b ‖f(x_b) − J(x_b) x_b‖ / ‖x_b‖: zero for a positively homogeneous ReLU net.

    Divided by ‖x‖, not ‖f(x)‖, because f(x) = 0 when every bottleneck neuron is off.
    """
    jac = jacobians(f, x)
    with torch.no_grad():
        fx = f(x)
    resid = fx - torch.einsum("bij,bj->bi", jac, x)
    return (resid.norm(dim=1) / x.norm(dim=1)).max().item()


def jacobian_ranks(jac: torch.Tensor) -> torch.Tensor:
    """Numerical ranks of a batch of matrices (B, m, n), LAPACK's default tolerance."""
    return torch.linalg.matrix_rank(jac)


def haar_filters(dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """The orthonormal Haar analysis pair [(1, 1), (1, −1)] / √2, shape (2, 2), H Hᵀ = I."""
    return torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=dtype, device=device) / math.sqrt(2)


class HaarCReLU(nn.Module):
    """A ReLU encoder–decoder with perfect reconstruction: Haar wavelet-packet levels + CReLU.

    Encoder level: every channel is split by the Haar pair (stride 2), then
    u ↦ (ReLU(u), ReLU(−u)) doubles the channels; decoder level: (p, q) ↦ p − q = u, then the
    transposed Haar filters (the synthesis side of an orthonormal basis) undo the split.
    So f(x) = x exactly, and J(x) = I, although every encoder neuron is a ReLU. With
    ``crelu=False`` the negative parts are dropped (plain ReLU), and reconstruction fails.
    """

    def __init__(self, n: int, levels: int, *, crelu: bool = True,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        levels = check_int("levels", levels, low=1)
        if check_int("n", n, low=2**levels) % 2**levels:
            raise ValueError(f"n must be a positive multiple of 2**levels = {2**levels}, "
                             f"got {n!r}")
        self.n, self.levels, self.crelu = n, levels, crelu
        self.register_buffer("h", haar_filters(dtype).reshape(2, 1, 2))  # (out, in/groups, k)

    def _split(self, u: torch.Tensor) -> torch.Tensor:  # (B, C, m) -> (B, 2C, m/2)
        c = u.shape[1]
        return nn.functional.conv1d(u, self.h.repeat(c, 1, 1), stride=2, groups=c)

    def _merge(self, v: torch.Tensor) -> torch.Tensor:  # (B, 2C, m/2) -> (B, C, m)
        c = v.shape[1] // 2
        return nn.functional.conv_transpose1d(v, self.h.repeat(c, 1, 1), stride=2, groups=c)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck code (B, 4^L, n/2^L), all entries ≥ 0."""
        u = x.reshape(-1, 1, self.n)
        for _ in range(self.levels):
            u = self._split(u)
            u = torch.cat([torch.relu(u), torch.relu(-u)], 1) if self.crelu else torch.relu(u)
        return u

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode` when ``crelu`` (the decoder is linear), shape (B, n)."""
        v = code
        for _ in range(self.levels):
            if self.crelu:
                half = v.shape[1] // 2
                v = v[:, :half] - v[:, half:]
            v = self._merge(v)
        return v.reshape(-1, self.n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., n) -> (..., n)
        return self.decode(self.encode(x)).reshape(x.shape)


def line_breakpoints(net: EncoderDecoder1d, u: torch.Tensor, v: torch.Tensor, *,
                     s_max: float) -> torch.Tensor:
    """Exact breakpoints of the activation pattern along x(s) = u + s v, s ∈ [−s_max, s_max].

    Layers are processed in computation order. Between consecutive breakpoints found so far
    every earlier ReLU is fixed, so the next layer's pre-activations are *linear* in s there:
    each sign change between two consecutive points is one crossing, located exactly by linear
    interpolation. Returns the sorted breakpoints including both ends, so the line meets
    ``len(result) − 1`` activation regions. Sampling a grid can only undercount them.
    """
    if u.shape != (net.n,) or v.shape != (net.n,):
        raise ValueError(f"u and v must have shape ({net.n},), got {tuple(u.shape)}, "
                         f"{tuple(v.shape)}")
    s_max = check_positive("s_max", s_max)
    s = torch.tensor([-s_max, s_max], dtype=u.dtype, device=u.device)
    n_layers = len(net.enc) + len(net.dec) - 1
    with torch.no_grad():
        for layer in range(n_layers):
            z = net._run(u + s[:, None] * v)[1][layer].reshape(len(s), -1)  # (k, neurons)
            za, zb = z[:-1], z[1:]
            cross = za * zb < 0
            frac = za / torch.where(cross, za - zb, torch.ones_like(za))
            new = (s[:-1, None] + frac * (s[1:] - s[:-1])[:, None])[cross]
            s = torch.unique(torch.cat([s, new]))  # sorted
    return s


def count_patterns(patterns: torch.Tensor) -> tuple[int, int]:
    """For patterns (k, m) at consecutive points of a curve: (pieces, distinct patterns).

    ``pieces`` counts the maximal runs of equal consecutive rows; ``distinct`` counts different
    rows. A line meets each (convex) activation region at most once, so along a line the two
    agree; sampled points can only miss pieces.
    """
    if patterns.dim() != 2 or patterns.shape[0] < 1:
        raise ValueError(f"patterns must be (k ≥ 1, m), got {tuple(patterns.shape)}")
    changes = int((patterns[1:] != patterns[:-1]).any(1).sum())
    return changes + 1, int(torch.unique(patterns, dim=0).shape[0])


def line_pattern_counts(net: EncoderDecoder1d, n_lines: int, *, s_max: float, seed: int
                        ) -> np.ndarray:
    """Exact numbers of activation regions met by ``n_lines`` random lines u + s v, |s| ≤ s_max.

    (u, v) is an orthonormal pair (QR of a Gaussian n × 2 matrix, drawn on the CPU from
    ``seed`` so every device sees the same lines), placed on the network's device. Each count
    is checked to be a count of *distinct* patterns: a line meets a convex region once.

    Returns:
        Integer array (n_lines,).
    """
    n_lines = check_int("n_lines", n_lines, low=1)
    param = next(net.parameters())
    gen = torch.Generator().manual_seed(seed)  # cpu: same lines on every device
    counts = []
    for _ in range(n_lines):
        g = torch.randn(net.n, 2, generator=gen, dtype=torch.float64)  # cpu: see above
        q, _ = torch.linalg.qr(g.to(device=param.device, dtype=param.dtype))
        s = line_breakpoints(net, q[:, 0], q[:, 1], s_max=s_max)
        with torch.no_grad():
            patterns = net.activation_pattern(q[:, 0] + ((s[1:] + s[:-1]) / 2)[:, None] * q[:, 1])
        pieces, distinct = count_patterns(patterns)
        if pieces != distinct:
            raise RuntimeError(f"a line met an activation region twice ({pieces} pieces, "
                               f"{distinct} patterns): the breakpoints are wrong")
        counts.append(pieces)
    return np.asarray(counts)


def poly_fit(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares polynomial y ≈ Σ_k c_k x^k (k = 0..degree) and the standard errors of c.

    The errors are the usual OLS ones, sqrt(diag(s² (AᵀA)⁻¹)) with s² = ‖residual‖²/(m − degree
    − 1), valid for independent noise of equal variance (m points).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    degree = check_int("degree", degree, low=0)
    if x.shape != y.shape or x.ndim != 1 or len(x) <= degree + 1:
        raise ValueError(f"x and y must be 1-D of equal length > degree + 1, got {x.shape}, "
                         f"{y.shape}")
    a = np.vander(x, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    s2 = resid @ resid / (len(y) - degree - 1)
    return coef, np.sqrt(np.diag(s2 * np.linalg.inv(a.T @ a)))
