"""Signal and infinitesimal noise through random deep networks: sensitivity and effective rank.

A random network maps a batch of inputs x (the *signal*) and, to first order, an infinitesimal
perturbation dx of each input (the *noise*): dx^l = J^l dx^0, with J^l the Jacobian of layer l.
Following Labatie (2019, ICML, arXiv:1811.03087) we track, layer by layer,

* μ₂(x^l) = mean over inputs and units of (x^l − E_x[x^l])², the centred second moment;
* μ₂(dx^l) = mean of (dx^l)² (the noise is centred by symmetry);
* the normalised sensitivity χ_l = ((μ₂(dx^l)/μ₂(x^l)) / (μ₂(dx^0)/μ₂(x^0)))^{1/2}, the growth
  of the noise-to-signal ratio;
* the effective rank r_eff(x^l) = Tr C / λ_max(C) of the signal's covariance C over inputs.

Batch normalisation centres and rescales the signal with statistics over the batch of inputs;
an infinitesimal noise on one input does not move those statistics, so for the noise batch norm
is the fixed rescaling dx ↦ dx / σ (per unit). Architectures (fully connected, He
initialisation W ~ N(0, 2/fan-in), no biases):

* ``"vanilla"``: x^{l+1} = ReLU(W^l x^l);
* ``"bn_ff"``: x^{l+1} = ReLU(BN(W^l x^l));
* ``"bn_resnet"``: x^{l+1} = x^l + W^{l,2} ReLU(BN(W^{l,1} ReLU(BN(x^l)))) (pre-activation
  residual units; depth counts units).

Introduced in the chapter "Well-behaved vs pathological deep networks"
(book/depth/pathological_networks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from helpers.core.validation import check_choice, check_int, check_real

ARCHITECTURES = ("vanilla", "bn_ff", "bn_resnet")


@dataclass(frozen=True)
class Propagation:
    """Moments of signal and noise at layers l = 0, …, L (arrays of length L + 1).

    Attributes:
        log_mu2_signal: log μ₂(x^l), centred over inputs.
        log_mu2_noise: log μ₂(dx^l) (logs, since the noise may grow like e^{cl}).
        reff_signal: effective rank Tr C / λ_max(C) of the signal covariance.
    """

    log_mu2_signal: np.ndarray
    log_mu2_noise: np.ndarray
    reff_signal: np.ndarray

    @property
    def chi(self) -> np.ndarray:
        """Normalised sensitivity χ_l = exp(½[(log μ₂(dx^l) − log μ₂(x^l)) − (same at l = 0)])."""
        log_ratio = self.log_mu2_noise - self.log_mu2_signal
        return np.exp(0.5 * (log_ratio - log_ratio[0]))


def effective_rank(x: torch.Tensor) -> float:
    """r_eff = Tr C / λ_max(C) for the covariance C of the rows of x (n, N), centred over rows.

    Equals 1 for signals on a line and N for isotropic ones (Labatie 2019).
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, N) with n >= 2, got {tuple(x.shape)}")
    s = torch.linalg.svdvals(x - x.mean(0, keepdim=True)) ** 2  # eigenvalues of n·C
    return float(s.sum() / s.max()) if s.max() > 0 else float("nan")


def _centred_mu2(x: torch.Tensor) -> torch.Tensor:
    return ((x - x.mean(0, keepdim=True)) ** 2).mean()


def _bn(x: torch.Tensor, dx: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch norm over inputs (rows): signal centred and scaled; noise only scaled."""
    mean, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
    scale = (var + eps).rsqrt()
    return (x - mean) * scale, dx * scale


def _relu(x: torch.Tensor, dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clamp_min(0), dx * (x > 0)


def propagate(x: torch.Tensor, architecture: str, depth: int, width: int, *, seed: int = 0,
              eps: float = 1e-5, reff_every: int = 1) -> Propagation:
    """Push the signal x (n, d) and an infinitesimal Gaussian noise through one random network.

    The first layer maps d → width (He initialisation); then ``depth`` layers (or residual
    units) of ``architecture``. The noise is rescaled to unit μ₂ after every layer and its log
    scale accumulated, so it never overflows. ``reff_every`` computes r_eff every that many
    layers and at the last (NaN in between) since the SVD is the costly step.

    Returns:
        :class:`Propagation` with l = 0 the input and l = 1 the first hidden layer, …,
        l = depth + 1.
    """
    check_choice("architecture", architecture, ARCHITECTURES)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, d) with n >= 2, got {tuple(x.shape)}")
    depth, width = check_int("depth", depth, low=1), check_int("width", width, low=1)
    reff_every = check_int("reff_every", reff_every, low=1)
    eps = check_real("eps", eps, low=0.0)
    gen = torch.Generator(device=x.device).manual_seed(seed)

    def linear(fan_in: int) -> torch.Tensor:
        return torch.randn(fan_in, width, generator=gen, dtype=x.dtype,
                           device=x.device) * math.sqrt(2 / fan_in)

    dx = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
    log_scale = 0.0
    log_sig, log_noise, reff = [], [], []

    def record(layer: int, h: torch.Tensor, dh: torch.Tensor) -> torch.Tensor:
        nonlocal log_scale
        mu2 = (dh**2).mean()
        log_scale += float(torch.log(mu2))
        log_sig.append(float(torch.log(_centred_mu2(h))))
        log_noise.append(log_scale)
        keep = layer % reff_every == 0 or layer == depth + 1
        reff.append(effective_rank(h) if keep else float("nan"))
        return dh / mu2.sqrt()

    dx = record(0, x, dx)
    w0 = linear(x.shape[1])
    h, dh = x @ w0, dx @ w0
    h, dh = _bn(h, dh, eps) if architecture == "bn_ff" else (h, dh)
    h, dh = _relu(h, dh) if architecture != "bn_resnet" else (h, dh)
    dh = record(1, h, dh)
    for layer in range(2, depth + 2):
        if architecture == "bn_resnet":
            r, dr = h, dh
            for _ in range(2):
                r, dr = _relu(*_bn(r, dr, eps))
                w = linear(width)
                r, dr = r @ w, dr @ w
            h, dh = h + r, dh + dr
        else:
            w = linear(width)
            h, dh = h @ w, dh @ w
            h, dh = _bn(h, dh, eps) if architecture == "bn_ff" else (h, dh)
            h, dh = _relu(h, dh)
        dh = record(layer, h, dh)
    return Propagation(np.array(log_sig), np.array(log_noise), np.array(reff))


def linear_fit(x, y) -> tuple[float, float, float]:
    """Least-squares line y ≈ a x + b; returns (a, b, R²)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3:
        raise ValueError(f"x and y must be 1-D of equal length >= 3, got {x.shape}, {y.shape}")
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    return float(a), float(b), float(1 - resid @ resid / ((y - y.mean()) @ (y - y.mean())))


def growth_fits(layers, chi) -> dict[str, tuple[float, float]]:
    """Fit χ_l as exponential (log χ linear in l) and as power law (log χ linear in log l).

    Returns ``{"exponential": (rate per layer, R²), "power": (exponent, R²)}``; layers must be
    positive.
    """
    layers, chi = np.asarray(layers, dtype=np.float64), np.asarray(chi, dtype=np.float64)
    if np.any(layers <= 0) or np.any(chi <= 0):
        raise ValueError("layers and chi must be positive")
    rate, _, r2_exp = linear_fit(layers, np.log(chi))
    power, _, r2_pow = linear_fit(np.log(layers), np.log(chi))
    return {"exponential": (rate, r2_exp), "power": (power, r2_pow)}
