"""Deep nets as nuisance models for the average treatment effect: cross-fitted AIPW.

Farrell, Liang and Misra (2021), "Deep Neural Networks for Estimation and Inference", show that
ReLU networks estimate the nuisance functions of a semiparametric problem fast enough for
valid inference on a finite-dimensional parameter. For the average treatment effect
τ = E[μ_1(X) − μ_0(X)] with outcome regressions μ_d(x) = E[Y | X = x, D = d] and propensity
e(x) = P(D = 1 | X = x), the doubly robust (AIPW) score is

    ψ = μ_1(X) − μ_0(X) + D (Y − μ_1(X)) / e(X) − (1 − D) (Y − μ_0(X)) / (1 − e(X)),

and τ̂ = mean ψ with standard error std(ψ)/√n. The score is Neyman-orthogonal, so first-order
errors in the nuisances do not bias τ̂, and with cross-fitting (nuisances fitted on one fold,
evaluated on the other) the product of the nuisance rates only needs to be o(n^{-1/2}).

All R Monte Carlo replications × 2 folds are fitted at once with the batched engine
(:class:`helpers.engine.batched.BatchedMLP`, one model per replication and fold). Introduced in
the chapter
"Deep networks for semiparametric inference".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.stats import norm

from helpers.core.validation import check_int, check_ints
from helpers.engine.batched import BatchedMLP, train_batched

Tensor = torch.Tensor


@dataclass(frozen=True)
class Simulation:
    """R replications of n observations.

    Attributes:
        x: (R, n, p) covariates; d: (R, n) treatment in {0, 1}; y: (R, n) outcome.
        mu0, mu1, e: (R, n) true nuisances at the sample points; ate: the true effect.
    """

    x: Tensor
    d: Tensor
    y: Tensor
    mu0: Tensor
    mu1: Tensor
    e: Tensor
    ate: float


def simulate(R: int, n: int, *, p: int = 5, confounding: float = 1.0, noise: float = 1.0,
             seed: int = 0, device: torch.device | str = "cpu") -> Simulation:
    """Confounded data with a known average treatment effect τ = 1.

    X ~ N(0, I_p); e(x) = 0.1 + 0.8 σ(c (x_1 − 0.5 x_2)) keeps overlap in [0.1, 0.9];
    μ_0(x) = x_1 − 0.5 x_2 + 0.5 tanh(x_3) + 0.25 x_1 x_4 rises with the propensity score;
    τ(x) = 1 + 0.5 x_3 (mean 1); Y = μ_D(X) + noise · N(0, 1). Draws come from a CPU
    generator (the same data on every device) and are moved to ``device``.
    """
    R, n = check_int("R", R, low=1), check_int("n", n, low=4)
    p = check_int("p", p, low=4)
    gen = torch.Generator().manual_seed(seed)  # cpu: the same data on every device
    x = torch.randn(R, n, p, generator=gen, dtype=torch.float64).to(device)
    x1, x2, x3, x4 = x.unbind(-1)[:4]
    e = 0.1 + 0.8 * torch.sigmoid(confounding * (x1 - 0.5 * x2))
    d = (torch.rand(R, n, generator=gen, dtype=torch.float64).to(device) < e).double()
    mu0 = x1 - 0.5 * x2 + 0.5 * torch.tanh(x3) + 0.25 * x1 * x4
    mu1 = mu0 + 1.0 + 0.5 * x3
    eps = torch.randn(R, n, generator=gen, dtype=torch.float64).to(device)
    y = torch.where(d == 1, mu1, mu0) + noise * eps
    return Simulation(x, d, y, mu0, mu1, e, 1.0)


def aipw(y: Tensor, d: Tensor, mu0: Tensor, mu1: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
    """AIPW estimate and influence-function standard error per replication.

    All inputs (R, n). Returns τ̂ = mean ψ and se = std(ψ) / √n, each (R,).
    """
    psi = aipw_scores(y, d, mu0, mu1, e)
    return psi.mean(1), psi.std(1) / y.shape[1] ** 0.5


def aipw_scores(y: Tensor, d: Tensor, mu0: Tensor, mu1: Tensor, e: Tensor) -> Tensor:
    """The scores ψ = μ_1 − μ_0 + D(Y − μ_1)/e − (1 − D)(Y − μ_0)/(1 − e), (R, n), whose row
    means are the AIPW estimates of :func:`aipw`."""
    if not (y.shape == d.shape == mu0.shape == mu1.shape == e.shape) or y.ndim != 2:
        raise ValueError("y, d, mu0, mu1 and e must all have shape (R, n)")
    if ((e <= 0) | (e >= 1)).any():
        raise ValueError("e must lie strictly between 0 and 1")
    return mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)


def difference_in_means(y: Tensor, d: Tensor) -> Tensor:
    """The naive estimate mean(Y | D = 1) − mean(Y | D = 0) per replication, (R,)."""
    return (y * d).sum(1) / d.sum(1) - (y * (1 - d)).sum(1) / (1 - d).sum(1)


def clipped_fraction(e: Tensor, clip: float) -> float:
    """Fraction of propensity estimates sitting at a clipping bound ``clip`` or ``1 − clip``."""
    return ((e <= clip) | (e >= 1 - clip)).double().mean().item()


def coverage(tau_hat: Tensor, se: Tensor, truth: float, level: float = 0.95) -> float:
    """Fraction of intervals τ̂ ± z se (z = Φ⁻¹((1 + level)/2)) that contain the truth."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    z = norm.ppf((1 + level) / 2)
    return ((tau_hat - truth).abs() <= z * se).double().mean().item()


