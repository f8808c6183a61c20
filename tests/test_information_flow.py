"""Tests for helpers.information_flow (chapter "Information flow in noisy networks")."""

import numpy as np
import pytest
import torch

from helpers.topics.information_flow import (
    NoisyTanhNet,
    binned_entropy,
    clustered_centres,
    mixture_mi,
    mixture_mi_stack,
    silhouette,
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


def test_silhouette_matches_scikit_learn_per_run():
    from sklearn.metrics import silhouette_score

    gen = torch.Generator().manual_seed(2)  # cpu: test data
    h = torch.randn(3, 30, 5, generator=gen, dtype=torch.float64)
    y = torch.tensor([0] * 10 + [2] * 19 + [5])  # a gap in the labels and a singleton class
    expected = [silhouette_score(h[r].numpy(), y.numpy()) for r in range(3)]
    np.testing.assert_allclose(silhouette(h, y), expected, atol=1e-8)  # cdist uses matmul
    with pytest.raises(ValueError, match="representation"):
        silhouette(h[0], y)


def test_mixture_mi_stack_matches_single_estimates():
    gen = torch.Generator().manual_seed(3)  # cpu: test data
    c = torch.randn(4, 12, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(4, 12, 8, 3, generator=gen, dtype=torch.float64)
    values, stderrs = mixture_mi_stack(c, 0.5, noise=noise)
    for r in range(4):
        one = mixture_mi(c[r], 0.5, noise=noise[r])
        assert values[r] == pytest.approx(one.value, abs=1e-12)
        assert stderrs[r] == pytest.approx(one.stderr, abs=1e-12)
    # a stack of one with a seed draws what the single estimate draws
    assert mixture_mi_stack(c[:1], 0.5, seed=7)[0][0] == pytest.approx(
        mixture_mi(c[0], 0.5, seed=7).value, abs=1e-12)
    with pytest.raises(ValueError, match="centres"):
        mixture_mi_stack(c[0], 0.5)
    with pytest.raises(ValueError, match="noise"):
        mixture_mi_stack(c, 0.5, noise=noise[:2])


def test_mixture_mi_stack_in_chunks_is_the_stack_in_one_piece(monkeypatch):
    import helpers.topics.information_flow as module

    gen = torch.Generator().manual_seed(5)  # cpu: test data
    c = torch.randn(5, 10, 3, generator=gen, dtype=torch.float64)
    whole = mixture_mi_stack(c, 0.4, seed=2)
    monkeypatch.setattr(module, "_CHUNK_BYTES", 2 * 8 * 10 * 32 * 10 * 3)  # two runs per chunk
    chunked = mixture_mi_stack(c, 0.4, seed=2)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=0, atol=1e-12)


def test_stacked_nets_are_the_single_nets_and_train_independently():
    gen = torch.Generator().manual_seed(4)  # cpu: test data
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(20) % 3
    stack = NoisyTanhNet([4, 6, 5, 3], beta=0.1, seed=10, n_nets=3)
    out, hidden = stack(x, noisy=False)
    assert out.shape == (3, 20, 3) and [h.shape for h in hidden] == [(3, 20, 6), (3, 20, 5)]
    for r in range(3):
        single_out, _ = NoisyTanhNet([4, 6, 5, 3], beta=0.1, seed=10 + r)(x, noisy=False)
        torch.testing.assert_close(out[r], single_out)
    runs = track_training(stack, x, y, steps=6, every=3, n_noise=2, shuffle_seed=0)
    assert runs.shape == (3, 3, 10)  # R runs, steps 0, 3, 6; 8 columns + 2 shuffled silhouettes
    np.testing.assert_array_equal(runs[:, :, 0], [[0, 3, 6]] * 3)
    # the summed loss gives each net its own gradient: its own loss's gradient
    stack = NoisyTanhNet([4, 6, 5, 3], beta=0.1, seed=10, n_nets=3)
    logits = stack(x, noisy=False)[0]
    sum(torch.nn.functional.cross_entropy(z, y) for z in logits).backward()
    single = NoisyTanhNet([4, 6, 5, 3], beta=0.1, seed=11)
    torch.nn.functional.cross_entropy(single(x, noisy=False)[0], y).backward()
    torch.testing.assert_close(stack.weights[0].grad[1], single.weights[0].grad[0])
    with pytest.raises(ValueError, match="n_nets"):
        NoisyTanhNet([4, 6, 3], beta=0.1, n_nets=0)
    with pytest.raises(ValueError, match="widths"):
        NoisyTanhNet([4, 3], beta=0.1)
