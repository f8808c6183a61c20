"""Tests for helpers.encoder_decoder (chapter "encoder-decoder", Ye & Sung 2019)."""

import numpy as np
import pytest
import torch

from helpers.topics.encoder_decoder import (
    EncoderDecoder1d,
    HaarCReLU,
    count_patterns,
    frame_expansion_error,
    haar_filters,
    jacobian_ranks,
    jacobians,
    line_breakpoints,
    line_pattern_counts,
    poly_fit,
)

F64 = torch.float64


def inputs(b, n, seed=0):
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_jacobians_match_finite_differences():
    net = EncoderDecoder1d(16, [4, 4], skips=True, seed=0)
    x = inputs(3, 16)
    jac = jacobians(net, x)
    eps = 1e-6
    with torch.no_grad():
        for j in (0, 7, 15):  # central differences, one column at a time
            e = torch.zeros(16, dtype=F64)
            e[j] = eps
            fd = (net(x + e) - net(x - e)) / (2 * eps)
            assert torch.allclose(jac[:, :, j], fd, atol=1e-7)


def test_frame_expansion_is_exact_without_biases_and_fails_with_them():
    x = inputs(32, 32, seed=1)
    for skips in (False, True):
        assert frame_expansion_error(EncoderDecoder1d(32, [8, 8, 4], skips=skips, seed=2),
                                     x) < 1e-12
    assert frame_expansion_error(EncoderDecoder1d(32, [8, 8, 4], bias=True, seed=2), x) > 1e-3


def test_rank_bounded_by_active_bottleneck_neurons_without_skips():
    net = EncoderDecoder1d(32, [8, 8, 4], seed=3)
    x = inputs(64, 32, seed=3)
    ranks = jacobian_ranks(jacobians(net, x))
    n_enc = sum(c * 32 // 2 ** (i + 1) for i, c in enumerate(net.channels))
    with torch.no_grad():
        active = net.activation_pattern(x)[:, n_enc - net.bottleneck_width:n_enc].sum(1)
    assert net.bottleneck_width == 16 and (ranks <= active).all() and ranks.max() <= 16
    skip_ranks = jacobian_ranks(jacobians(EncoderDecoder1d(32, [8, 8, 4], skips=True, seed=3),
                                          x))
    assert skip_ranks.min() > 16


def test_relu_count_and_pattern_shape():
    net = EncoderDecoder1d(64, [2, 4, 8], seed=0)
    # encoder: 2·32 + 4·16 + 8·8 = 192; decoder (no ReLU at the output): 2·32 + 4·16 = 128
    assert net.n_relu == 320
    assert net.activation_pattern(inputs(5, 64)).shape == (5, 320)


def test_encoder_decoder_bad_input():
    with pytest.raises(ValueError, match="n must"):
        EncoderDecoder1d(30, [4, 4])
    with pytest.raises(TypeError, match="channels"):
        EncoderDecoder1d(32, [])
    with pytest.raises(ValueError, match="channels"):
        EncoderDecoder1d(32, [4, 0])
    with pytest.raises(ValueError, match="x must"):
        EncoderDecoder1d(32, [4])(inputs(2, 16))
    with pytest.raises(ValueError, match="x must"):
        jacobians(EncoderDecoder1d(8, [2]), torch.zeros(8, dtype=F64))


def test_haar_crelu_reconstructs_perfectly_and_plain_relu_does_not():
    h = haar_filters()
    assert torch.allclose(h @ h.T, torch.eye(2, dtype=F64), atol=1e-15)
    x = inputs(20, 32, seed=4)
    net = HaarCReLU(32, 3)
    assert net.encode(x).shape == (20, 64, 4) and (net.encode(x) >= 0).all()
    assert (net(x) - x).abs().max() < 1e-12
    assert (jacobians(net, x) - torch.eye(32, dtype=F64)).abs().max() < 1e-12
    assert (HaarCReLU(32, 3, crelu=False)(x) - x).norm() > 0.1 * x.norm()
    with pytest.raises(ValueError, match="levels"):
        HaarCReLU(32, 0)
    with pytest.raises(ValueError, match="n must"):
        HaarCReLU(12, 3)


def test_line_breakpoints_one_layer_oracle_and_grid_undercounts():
    # one encoder layer = m hyperplanes through the origin; a generic line crosses each once
    net = EncoderDecoder1d(16, [3], seed=5)
    q, _ = torch.linalg.qr(inputs(16, 2, seed=6))
    u, v = q[:, 0], q[:, 1]
    s = line_breakpoints(net, u, v, s_max=1e6)
    assert len(s) - 1 == net.n_relu + 1 == 25
    deep = EncoderDecoder1d(64, [2, 4, 8, 16], seed=7)
    q, _ = torch.linalg.qr(inputs(64, 2, seed=8))
    s = line_breakpoints(deep, q[:, 0], q[:, 1], s_max=100.0)
    mids = (s[1:] + s[:-1]) / 2
    with torch.no_grad():
        exact = count_patterns(deep.activation_pattern(q[:, 0] + mids[:, None] * q[:, 1]))
        grid = torch.linspace(-100, 100, 2000, dtype=F64)
        sampled = count_patterns(deep.activation_pattern(q[:, 0] + grid[:, None] * q[:, 1]))
    assert exact[0] == exact[1] >= sampled[0]  # convex regions: each met once
    assert exact[0] > 1.5 * sampled[0]
    with pytest.raises(ValueError, match="s_max"):
        line_breakpoints(net, u, v, s_max=0.0)


def test_count_patterns_runs_and_distinct():
    p = torch.tensor([[0, 1], [0, 1], [1, 1], [0, 1]], dtype=torch.bool)
    assert count_patterns(p) == (3, 2)
    with pytest.raises(ValueError, match="patterns"):
        count_patterns(torch.zeros(3, dtype=torch.bool))


def test_line_pattern_counts_match_a_single_layer_and_are_distinct():
    # one bias-free layer of N neurons: a generic line through a wide window meets N + 1 regions
    net = EncoderDecoder1d(16, [3], seed=1)
    counts = line_pattern_counts(net, 3, s_max=1e4, seed=0)
    assert counts.tolist() == [net.n_relu + 1] * 3
    deep = EncoderDecoder1d(32, [2, 4, 8], skips=True, seed=2)
    assert (line_pattern_counts(deep, 2, s_max=50.0, seed=1) >= 1).all()


def test_poly_fit_recovers_coefficients_and_standard_errors():
    rng = np.random.default_rng(0)
    x = np.repeat(np.arange(1.0, 7.0), 50)
    coefs = []
    for _ in range(200):
        y = 1.0 + 0.5 * x - 0.1 * x**2 + rng.normal(0, 0.3, x.shape)
        c, se = poly_fit(x, y, 2)
        coefs.append(c)
    coefs = np.array(coefs)
    assert np.allclose(coefs.mean(0), [1.0, 0.5, -0.1], atol=4 * coefs.std(0) / np.sqrt(200))
    assert np.allclose(se, coefs.std(0), rtol=0.25)  # the OLS formula matches the spread
    with pytest.raises(ValueError, match="degree"):
        poly_fit(x[:3], x[:3], 2)
