"""Tests for helpers.information_flow (chapter "Information flow in noisy networks")."""

import numpy as np
import pytest
import torch

from helpers.topics.information_flow import (
    NoisyTanhNet,
    binned_entropy,
    clustered_centres,
    mixture_mi,
    track_training,
)


def test_two_centres_in_one_dimension_match_numerical_integration():
    # oracle: I = h(T) − h(T|X) for T ~ ½N(−a, β²) + ½N(a, β²), h(T) by quadrature
    a, beta = 0.8, 1.0
    t = np.linspace(-12, 12, 200_001)
    p = 0.5 * (np.exp(-(t - a) ** 2 / 2) + np.exp(-(t + a) ** 2 / 2)) / np.sqrt(2 * np.pi)
    exact = -np.trapezoid(p * np.log(p), t) - 0.5 * np.log(2 * np.pi * np.e)
    est = mixture_mi(torch.tensor([[-a], [a]]), beta, n_noise=40_000, seed=0)
    assert abs(est.value - exact) < 4 * est.stderr + 1e-3


def test_limits_log_n_and_log_k_and_bounds():
    means, off, lab = clustered_centres(3, 8, 6, seed=1)
    far = mixture_mi(means[lab] + 50 * off, 1.0, seed=0).value
    collapsed = mixture_mi(means[lab], 1.0, seed=0).value
    assert far == pytest.approx(np.log(24), abs=1e-6)
    assert collapsed == pytest.approx(np.log(3), abs=1e-6)
    huge_noise = mixture_mi(means[lab], 1e4, seed=0).value
    assert 0 <= huge_noise < 1e-3


def test_binned_entropy_fine_and_coarse():
    x = torch.tensor([[0.1, 0.1], [0.2, 0.2], [5.1, 5.1], [5.3, 5.2]])
    assert binned_entropy(x, 1e-6) == pytest.approx(np.log(4))
    assert binned_entropy(x, 1.0) == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match="bin_width"):
        binned_entropy(x, 0.0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="beta"):
        mixture_mi(torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="centres"):
        mixture_mi(torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="n_classes"):
        clustered_centres(5, 2, 3)


def test_noisy_tanh_net_noise_free_centres_and_smoke():
    net = NoisyTanhNet([4, 6, 3], beta=0.1, seed=0)
    x = torch.randn(10, 4, dtype=torch.float64)
    out, hidden = net(x, noisy=False)
    assert out.shape == (10, 3) and hidden[0].abs().max() <= 1
    _, noisy = net(x)
    assert 0 < (noisy[0] - hidden[0]).std() < 0.2
    assert 0 <= mixture_mi(hidden[0].detach(), 0.1, seed=0).value <= np.log(10) + 1e-12


def test_track_training_records_every_checkpoint_and_learns():
    gen = torch.Generator().manual_seed(0)  # cpu: test data
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)  # cpu: test data
    y = (x[:, 0] > 0).long()
    net = NoisyTanhNet([4, 6, 6, 2], beta=0.1, seed=0)
    hist = track_training(net, x, y, steps=40, every=15, n_noise=4)
    assert hist.shape == (4, 8)  # steps 0, 15, 30, 40; step + 2 MI + 2 stderr + 2 silhouettes + acc
    np.testing.assert_array_equal(hist[:, 0], [0, 15, 30, 40])
    assert np.all((hist[:, 1:3] >= 0) & (hist[:, 1:3] <= np.log(30) + 1e-9))
    assert np.all(hist[:, 3:5] >= 0)
    assert hist[-1, 7] >= hist[0, 7]
    with pytest.raises(ValueError, match="every"):
        track_training(net, x, y, steps=5, every=0)


def test_coarse_bins_of_collapsed_classes_give_log_k_away_from_edges():
    # K classes collapsed to within 1e-3 of means that sit mid-cell: exactly K occupied cells
    means, off, lab = clustered_centres(4, 32, 10, seed=3)
    width = 2.0
    mid = (torch.floor(means / width) + 0.5) * width  # each mean moved to its cell's centre
    x = mid[lab] + 1e-3 * off
    assert binned_entropy(x, width) == pytest.approx(np.log(4))


def test_track_training_appends_shuffled_silhouettes():
    gen = torch.Generator().manual_seed(0)  # cpu: test data
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(30) % 3
    plain = track_training(NoisyTanhNet([4, 5, 5, 3], beta=0.1, seed=0), x, y, steps=3,
                           every=3, n_noise=2)
    more = track_training(NoisyTanhNet([4, 5, 5, 3], beta=0.1, seed=0), x, y, steps=3,
                          every=3, n_noise=2, shuffle_seed=1)
    assert more.shape == (plain.shape[0], plain.shape[1] + 2)
    # at step 0 (before any noisy training step) the shared columns agree
    assert np.allclose(more[0, :plain.shape[1]], plain[0])
    assert not np.allclose(more[0, -2:], plain[0, 5:7])
