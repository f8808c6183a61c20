"""Low rank and neural collapse under the square loss with weight decay.

Measurements for the chapter "Square loss: low-rank bias and neural collapse", after Xu,
Rangamani, Liao, Galanti & Poggio (2023), *Dynamics in deep classifiers trained with the square
loss*, and Galanti, Siegel, Gupte & Poggio (2022), *SGD and weight decay secretly minimize
the rank of your neural network*:

- :func:`entropy_rank`, the effective rank ``exp(H(p))`` of a matrix, with ``p_i = s_i / Σ s_j``
  its normalised singular values (Roy & Vetterli 2007);
- :func:`tail_energy`, the fraction ``Σ_{i>k} s_i² / Σ_i s_i²`` of a matrix's squared Frobenius
  norm outside its top k singular directions (0 exactly when its rank is at most k);
- :func:`nc1`, the within-class variability ``NC1 = tr(Σ_W Σ_B⁺) / C`` of features;
- :func:`etf_deviation`, how far the centred class means are from a simplex equiangular tight
  frame (ETF);
- :func:`weight_decay_unrolled`, the closed form
  ``W_T = (1 − ηλ)^T W_0 − η Σ_t (1 − ηλ)^(T−1−t) G_t`` of SGD with weight decay;
- :func:`conv_toeplitz`, the matrix of a stride-1 one-dimensional convolution, whose Frobenius
  norm is ``sqrt(n_out)`` times that of its kernel;
- :func:`batched_hidden_features`, the last hidden layer of a ``BatchedMLP``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from helpers.core.validation import check_int, check_positive, check_real, check_shape
from helpers.engine.batched import BatchedMLP

Tensor = torch.Tensor


def entropy_rank(W: Tensor) -> float:
    """Effective rank ``exp(-Σ p_i log p_i)`` with ``p_i = s_i / Σ_j s_j`` (singular values).

    Equals r for a matrix with r equal non-zero singular values and lies in ``[1, rank W]``
    otherwise (Roy & Vetterli 2007). W: a matrix (m, n), not identically zero.
    """
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise ValueError("W must be a 2-D tensor")
    s = torch.linalg.svdvals(W.detach().to(torch.float64))
    if s.sum() <= 0:
        raise ValueError("W must not be zero")
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def tail_energy(W: Tensor, k: int) -> float:
    """``Σ_{i>k} s_i² / Σ_i s_i²``: the share of ``‖W‖_F²`` outside the top k singular values.

    Zero exactly when ``rank W ≤ k``; for a weight matrix trained with weight decay, Galanti
    et al. (2022) predict it near zero for k of the order of the number of classes. W: (m, n).
    """
    check_shape("W", W, (None, None))
    k = check_int("k", k, low=0, high=min(W.shape))
    s2 = torch.linalg.svdvals(W.detach().to(torch.float64)) ** 2
    if s2.sum() <= 0:
        raise ValueError("W must not be zero")
    return float(s2[k:].sum() / s2.sum())


def _check_features(H: Tensor, y: Tensor, n_classes: int) -> None:
    check_shape("H", H, (None, None))
    check_shape("y", y, (H.shape[0],))
    check_int("n_classes", n_classes, low=2)
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"y must take values in [0, {n_classes}), got range "
                         f"[{int(y.min())}, {int(y.max())}]")


def class_means(H: Tensor, y: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Class means ``μ_c`` (C, p) and global mean ``μ_G`` (p,) of features H (n, p)."""
    _check_features(H, y, n_classes)
    H = H.to(torch.float64)
    onehot = torch.nn.functional.one_hot(y, n_classes).to(H)  # (n, C)
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise ValueError("every class must have at least one sample in y")
    return (onehot.T @ H) / counts[:, None], H.mean(0)


