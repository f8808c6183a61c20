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

from helpers.core.validation import check_int, check_ints, check_positive


def _check_beta(beta: float) -> float:
    return check_positive("beta", beta)


@dataclass(frozen=True)
class MIEstimate:
    """Mutual information estimate in nats with its Monte Carlo standard error."""

    value: float
    stderr: float


_CHUNK_BYTES = 2**28  # memory for one chunk of mixture_mi_stack's pairwise terms


def _mixture_terms(c: torch.Tensor, beta: float, noise: torch.Tensor) -> torch.Tensor:
    """Per-draw terms log N − logsumexp_j(−(‖t − μ_j‖² − ‖t − μ_i‖²)/2β²), shape (R, N·m).

    ``c`` (R, N, d) holds R sets of centres, ``noise`` (R, N, m, d) their draws of Z.
    """
    R, N, d = c.shape
    t = c[:, :, None, :] + beta * noise  # (R, N, m, d)
    sq = torch.cdist(t.reshape(R, -1, d), c).pow(2).view(R, N, -1, N)  # ‖t − μ_j‖², (R, N, m, N)
    own = beta**2 * noise.pow(2).sum(-1)  # ‖t − μ_i‖², (R, N, m)
    lse = torch.logsumexp(-(sq - own[..., None]) / (2 * beta**2), dim=-1)  # (R, N, m)
    return (np.log(N) - lse).reshape(R, -1)


def mixture_mi(centres: torch.Tensor, beta: float, *, n_noise: int = 32, seed: int = 0,
               noise: torch.Tensor | None = None) -> MIEstimate:
    """I(X; T) in nats for X uniform on the rows of ``centres`` (N, d) and T = μ_X + β Z.

    ``n_noise`` draws of Z per centre (or a given ``noise`` tensor (N, n_noise, d), for common
    random numbers across calls). Each draw contributes
    ``log N − logsumexp_j(−(‖t − μ_j‖² − ‖t − μ_i‖²)/2β²)``, which lies in [0, log N].
    """
    if centres.ndim != 2:
        raise ValueError(f"centres must be (N, d), got shape {tuple(centres.shape)}")
    if noise is not None:
        N, d = centres.shape
        if noise.ndim != 3 or noise.shape[0] != N or noise.shape[2] != d:
            raise ValueError(f"noise must be ({N}, m, {d}), got {tuple(noise.shape)}")
        noise = noise[None]
    values, stderrs = mixture_mi_stack(centres[None], beta, n_noise=n_noise, seed=seed,
                                       noise=noise)
    return MIEstimate(float(values[0]), float(stderrs[0]))


