"""Tests for helpers.topics.square_loss (chapter "Square loss: low-rank bias and neural
collapse")."""

import numpy as np
import pytest
import torch

import helpers
from helpers.topics.square_loss import (
    batched_hidden_features,
    class_means,
    conv_toeplitz,
    entropy_rank,
    etf_deviation,
    nc1,
    simplex_etf_gram,
    tail_energy,
    weight_decay_unrolled,
)


def test_entropy_rank_equal_singular_values_and_bounds():
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    W = Q[:, :3] @ Q[:, 3:6].T * 2.5  # three equal singular values
    assert entropy_rank(W) == pytest.approx(3.0, rel=1e-10)
    A = torch.randn(10, 6, generator=gen)
    assert 1.0 <= entropy_rank(A) <= 6.0 + 1e-9
    with pytest.raises(ValueError, match="W"):
        entropy_rank(torch.zeros(3, 3))


def test_nc1_zero_when_collapsed_and_matches_direct_formula():
    gen = torch.Generator().manual_seed(1)
    C, p, n = 4, 6, 200
    means = torch.randn(C, p, generator=gen, dtype=torch.float64)
    y = torch.arange(n) % C
    assert nc1(means[y], y, C) == pytest.approx(0.0, abs=1e-12)
    H = means[y] + 0.3 * torch.randn(n, p, generator=gen, dtype=torch.float64)
    # Oracle: explicit loops over classes and numpy's pinv.
    mu = H.mean(0)
    M = torch.stack([H[y == c].mean(0) for c in range(C)])
    sw = sum(torch.outer(h - M[c], h - M[c]) for h, c in zip(H, y.tolist(), strict=True)) / n
    sb = sum(torch.outer(m - mu, m - mu) for m in M) / C
    expected = torch.trace(sw @ torch.from_numpy(np.linalg.pinv(sb.numpy(), rcond=1e-6)))
    assert nc1(H, y, C) == pytest.approx(float(expected) / C, rel=1e-8)
    with pytest.raises(ValueError, match="y"):
        nc1(H, y + C, C)


def test_etf_deviation_zero_for_simplex_and_positive_otherwise():
    C = 5
    E = simplex_etf_gram(C)
    assert torch.allclose(E.diagonal(), torch.ones(C, dtype=torch.float64))
    assert torch.allclose(E.sum(1), torch.zeros(C, dtype=torch.float64), atol=1e-12)
    # Simplex vertices: centred standard basis vectors, rotated, plus a class-independent shift.
    V = torch.eye(C, dtype=torch.float64) - 1.0 / C
    y = torch.arange(3 * C) % C
    H = V[y] @ torch.linalg.qr(torch.randn(C, C, dtype=torch.float64))[0] + 3.0
    assert etf_deviation(H, y, C) == pytest.approx(0.0, abs=1e-10)
    H_bad = H.clone()
    H_bad[y == 0] *= 2.0
    assert etf_deviation(H_bad, y, C) > 0.05
    M, mu = class_means(H, y, C)
    assert M.shape == (C, C) and mu.shape == (C,)


def test_weight_decay_unrolled_matches_iteration_and_rank_bound():
    gen = torch.Generator().manual_seed(2)
    eta, lam, B = 0.1, 0.05, 3
    W0 = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    W, grads = W0.clone(), []
    for _ in range(20):
        # the gradient of a linear layer on a batch of B samples: a sum of B outer products
        G = torch.randn(7, B, generator=gen, dtype=torch.float64) @ torch.randn(
            B, 9, generator=gen, dtype=torch.float64)
        assert torch.linalg.matrix_rank(G) <= B
        grads.append(G)
        W = (1 - eta * lam) * W - eta * G
    assert torch.allclose(weight_decay_unrolled(W0, grads, eta=eta, lam=lam), W, atol=1e-12)
    with pytest.raises(ValueError, match="eta"):
        weight_decay_unrolled(W0, grads, eta=-1.0, lam=lam)


def test_conv_toeplitz_is_the_convolution_and_norm_identity():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, generator=gen, dtype=torch.float64)
    x = torch.randn(10, generator=gen, dtype=torch.float64)
    T = conv_toeplitz(w, 10)
    conv = torch.nn.functional.conv1d(x[None, None], w[None, None])[0, 0]  # oracle
    assert torch.allclose(T @ x, conv)
    assert T.norm().item() == pytest.approx((T.shape[0] ** 0.5) * w.norm().item(), rel=1e-12)
    with pytest.raises(ValueError, match="n_in"):
        conv_toeplitz(w, 2)


def test_hidden_features_shape_and_type_check():
    m = helpers.BatchedMLP([5, 7, 6, 3], seeds=[0, 1])
    x = torch.randn(4, 5)
    H = batched_hidden_features(m, x)
    assert H.shape == (2, 4, 6) and (H >= 0).all()
    with pytest.raises(TypeError, match="model"):
        batched_hidden_features(helpers.MLP([5, 3]), x)


def test_smoke_weight_decay_lowers_rank_on_digits():
    d = helpers.digits(seed=0)
    x, y = d.x_train[:300], d.y_train[:300]
    Y = torch.nn.functional.one_hot(y, 10).float()
    m = helpers.BatchedMLP([64, 32, 32, 10], seeds=[0, 0])
    helpers.train_batched(m, x, Y, lr=0.1, steps=1500, weight_decay=[0.0, 0.03], loss="mse",
                          batch_size=32)
    r0, r1 = (entropy_rank(m.weights[1][k]) for k in range(2))
    assert r1 < r0


def test_tail_energy_zero_at_rank_k_and_matches_svd_oracle():
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(12, 3, generator=gen, dtype=torch.float64) @ torch.randn(
        3, 9, generator=gen, dtype=torch.float64)  # rank 3
    assert tail_energy(A, 3) == pytest.approx(0.0, abs=1e-20)
    assert tail_energy(A, 2) > 0
    B = torch.randn(12, 9, generator=gen, dtype=torch.float64)
    s = np.linalg.svd(B.numpy(), compute_uv=False)  # oracle: numpy's SVD
    assert tail_energy(B, 4) == pytest.approx(float((s[4:] ** 2).sum() / (s ** 2).sum()), rel=1e-10)
    assert tail_energy(B, 0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k"):
        tail_energy(B, 10)
    with pytest.raises(ValueError, match="W"):
        tail_energy(torch.zeros(3), 1)


def test_simplex_gram_follows_the_device_asked_for():
    E = simplex_etf_gram(4, device="cpu")
    assert E.device.type == "cpu" and torch.linalg.eigvalsh(E)[0].abs() < 1e-12
    with pytest.raises(ValueError, match="n_classes"):
        simplex_etf_gram(1)


def test_smoke_batch_size_sweep_as_in_full_mode():
    # full mode trains one model per batch size in one run (sizes up to 1024 of 1258 samples)
    d = helpers.digits(seed=0)
    x, y = d.x_train, d.y_train
    Y = torch.nn.functional.one_hot(y, 10).float()
    m = helpers.BatchedMLP([64, 16, 16, 10], seeds=[0, 0, 0])
    helpers.train_batched(m, x, Y, lr=0.1, steps=50, weight_decay=0.01, loss="mse",
                          batch_size=[8, 256, 1024])
    ranks = [entropy_rank(W) for W in m.weights[1]]
    assert all(1.0 <= r <= 16.0 for r in ranks)