@dataclass(frozen=True)
class NuisanceConfig:
    """Pinned training settings of the nuisance networks (one comment per field).

    Attributes:
        hidden: hidden widths of both ReLU MLPs.
        steps_outcome, steps_propensity: full-batch gradient steps.
        lr_outcome, lr_propensity: step sizes.
        wd_outcome, wd_propensity: weight decay (the propensity net needs it strongly).
        clip: propensity estimates are clipped to [clip, 1 − clip].
    """

    hidden: tuple[int, ...] = (16,)
    steps_outcome: int = 600
    steps_propensity: int = 50
    lr_outcome: float = 0.05
    lr_propensity: float = 0.5
    wd_outcome: float = 1e-3
    wd_propensity: float = 1e-2
    clip: float = 0.01


def grown(n: int, **overrides) -> NuisanceConfig:
    """Nuisance networks that grow with the sample size n, in the shape of Farrell et al.'s rates.

    Their Theorem 1 lets the depth grow like log n and the width like a power of n. Here the
    depth is L(n) = 2 + round(log₂(n/500)/2) (two hidden layers up to n ≈ 1400, three at
    2000, four at 4000) and the width w(n) = round(16 (n/500)^{1/4}) (13 at n = 250, 16 at
    500, 19 at 1000, 23 at 2000): the theorem's shapes with constants a CPU can afford, not
    its constants. ``overrides`` replace other fields of :class:`NuisanceConfig`.
    """
    n = check_int("n", n, low=4)
    depth = max(2, 2 + round(math.log2(n / 500) / 2))
    width = round(16 * (n / 500) ** 0.25)
    return NuisanceConfig(hidden=(width,) * depth, **overrides)


@dataclass(frozen=True)
class SweepPoint:
    """One sample size of :func:`n_sweep`: n, the nuisance settings, per replication the AIPW
    scores ψ̂ (R, n), and the naive estimate (R,), with the true effect. τ̂ and its standard
    error are the row mean of ψ̂ and its sd/√n."""

    n: int
    nuisance: NuisanceConfig
    psi: Tensor
    naive: Tensor
    ate: float

    @property
    def tau(self) -> Tensor:
        """The AIPW estimates τ̂, (R,)."""
        return self.psi.mean(1)

    @property
    def se(self) -> Tensor:
        """The influence-function standard errors sd(ψ̂)/√n, (R,)."""
        return self.psi.std(1) / math.sqrt(self.psi.shape[1])

    def se_ratio(self) -> float:
        """Mean standard error over the sd of τ̂ across replications (→ 1 by the theorem)."""
        return (self.se.mean() / self.tau.std()).item()

    def root_n_sd(self) -> float:
        """√n · sd(τ̂) over the replications."""
        return math.sqrt(self.n) * self.tau.std().item()

    def root_n_rmse(self, estimate: Tensor | None = None) -> float:
        """√n · root mean squared error of τ̂ (or of ``estimate``) about the true effect."""
        est = self.tau if estimate is None else estimate
        return math.sqrt(self.n) * ((est - self.ate) ** 2).mean().sqrt().item()


def efficient_sd(*, n: int = 200_000, seed: int = 0,
                 device: torch.device | str = "cpu") -> float:
    """√Var ψ at the true nuisances, the asymptotic sd of √n(τ̂ − τ), from one large sample."""
    sim = simulate(1, check_int("n", n, low=4), seed=seed, device=device)
    return (aipw(sim.y, sim.d, sim.mu0, sim.mu1, sim.e)[1] * math.sqrt(n)).item()


def n_sweep(ns: list[int], R: int, *, seed: int = 0, device: torch.device | str = "cpu",
            **overrides) -> list[SweepPoint]:
    """Cross-fitted AIPW over R replications at each sample size in ``ns``, with the nuisance
    networks :func:`grown` for each n (simulation seed ``seed + i`` at the i-th size)."""
    ns = check_ints("ns", ns, low=4)
    R = check_int("R", R, low=2)
    points = []
    for i, n in enumerate(ns):
        sim = simulate(R, n, seed=seed + i, device=device)
        conf = grown(n, **overrides)
        psi = aipw_scores(sim.y, sim.d, *cross_fit(sim, conf, seed=seed + i))
        points.append(SweepPoint(n, conf, psi, difference_in_means(sim.y, sim.d), sim.ate))
    return points