def mixture_mi_stack(centres: torch.Tensor, beta: float, *, n_noise: int = 32, seed: int = 0,
                     noise: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mixture_mi` of R sets of centres (R, N, d) at once: (values (R,), stderrs (R,)).

    Set r gets its own noise draws (R, N, n_noise, d) from one generator seeded ``seed``, so
    the Monte Carlo errors of different sets are independent; set 0 of a stack of one gets the
    draws :func:`mixture_mi` uses with the same seed.
    """
    beta = _check_beta(beta)
    if centres.ndim != 3:
        raise ValueError(f"centres must be (R, N, d), got shape {tuple(centres.shape)}")
    R, N, d = centres.shape
    c = centres.detach().to(torch.float64)
    if noise is None:
        n_noise = check_int("n_noise", n_noise, low=2)
        gen = torch.Generator().manual_seed(seed)  # cpu: the same draws on every device
        noise = torch.randn(R, N, n_noise, d, generator=gen, dtype=torch.float64)  # cpu: as above
    elif noise.ndim != 4 or noise.shape[:2] != (R, N) or noise.shape[3] != d:
        raise ValueError(f"noise must be ({R}, {N}, m, {d}), got {tuple(noise.shape)}")
    noise = noise.to(device=c.device, dtype=torch.float64)
    per_run = 8 * N * noise.shape[2] * N * 3  # bytes of the (N, m, N) float64 temporaries
    step = max(1, _CHUNK_BYTES // per_run)  # runs per chunk: independent, so chunking is exact
    terms = torch.cat([_mixture_terms(c[i:i + step], beta, noise[i:i + step])
                       for i in range(0, R, step)])
    stderr = terms.std(dim=1) / terms.shape[1] ** 0.5
    return terms.mean(dim=1).cpu().numpy(), stderr.cpu().numpy()


def silhouette(representation: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Mean silhouette (b_i − a_i)/max(a_i, b_i) of R representations (R, N, d) at once.

    a_i is the mean Euclidean distance from point i to the other members of its class, b_i the
    smallest mean distance to another class (Rousseeuw 1987; scikit-learn's
    ``silhouette_score``, which this matches, gives 0 to a point alone in its class).
    Returns (R,). Chapter "Information flow in noisy networks".
    """
    if representation.ndim != 3:
        raise ValueError(f"representation must be (R, N, d), got {tuple(representation.shape)}")
    h = representation.detach().to(torch.float64)
    onehot = torch.nn.functional.one_hot(labels.to(h.device).long()).to(h)  # (N, K)
    dist = torch.cdist(h, h)  # (R, N, N)
    sums = dist @ onehot  # (R, N, K): summed distance from i to each class
    size = onehot.sum(0)  # (K,)
    own = (onehot > 0)  # (N, K)
    a = (sums * onehot).sum(-1) / (size[labels.long()] - 1).clamp(min=1)
    mean_to = torch.where(size > 0, sums / size.clamp(min=1), float("inf"))  # empty classes out
    b = mean_to.masked_fill(own, float("inf")).amin(-1)
    s = (b - a) / torch.maximum(a, b)
    s = torch.where(size[labels.long()] > 1, s, torch.zeros_like(s))
    return s.mean(-1).cpu().numpy()


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
    (``noisy=False``: the noise-free centres ``f_l(x)``, used by :func:`mixture_mi`). With
    ``n_nets = R`` it holds R independent networks as stacked weights (R, out, in), net r drawn
    as the single network of seed ``seed + r``; inputs (N, in) give outputs (R, N, ·). Weights
    are N(0, 1/fan_in), biases zero.
    """

    def __init__(self, widths: list[int], beta: float, *, seed: int = 0,
                 device: torch.device | str = "cpu", n_nets: int | None = None):
        super().__init__()
        self.beta = _check_beta(beta)
        self.n_nets = None if n_nets is None else check_int("n_nets", n_nets, low=1)
        widths = list(check_ints("widths", widths, low=1))
        if len(widths) < 3:
            raise ValueError(f"widths needs input, hidden and output widths, got {widths}")
        gens = [torch.Generator().manual_seed(seed + r)  # cpu: the same weights on every device
                for r in range(self.n_nets or 1)]
        self.weights, self.biases = torch.nn.ParameterList(), torch.nn.ParameterList()
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            w = torch.stack([torch.randn(b, a, generator=g, dtype=torch.float64)  # cpu: as above
                             for g in gens]) / a**0.5
            self.weights.append(torch.nn.Parameter(w.transpose(1, 2).to(device)))  # (R, in, out)
            self.biases.append(torch.nn.Parameter(torch.zeros(len(gens), 1, b, dtype=torch.float64,
                                                              device=device)))

    def forward(self, x: torch.Tensor, noisy: bool = True) -> tuple[torch.Tensor, list]:
        hidden = []
        h = x.expand(len(self.weights[0]), *x.shape)  # (R, N, in)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = torch.tanh(torch.baddbmm(b, h, w))  # (R, N, out)
            if noisy:
                h = h + self.beta * torch.randn_like(h)
            hidden.append(h)
        out = torch.baddbmm(self.biases[-1], h, self.weights[-1])
        if self.n_nets is None:
            return out[0], [t[0] for t in hidden]
        return out, hidden


def track_training(net: NoisyTanhNet, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                   every: int, lr: float = 0.02, n_noise: int = 32,
                   shuffle_seed: int | None = None) -> np.ndarray:
    """Train ``net`` with Adam on cross-entropy (noise on) and record the layers over training.

    Every ``every`` steps (and at step 0 and ``steps``) it records, per hidden layer ℓ,
    ``I(X; T_ℓ)`` (:func:`mixture_mi_stack` of the noise-free centres ``f_ℓ(x_i)`` with the
    net's β, its Monte Carlo standard error) and the silhouette score of ``f_ℓ(x_i)`` with the
    labels ``y`` (:func:`silhouette`), plus the training accuracy. Returns an array
    (checkpoints, 2 + 3L): ``[step, I_1..I_L, stderr_1..stderr_L, silhouette_1..silhouette_L,
    accuracy]``, or (R, checkpoints, ·) for a stack of R networks (the loss is the sum of the
    R networks' losses, and Adam acts elementwise, so the R runs are independent). The noise
    draws of checkpoint ``k`` use seed ``k`` (goldfeld2019estimating's experiment at toy
    scale; chapter "Information flow in noisy networks"). With ``shuffle_seed`` it appends L
    more columns: the silhouette of each layer with the labels permuted once (a fixed random
    permutation from that seed), a clustering measure blind to the classes.
    """
    steps, every = check_int("steps", steps, low=1), check_int("every", every, low=1)
    opt = torch.optim.Adam(net.parameters(), lr=check_positive("lr", lr))
    shuffled = None
    if shuffle_seed is not None:
        gen = torch.Generator().manual_seed(shuffle_seed)  # cpu: the same permutation anywhere
        shuffled = y[torch.randperm(len(y), generator=gen).to(y.device)]  # cpu draw, as above
    history = []
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            with torch.no_grad():
                out, hidden = net(x, noisy=False)
            if net.n_nets is None:
                out, hidden = out[None], [h[None] for h in hidden]
            est = [mixture_mi_stack(h, net.beta, n_noise=n_noise, seed=len(history))
                   for h in hidden]
            columns = ([np.full(len(out), step)] + [e[0] for e in est] + [e[1] for e in est]
                       + [silhouette(h, y) for h in hidden]
                       + [(out.argmax(-1) == y).double().mean(-1).cpu().numpy()]
                       + ([] if shuffled is None else [silhouette(h, shuffled) for h in hidden]))
            history.append(np.stack(columns, axis=-1))  # (R, columns)
        if step < steps:
            logits = net(x)[0]
            logits = logits if net.n_nets is not None else logits[None]
            loss = sum(torch.nn.functional.cross_entropy(z, y) for z in logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
    history = np.stack(history, axis=1)  # (R, checkpoints, columns)
    return history if net.n_nets is not None else history[0]
