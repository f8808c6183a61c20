"""Part I's full-mode-only code paths, run at a small size.

Each chapter of the part picks larger sizes (and sometimes other arguments) in full mode with
``cfg.pick``; a name or shape error on such a path would only show in a full-mode run. Every
test below runs one such path at the smallest size that still takes it.
"""

import math

import numpy as np
import torch

import helpers.topics.capacity as cp
from helpers.topics import encoder_decoder, linear_regions, negative_weights, wide_layers
from helpers.topics.compositional.experiments import (
    FULL,
    budget_for,
    deep_vs_shallow_study,
    power_law_fit,
)


def test_linear_regions_full_sizes_widest_single_layer():
    """Full mode's widest layer (N = 1024 at depth 1) through count and distance."""
    W, b = linear_regions.he_networks([8, 1024, 1], 2, bias_std=0.5, seed=0)
    gen = torch.Generator().manual_seed(0)
    a, e = torch.randn(2, 8, generator=gen, dtype=torch.float64), torch.randn(
        2, 8, generator=gen, dtype=torch.float64)
    counts = linear_regions.count_regions(W, b, a, e)
    assert bool((counts >= 1).all() and (counts <= 1025).all())  # one layer: ≤ n_1 + 1
    dist = linear_regions.boundary_distance(W, b, torch.randn(2, 4, 8, generator=gen,
                                                              dtype=torch.float64))
    assert dist.shape == (2, 4) and bool((dist > 0).all())


def test_encoder_decoder_full_channel_multiplier_16():
    """The width sweep's full-only channels (32, 64, 128), on a short signal."""
    net = encoder_decoder.EncoderDecoder1d(16, [32, 64, 128], seed=0)
    counts = encoder_decoder.line_pattern_counts(net, 1, s_max=10.0, seed=0)
    assert counts.shape == (1,) and counts[0] >= 1


def test_capacity_full_only_n5_and_architectures():
    """n = 5 enumeration (small weights), Cover's count at n = 5, the full-only architectures."""
    five = cp.threshold_functions(5, 1)
    assert 0 < len(five) <= 94572 and len(np.unique(five)) == len(five)
    assert cp.cover_count(2**5, 6) >= 94572
    assert cp.count_functions((3, 1, 1, 1, 1)) == 104  # a chain adds nothing
    deep = cp.count_functions((3, 2, 2, 1))
    assert 254 <= deep <= 256
    for widths in ((3, 2, 2, 1), (3, 1, 1, 1, 1)):
        assert math.log2(cp.count_functions(widths)) <= cp.cover_upper_bound(widths)
    rng = np.random.default_rng(0)  # the full-only dimension d = 25 of the Cover grid
    assert cp.lp_separable(rng.standard_normal((12, 25)), rng.choice([-1, 1], (3, 12))).all()


def test_compositional_full_budget_and_widths(monkeypatch):
    """Full mode's budget (6 initialisations), its extreme widths 2 and 38, the exponent fit."""
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert budget_for("full").reps == FULL.reps == 6
    study = deep_vs_shallow_study(["product"], curve_h="abs-product", widths=(2, 38), seed=0,
                                  mode="full", device="cpu", steps=2, batch=16, n_test=64)
    curve = study["curves"]["matched"]
    assert curve["relmse_deep"].shape == (2, FULL.reps)
    for w in ("deep", "shallow"):
        alpha, se = power_law_fit(curve[f"params_{w}"], curve[f"relmse_{w}"])
        assert math.isfinite(alpha) and se >= 0


def test_negative_weights_full_sizes_run_in_chunks():
    """Full mode's 128 restarts; more pairs than one chunk go through the chunked count."""
    params = negative_weights.init_mlps([2, 16, 16, 1], 128, nonnegative=True, seed=0)
    x_lo, x_hi = negative_weights.ordered_pairs(1000, 2, seed=0)
    counts = negative_weights.monotonicity_violations(params, x_lo, x_hi, chunk=300)
    assert counts.shape == (128,) and int(counts.sum()) == 0


def test_wide_layers_full_sample_and_width_grid():
    """Full mode's N = 1280 distinct digits; its width step 8 still hits n_k = N/2 and N."""
    x, _ = wide_layers.distinct_digits(1280, seed=0)
    assert x.shape[0] == 1280
    d_max = 2 * 1280 // wide_layers.WideCNN.positions
    widths = list(range(8, d_max + 1, 8))
    assert {640 // wide_layers.WideCNN.positions, 1280 // wide_layers.WideCNN.positions} <= set(
        widths)
