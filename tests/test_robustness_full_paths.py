"""Full-mode settings of the robustness chapters, run at toy sizes.

Full mode changes the chapters' sizes and, in places, the structure of what runs (more budgets
or sparsities, several sample sizes, deeper networks, odd bit rates). Each test below runs one
chapter's full-mode structure through its helpers at a size a unit test affords, so that a
name or shape error that quick mode never meets shows up here and not after an hour of full
mode.
"""

import math

import numpy as np
import pytest
import torch

import helpers
from helpers.topics import adversarial_noise, compression, information_flow, semiparametric, zico


def test_adversarial_noise_full_takes_every_correct_point_and_more_noise():
    # full mode asks for 540 points, more than the correctly classified test points: the
    # slice takes them all, and the noise draws grow to 1000 per point
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(30, 5)), rng.normal(size=5)
    y = (x @ w > 0).astype(int)
    predict = lambda a: (a @ w > 0).astype(int)  # noqa: E731
    ok = predict(x) == y
    x0, y0 = x[ok][:540], y[ok][:540]
    assert len(x0) == ok.sum()
    mu = adversarial_noise.noise_error_rate(predict, x0, y0, 1.0, n_noise=1000, seed=1)
    keep = (mu > 0) & (mu < 0.5)
    d = adversarial_noise.isoperimetric_distance(mu[keep], 1.0)
    exact = np.abs(x0[keep] @ w) / np.linalg.norm(w)  # a half-space: the bound is attained
    assert np.median(np.abs(d - exact)) < 0.2


def test_information_flow_full_stack_and_checkpoints():
    # full mode: 32 runs, a checkpoint every 50 steps and 128 noise draws (here 4, 6 and 16)
    gen = torch.Generator().manual_seed(0)  # cpu: test data
    x = torch.randn(24, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(24) % 3
    stack = information_flow.NoisyTanhNet([4, 8, 8, 3], beta=0.1, seed=0, n_nets=4)
    runs = information_flow.track_training(stack, x, y, steps=12, every=6, n_noise=16,
                                           shuffle_seed=0)
    assert runs.shape == (4, 3, 10) and np.isfinite(runs).all()
    fall = runs[:, 0, 2] - runs[:, -1, 2]
    assert fall.shape == (4,)


def test_compression_full_bit_rates_sparsities_and_pipeline_levels():
    data = helpers.digits(seed=0)
    net = helpers.MLP([64, 256, 128, 5], seed=0)  # the chapter's network, untrained
    recs = compression.tradeoff(net, data.x_test[:40], data.y_test[:40], data.x_train[:120],
                                data.y_train[:120], bits=(5, 7),
                                sparsities=(0.3, 0.6, 0.95))
    assert len(recs) == 2 * 2 + 2 * 3 and all(np.isfinite(r["map"]) for r in recs)
    seen = data.y_train < 5
    for sparsity in (0.8, 0.9, 0.95):  # full mode's pipeline levels
        pruned, full = compression.prune_finetune_quantize(
            net, data.x_train[seen][:100], data.y_train[seen][:100], sparsity=sparsity, bits=4,
            steps=2, seed=0)
        assert full.ratio > pruned.ratio > 1


def test_zico_full_budgets_seeds_and_plain_models():
    data = helpers.digits(seed=0)
    budgets = (2, 4, 6)
    res = zico.search_space(data.x_train, data.y_train, data.x_test, data.y_test, depths=(1, 2),
                            widths=(8, 16), cnn_channels=(4,), budgets=budgets, n_seeds=3,
                            plain_seeds=2, seed=1)
    at = res.budgets.index(budgets[-1])  # full mode pins the longest budget
    assert np.array(res.accuracy).shape == np.array(res.accuracy_plain).shape == (5, 3)
    assert len(res.zico_plain) == 5 and at == 2


def test_semiparametric_full_sizes_with_the_main_run_in_the_middle():
    # full mode: the main run (n = 2000) sits between the sweep's sizes 500, 1000 and 4000,
    # whose grown networks reach four hidden layers
    assert semiparametric.grown(4000).hidden == (27,) * 4
    sweep = semiparametric.n_sweep([40, 80, 160], 3, seed=0, steps_outcome=2,
                                   steps_propensity=2)
    sim = semiparametric.simulate(3, 120, seed=5)
    conf = semiparametric.NuisanceConfig(hidden=(27,) * 4, steps_outcome=2, steps_propensity=2)
    psi = semiparametric.aipw_scores(sim.y, sim.d, *semiparametric.cross_fit(sim, conf, seed=0))
    main = semiparametric.SweepPoint(120, conf, psi, sim.y[:, 0], sim.ate)
    points = sorted([main, *sweep], key=lambda pt: pt.n)
    top = points[-2:]
    assert [pt.n for pt in top] == [120, 160]
    for pt in top:
        assert math.isfinite(pt.se_ratio()) and pt.psi[:, :40].mean(1).shape == (3,)
        assert pt.psi.repeat_interleave(4, 1).shape == (3, 4 * pt.n)
    with pytest.raises(ValueError, match="even"):
        semiparametric.cross_fit(semiparametric.simulate(1, 41, seed=0), conf)
