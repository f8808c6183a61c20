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
from sklearn.metrics import silhouette_score

from helpers.core.validation import check_int, check_positive


def _check_beta(beta: float) -> float:
    return check_positive("beta", beta)


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
        n_noise = check_int("n_noise", n_noise, low=2)
        gen = torch.Generator().manual_seed(seed)  # cpu: the same draws on every device
        noise = torch.randn(N, n_noise, d, generator=gen, dtype=torch.float64).to(c.device)
    elif noise.shape[0] != N or noise.shape[2] != d:
        raise ValueError(f"noise must be ({N}, m, {d}), got {tuple(noise.shape)}")
    noise = noise.to(device=c.device, dtype=torch.float64)
    t = c[:, None, :] + beta * noise  # (N, m, d)
    sq = torch.cdist(t.reshape(-1, d), c).pow(2).view(N, -1, N)  # ‖t − μ_j‖², (N, m, N)
    own = beta**2 * noise.pow(2).sum(-1)  # ‖t − μ_i‖², (N, m)
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
                      seed: int = 0, device: torch.device | str = "cpu"
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class means and unit-scale offsets for N = n_classes · per_class mixture centres.

    Returns ``(means, offsets, labels)`` with means (K, dim) at pairwise distance
    ``separation`` (scaled simplex corners, moved by one common uniform shift in
    [0, separation)^dim so that no mean sits on a bin edge by construction), offsets (N, dim)
    standard normal and labels (N,). Centres at within-class spread s are
    ``means[labels] + s · offsets``.
    """
    n_classes = check_int("n_classes", n_classes, low=1)
    per_class = check_int("per_class", per_class, low=1)
    dim = check_int("dim", dim, low=1)
    if dim < n_classes:
        raise ValueError(f"n_classes must be at most dim, got n_classes={n_classes}, dim={dim}")
    gen = torch.Generator().manual_seed(seed)  # cpu: the same centres on every device
    means = separation / np.sqrt(2) * torch.eye(n_classes, dim, dtype=torch.float64,
                                                device=device)
    shift = torch.rand(dim, generator=gen, dtype=torch.float64)  # cpu: as above
    means = means + separation * shift.to(device)
    offsets = torch.randn(n_classes * per_class, dim, generator=gen,
                          dtype=torch.float64).to(device)  # cpu draw, as above
    labels = torch.arange(n_classes, device=device).repeat_interleave(per_class)
    return means, offsets, labels


class NoisyTanhNet(torch.nn.Module):
    """tanh MLP with Gaussian noise ``β Z`` added to every hidden layer's output.

    ``forward(x, noisy=True)`` returns the logits and the list of hidden representations
    (``noisy=False``: the noise-free centres ``f_l(x)``, used by :func:`mixture_mi`).
    """

    def __init__(self, widths: list[int], beta: float, *, seed: int = 0,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.beta = _check_beta(beta)
        gen = torch.Generator().manual_seed(seed)  # cpu: the same weights on every device
        self.layers = torch.nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            lin = torch.nn.Linear(a, b, dtype=torch.float64, device=device)
            with torch.no_grad():
                w = torch.randn(b, a, generator=gen, dtype=torch.float64)  # cpu: as above
                lin.weight.copy_(w / a**0.5)
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


def track_training(net: NoisyTanhNet, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                   every: int, lr: float = 0.02, n_noise: int = 32,
                   shuffle_seed: int | None = None) -> np.ndarray:
    """Train ``net`` with Adam on cross-entropy (noise on) and record the layers over training.

    Every ``every`` steps (and at step 0 and ``steps``) it records, per hidden layer ℓ,
    ``I(X; T_ℓ)`` (:func:`mixture_mi` of the noise-free centres ``f_ℓ(x_i)`` with the net's β,
    its Monte Carlo standard error) and the silhouette score of ``f_ℓ(x_i)`` with the labels
    ``y`` (scikit-learn), plus the training accuracy. Returns an array (checkpoints, 2 + 3L):
    ``[step, I_1..I_L, stderr_1..stderr_L, silhouette_1..silhouette_L, accuracy]``. The
    noise draws of checkpoint ``k`` use seed ``k`` (goldfeld2019estimating's experiment at toy
    scale; chapter "Information flow in noisy networks"). With ``shuffle_seed`` it appends L
    more columns: the silhouette of each layer with the labels permuted once (a fixed random
    permutation from that seed), a clustering measure blind to the classes.
    """
    steps, every = check_int("steps", steps, low=1), check_int("every", every, low=1)
    opt = torch.optim.Adam(net.parameters(), lr=check_positive("lr", lr))
    labels = y.cpu().numpy()
    shuffled = (None if shuffle_seed is None
                else np.random.default_rng(shuffle_seed).permutation(labels))
    history = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                out, hidden = net(x, noisy=False)
            est = [mixture_mi(h, net.beta, n_noise=n_noise, seed=len(history)) for h in hidden]
            history.append([step] + [e.value for e in est] + [e.stderr for e in est]
                           + [silhouette_score(h.cpu().numpy(), labels) for h in hidden]
                           + [(out.argmax(1) == y).double().mean().item()]
                           + ([] if shuffled is None else
                              [silhouette_score(h.cpu().numpy(), shuffled) for h in hidden]))
        if step < steps:
            loss = torch.nn.functional.cross_entropy(net(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return np.array(history)