def nc1(H: Tensor, y: Tensor, n_classes: int, *, rtol: float = 1e-6) -> float:
    """``NC1 = tr(Σ_W Σ_B⁺) / C`` (Papyan, Han & Donoho 2020; Xu et al. 2023).

    ``Σ_W = (1/n) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ`` is the within-class covariance and
    ``Σ_B = (1/C) Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ`` the between-class one; ``Σ_B⁺`` is its
    pseudo-inverse with singular values below ``rtol`` times the largest dropped. NC1 is 0
    exactly when every feature equals its class mean.
    """
    M, mu = class_means(H, y, n_classes)
    H = H.to(torch.float64)
    R = H - M[y]  # (n, p)
    sigma_w = R.T @ R / H.shape[0]
    B = M - mu
    sigma_b = B.T @ B / n_classes
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, rtol=rtol)) / n_classes)


def simplex_etf_gram(n_classes: int, *, device: torch.device | str | None = None) -> Tensor:
    """Gram matrix of a unit-norm simplex ETF: ``(C/(C−1)) (I − 11ᵀ/C)``, float64 (C, C)."""
    C = check_int("n_classes", n_classes, low=2)
    return (torch.eye(C, dtype=torch.float64, device=device) - 1.0 / C) * C / (C - 1)


def etf_deviation(H: Tensor, y: Tensor, n_classes: int) -> float:
    """``‖G/‖G‖_F − E/‖E‖_F‖_F`` for the Gram G of centred class means and the simplex ETF E.

    Zero exactly when the centred class means ``μ_c − μ_G`` have equal norms and pairwise
    cosines ``−1/(C−1)``; at most 2.
    """
    M, mu = class_means(H, y, n_classes)
    B = M - mu
    G = B @ B.T
    E = simplex_etf_gram(n_classes, device=G.device)
    return float((G / G.norm() - E / E.norm()).norm())


def batched_hidden_features(model: BatchedMLP, x: Tensor) -> Tensor:
    """The last hidden layer ``h_{L−1}`` of every model, (K, n, widths[-2])."""
    if not isinstance(model, BatchedMLP):
        raise TypeError(f"model must be a BatchedMLP, got {type(model).__name__}")
    h = x.expand(model.n_models, *x.shape) if x.ndim == 2 else x
    with torch.no_grad():
        for W, b in zip(list(model.weights)[:-1], list(model.biases)[:-1], strict=True):
            h = model.activation(torch.baddbmm(b[:, None, :], h, W.transpose(1, 2)))
    return h


def weight_decay_unrolled(W0: Tensor, grads: Sequence[Tensor], *, eta: float,
                          lam: float) -> Tensor:
    """``W_T = (1 − ηλ)^T W_0 − η Σ_{t<T} (1 − ηλ)^(T−1−t) G_t``, the unrolled update
    ``W_{t+1} = (1 − ηλ) W_t − η G_t`` of SGD with weight decay (Galanti et al. 2022)."""
    check_positive("eta", eta)
    check_real("lam", lam, low=0.0)
    T, q = len(grads), 1.0 - eta * lam
    out = q ** T * W0
    for t, G in enumerate(grads):
        out = out - eta * q ** (T - 1 - t) * G
    return out


def conv_toeplitz(w: Tensor, n_in: int) -> Tensor:
    """Matrix T(w) (n_out, n_in) of the stride-1 'valid' 1-D convolution (cross-correlation)
    ``(T(w) x)_i = Σ_j w_j x_{i+j}``, with ``n_out = n_in − k + 1`` for a kernel of length k.

    Every row holds the whole kernel once, so ``‖T(w)‖_F = sqrt(n_out) ‖w‖``.
    """
    check_shape("w", w, (None,))
    k = w.shape[0]
    n_in = check_int("n_in", n_in, low=k)
    n_out = n_in - k + 1
    T = torch.zeros(n_out, n_in, dtype=w.dtype, device=w.device)
    for i in range(n_out):
        T[i, i:i + k] = w
    return T