def constant_nuisances(sim: Simulation) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-fitted intercept-only nuisances (μ̂_0, μ̂_1, ê), each (R, n): the treated and
    untreated mean outcomes and the treated share of the other fold, ignoring X. Neither
    nuisance converges, so the rate condition of the theorem fails."""
    R, n = sim.y.shape
    if n % 2:
        raise ValueError(f"constant_nuisances needs an even number of observations n, got {n}")
    d, y = sim.d.reshape(R, 2, n // 2), sim.y.reshape(R, 2, n // 2)
    mu1 = (y * d).sum(2) / d.sum(2)
    mu0 = (y * (1 - d)).sum(2) / (1 - d).sum(2)

    def spread(t: Tensor) -> Tensor:  # fold k's value used on the other fold
        return t.flip(1)[..., None].expand(R, 2, n // 2).reshape(R, n)

    return spread(mu0), spread(mu1), spread(d.mean(2))


@dataclass(frozen=True)
class FittedNuisances:
    """The 2R outcome and 2R propensity networks of :func:`fit_nuisances`, one per (replication,
    fold), with the folds' covariates (2R, n/2, p) and the settings they were trained with."""

    outcome: BatchedMLP
    propensity: BatchedMLP
    folds_x: Tensor
    config: NuisanceConfig

    def predict(self, cross: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(μ̂_0, μ̂_1, ê), each (R, n) in data order: model (r, k) predicts on fold 1 − k
        (``cross=True``, cross-fitting) or on the fold k it was fitted on (``cross=False``).
        Propensities are clipped to [clip, 1 − clip]."""
        twoR, half, p = self.folds_x.shape
        xs = self.folds_x.reshape(twoR // 2, 2, half, p)
        test_x = (xs.flip(1) if cross else xs).reshape(twoR, half, p)
        clip = self.config.clip
        with torch.no_grad():
            ones, zeros = torch.ones_like(test_x[..., :1]), torch.zeros_like(test_x[..., :1])
            mu0 = self.outcome(torch.cat([test_x, zeros], -1))[..., 0]  # (2R, half)
            mu1 = self.outcome(torch.cat([test_x, ones], -1))[..., 0]
            e = torch.softmax(self.propensity(test_x), -1)[..., 1].clamp(clip, 1 - clip)

        def back(t: Tensor) -> Tensor:  # predictions of model k (on fold 1−k, or k) → data order
            t = t.reshape(twoR // 2, 2, half)
            return (t.flip(1) if cross else t).reshape(twoR // 2, 2 * half).double()

        return back(mu0), back(mu1), back(e)


def fit_nuisances(sim: Simulation, cfg: NuisanceConfig | None = None, *,
                  seed: int = 0) -> FittedNuisances:
    """Fit the nuisance networks of every replication on each of its two folds.

    Model (r, k) is fitted on fold k of replication r: the outcome net on (X, D) by mean
    squared error (it is read at D = 0 and D = 1), the propensity net as a two-class softmax on
    X. All 2R models of each kind train at once (weights stacked on a model axis).
    """
    cfg = cfg or NuisanceConfig()
    R, n, p = sim.x.shape
    if n % 2:
        raise ValueError(f"cross_fit needs an even number of observations n, got {n}")
    half = n // 2
    train_x = sim.x.reshape(2 * R, half, p).float()
    train_d, train_y = sim.d.reshape(2 * R, half).float(), sim.y.reshape(2 * R, half).float()
    seeds = [seed * 100_003 + k for k in range(2 * R)]
    outcome = BatchedMLP([p + 1, *cfg.hidden, 1], seeds, device=sim.x.device)
    xd = torch.cat([train_x, train_d[..., None]], -1)  # (2R, half, p + 1)
    train_batched(outcome, xd, train_y[..., None], lr=cfg.lr_outcome, steps=cfg.steps_outcome,
                  weight_decay=cfg.wd_outcome, loss="mse")
    propensity = BatchedMLP([p, *cfg.hidden, 2], [s + 1 for s in seeds], device=sim.x.device)
    train_batched(propensity, train_x, train_d.long(), lr=cfg.lr_propensity,
                  steps=cfg.steps_propensity, weight_decay=cfg.wd_propensity)
    return FittedNuisances(outcome, propensity, train_x, cfg)


def cross_fit(sim: Simulation, cfg: NuisanceConfig | None = None, *, seed: int = 0,
              cross: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-fitted nuisance estimates (μ̂_0, μ̂_1, ê), each (R, n), from 2-fold splits.

    Model (r, k) is fitted on fold k of replication r and predicts on the other fold
    (:func:`fit_nuisances`, :meth:`FittedNuisances.predict`). With ``cross=False`` each model
    predicts on the fold it was fitted on (no cross-fitting: the failure case of
    chernozhukov2018double's argument). Propensities are clipped to [clip, 1 − clip]; see
    :func:`clipped_fraction`.
    """
    return fit_nuisances(sim, cfg, seed=seed).predict(cross)
