"""Tests for helpers.wide_features (chapter "wide-layers", Nguyen & Hein 2018)."""

import numpy as np
import pytest
import torch

from helpers.topics.wide_layers import (
    WideCNN,
    distinct_digits,
    gauss_newton_top_eigenvalue,
    numerical_rank,
    random_labels,
    readout_fit,
    train_full_gd,
    width_sweep,
)


def test_distinct_digits_are_distinct_standardised_and_seeded():
    x, digit = distinct_digits(200, seed=3)
    assert x.shape == (200, 1, 8, 8) and x.dtype == torch.float64 and digit.shape == (200,)
    flat = x.reshape(200, -1).numpy()
    assert len(np.unique(flat, axis=0)) == 200
    assert torch.equal(x, distinct_digits(200, seed=3)[0])
    assert not torch.equal(x, distinct_digits(200, seed=4)[0])
    full, _ = distinct_digits(1797, seed=0)  # load_digits has no exact duplicates
    assert full.reshape(1797, -1).mean(0).abs().max() < 1e-12


def test_distinct_digits_bad_input():
    with pytest.raises(ValueError, match="n must"):
        distinct_digits(0, seed=0)
    with pytest.raises(ValueError, match="n must"):
        distinct_digits(5000, seed=0)
    with pytest.raises(TypeError, match="n must"):
        distinct_digits(2.5, seed=0)


def test_random_labels_range_and_errors():
    y = random_labels(1000, 10, seed=0)
    assert y.min() >= 0 and y.max() <= 9 and len(torch.unique(y)) == 10
    with pytest.raises(ValueError, match="n_classes"):
        random_labels(10, 1, seed=0)


def test_numerical_rank_against_constructed_matrices():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(30, 7, generator=gen, dtype=torch.float64)
    b = torch.randn(7, 50, generator=gen, dtype=torch.float64)
    assert numerical_rank(a @ b) == 7  # rank-7 product, oracle by construction
    assert numerical_rank(torch.zeros(4, 4)) == 0
    assert numerical_rank(torch.eye(5, dtype=torch.float64)) == 5
    with pytest.raises(ValueError, match="matrix"):
        numerical_rank(torch.zeros(3))
    with pytest.raises(ValueError, match="rtol"):
        numerical_rank(torch.eye(3), rtol=-1.0)


def test_wide_cnn_counts_neurons_and_nests_widths():
    x, _ = distinct_digits(10, seed=0)
    wide, narrow = WideCNN(6, seed=1), WideCNN(6, seed=1)
    assert wide.n_k == 96 and wide.features(x).shape == (10, 96) and wide(x).shape == (10, 10)
    # a network with 3 wide channels = the first 3 channels of the wider one
    with torch.no_grad():
        narrow.body[2].weight[3:] = 0
        f = narrow.features(x)
    assert torch.equal(f[:, :48], wide.features(x)[:, :48])


def test_wide_cnn_bad_input():
    with pytest.raises(ValueError, match="activation"):
        WideCNN(4, activation="gelu")
    with pytest.raises(ValueError, match="wide_channels"):
        WideCNN(0)
    with pytest.raises(ValueError, match="x must"):
        WideCNN(2).features(torch.zeros(3, 64, dtype=torch.float64))


def test_identity_activation_caps_rank_at_input_dimension_plus_one():
    x, _ = distinct_digits(120, seed=0)
    with torch.no_grad():
        f = WideCNN(20, activation="identity", seed=0).features(x)  # 320 affine features
    assert numerical_rank(f) <= 65 < 120


def test_width_sweep_rank_is_min_of_n_and_nk():
    x, _ = distinct_digits(64, seed=2)
    with torch.no_grad():
        f = WideCNN(8, seed=2).features(x)
    sweep = width_sweep(f, [1, 2, 4, 8])
    assert list(sweep["n_k"]) == [16, 32, 64, 128]
    assert list(sweep["rank"]) == [16, 32, 64, 64]
    assert sweep["sigma_ratio_N"][0] == 0 and sweep["sigma_ratio_N"][3] > 1e-12
    with pytest.raises(ValueError, match="widths"):
        width_sweep(f, [9])


def test_readout_fit_interpolates_full_rank_features_only():
    gen = torch.Generator().manual_seed(0)
    labels = random_labels(40, 5, seed=1)
    _, acc, resid = readout_fit(torch.randn(40, 60, generator=gen, dtype=torch.float64),
                                labels, 5)
    assert acc == 1.0 and resid < 1e-10
    _, acc, resid = readout_fit(torch.randn(40, 3, generator=gen, dtype=torch.float64),
                                labels, 5)
    assert acc < 1.0 and resid > 0.1  # three features cannot fit 40 random labels
    with pytest.raises(ValueError, match="labels"):
        readout_fit(torch.zeros(4, 3), labels, 5)


def test_train_full_gd_fits_random_labels_smoke():
    x, _ = distinct_digits(48, seed=0)
    y = random_labels(48, 10, seed=0)
    net = WideCNN(6, seed=0, dtype=torch.float32)  # n_k = 96 ≥ N = 48
    history = train_full_gd(net, x.float(), y, eta=0.5, max_steps=600)
    assert history[-1] == 1.0 and history[0] < 0.5
    with pytest.raises(ValueError, match="eta"):
        train_full_gd(net, x.float(), y, eta=0.0, max_steps=1)


def test_train_full_gd_squared_and_cross_entropy_both_fit_and_reject_unknown_loss():
    x, _ = distinct_digits(24, seed=3)
    y = random_labels(24, 10, seed=4)
    for loss, eta in (("squared", 0.3), ("cross-entropy", 0.5)):
        net = WideCNN(3, seed=5, dtype=torch.float32)
        history = train_full_gd(net, x.float(), y, eta=eta, max_steps=2000, loss=loss)
        assert history[-1] == 1.0, (loss, len(history))
    with pytest.raises(ValueError, match="loss"):
        train_full_gd(net, x.float(), y, eta=0.3, max_steps=1, loss="hinge")


def test_device_arguments_place_data():
    x, digit = distinct_digits(5, seed=0, device="cpu")
    y = random_labels(5, 3, seed=0, device="cpu")
    assert x.device.type == digit.device.type == y.device.type == "cpu"


def test_gauss_newton_top_eigenvalue_matches_the_explicit_jacobian():
    x, _ = distinct_digits(12, seed=1)
    net = WideCNN(2, seed=2)
    params = dict(net.named_parameters())
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (x,)))(params)
    J = torch.cat([j.reshape(12 * 10, -1) for j in jac.values()], 1)
    oracle = torch.linalg.eigvalsh(J.T @ J / 12)[-1].item()  # G = JᵀJ / N, formed explicitly
    assert gauss_newton_top_eigenvalue(net, x, iters=200) == pytest.approx(oracle, rel=1e-6)
    assert gauss_newton_top_eigenvalue(net, x, iters=3) <= oracle * (1 + 1e-9)  # from below
    with pytest.raises(TypeError, match="iters"):
        gauss_newton_top_eigenvalue(net, x, iters=2.5)
