"""Information flow in noisy networks: Gaussian-mixture mutual information and binning.

With X uniform on N inputs and a noisy layer ``T = f(X) + β Z``, ``Z ~ N(0, I_d)``, the law of
T is an equal-weight Gaussian mixture with centres ``μ_i = f(x_i)``, and

    I(X; T) = h(T) − h(T | X) = log N − E_{i, Z} log Σ_j exp(−(‖t − μ_j‖² − ‖t − μ_i‖²) / 2β²),

with ``t = μ_i + β Z``. The expectation is estimated by sample propagation (Monte Carlo over
noise draws, a log-sum-exp over centres), in nats. For a deterministic network (β = 0) the
quantity is log N whenever the centres are distinct, whatever their geometry; binning only
tracks clustering when the bins are coarse (Goldfeld et al. 2019, ``goldfeld2019estimating``).
Introduced in the chapter "Information flow in noisy networks".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats


def _check_beta(beta: float) -> float:
    if not isinstance(beta, int | float) or not beta > 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    return float(beta)


@dataclass(frozen=True)
class MIEstimate:
    """Mutual information estimate in nats with its Monte Carlo standard error."""

    value: float
    stderr: float


def mixture_mi(centres: torch.Tensor, beta: float, *, n_noise: int = 32, seed: int = 0,
               noise: torch.Tensor | None = None) -> MIEstimate:
    """I(X; T) in nats for X uniform on the rows of ``centres`` (N, d) and T = μ_X + β Z.

    ``n_noise`` draws of Z per centre (or a given ``noise`` tensor (N, n_noise, d), for common
    random numbers across calls). Each draw contributes
    ``log N − logsumexp_j(−(‖t − μ_j‖² − ‖t − μ_i‖²)/2β²)``, which lies in [0, log N].
    """
    beta = _check_beta(beta)
    if centres.ndim != 2:
        raise ValueError(f"centres must be (N, d), got shape {tuple(centres.shape)}")
    N, d = centres.shape
    c = centres.to(torch.float64)
    if noise is None:
        if n_noise < 2:
            raise ValueError(f"n_noise must be at least 2, got {n_noise}")
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(N, n_noise, d, generator=gen, dtype=torch.float64)
    elif noise.shape[0] != N or noise.shape[2] != d:
        raise ValueError(f"noise must be ({N}, m, {d}), got {tuple(noise.shape)}")
    t = c[:, None, :] + beta * noise.to(torch.float64)  # (N, m, d)
    sq = torch.cdist(t.reshape(-1, d), c).pow(2).view(N, -1, N)  # ‖t − μ_j‖², (N, m, N)
    own = beta**2 * noise.to(torch.float64).pow(2).sum(-1)  # ‖t − μ_i‖², (N, m)
    terms = np.log(N) - torch.logsumexp(-(sq - own[..., None]) / (2 * beta**2), dim=-1)
    terms = terms.flatten()
    return MIEstimate(terms.mean().item(), (terms.std() / terms.numel() ** 0.5).item())


def binned_entropy(representation: torch.Tensor, bin_width: float) -> float:
    """Entropy (nats) of the bin occupied by a deterministic representation, X uniform.

    Each row of ``representation`` (N, d) is mapped to its cell ``floor(t / bin_width)``; the
    entropy of the cell distribution (``scipy.stats.entropy`` of the counts) is what binning
    estimators report as I(X; T).
    """
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    if representation.ndim != 2:
        raise ValueError(f"representation must be (N, d), got {tuple(representation.shape)}")
    cells = np.floor(representation.detach().cpu().double().numpy() / bin_width)
    _, counts = np.unique(cells, axis=0, return_counts=True)
    return float(stats.entropy(counts))


def clustered_centres(n_classes: int, per_class: int, dim: int, *, separation: float = 20.0,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class means and unit-scale offsets for N = n_classes · per_class mixture centres.

    Returns ``(means, offsets, labels)`` with means (K, dim) at pairwise distance
    ``separation`` (scaled simplex corners, moved by one common uniform shift in
    [0, separation)^dim so that no mean sits on a bin edge by construction), offsets (N, dim)
    standard normal and labels (N,). Centres at within-class spread s are
    ``means[labels] + s · offsets``.
    """
    if n_classes < 1 or per_class < 1 or dim < n_classes:
        raise ValueError("need n_classes >= 1, per_class >= 1 and dim >= n_classes")
    gen = torch.Generator().manual_seed(seed)
    means = separation / np.sqrt(2) * torch.eye(n_classes, dim, dtype=torch.float64)
    means = means + separation * torch.rand(dim, generator=gen, dtype=torch.float64)
    offsets = torch.randn(n_classes * per_class, dim, generator=gen, dtype=torch.float64)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return means, offsets, labels


class NoisyTanhNet(torch.nn.Module):
    """tanh MLP with Gaussian noise ``β Z`` added to every hidden layer's output.

    ``forward(x, noisy=True)`` returns the logits and the list of hidden representations
    (``noisy=False``: the noise-free centres ``f_l(x)``, used by :func:`mixture_mi`).
    """

    def __init__(self, widths: list[int], beta: float, *, seed: int = 0):
        super().__init__()
        self.beta = _check_beta(beta)
        gen = torch.Generator().manual_seed(seed)
        self.layers = torch.nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            lin = torch.nn.Linear(a, b, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(b, a, generator=gen, dtype=torch.float64) / a**0.5)
                lin.bias.zero_()
            self.layers.append(lin)

    def forward(self, x: torch.Tensor, noisy: bool = True) -> tuple[torch.Tensor, list]:
        hidden = []
        h = x
        for lin in self.layers[:-1]:
            h = torch.tanh(lin(h))
            if noisy:
                h = h + self.beta * torch.randn_like(h)
            hidden.append(h)
        return self.layers[-1](h), hidden
