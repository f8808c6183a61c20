"""Signal/noise propagation: the noise is the network's Jacobian, moments and fits are right."""

import math

import numpy as np
import pytest
import torch

from helpers.topics import pathological_networks as prop


def test_effective_rank_oracles():
    gen = torch.Generator().manual_seed(0)
    line = torch.randn(50, 1, generator=gen, dtype=torch.float64) * torch.randn(1, 8, generator=gen,
                                                                                dtype=torch.float64)
    assert prop.effective_rank(line + 3.0) == pytest.approx(1.0)  # centring removes the offset
    diag = torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))
    pts = torch.cat([diag, -diag])  # centred, covariance ∝ diag(9, 4, 1)
    assert prop.effective_rank(pts) == pytest.approx(14 / 9)
    iso = torch.randn(20_000, 10, generator=gen, dtype=torch.float64)
    assert prop.effective_rank(iso) == pytest.approx(10 / (1 + math.sqrt(10 / 20_000)) ** 2,
                                                     rel=0.02)


def _reference_network(x, architecture, depth, width, seed):
    """The same random network as `propagate`, as a plain function (weights drawn identically).

    Batch norm uses statistics of its input *detached*, so forward-mode autodiff treats them
    as constants: the frozen-statistics noise model of the chapter.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.randn(x.shape, generator=gen, dtype=x.dtype)  # the noise is drawn first

    def lin(fan_in):
        return torch.randn(fan_in, width, generator=gen, dtype=x.dtype) * math.sqrt(2 / fan_in)

    n_hidden = depth * (2 if architecture == "bn_resnet" else 1)
    weights = [lin(x.shape[1])] + [lin(width) for _ in range(n_hidden)]

    def bn(h):
        mean, var = h.mean(0).detach(), h.var(0, unbiased=False).detach()
        return (h - mean) / (var + 1e-5).sqrt()

    def net(inp):
        h = inp @ weights[0]
        if architecture == "bn_ff":
            h = bn(h)
        if architecture != "bn_resnet":
            h = torch.relu(h)
        k = 1
        for _ in range(depth):
            if architecture == "bn_resnet":
                r = h
                for _ in range(2):
                    r = torch.relu(bn(r)) @ weights[k]
                    k += 1
                h = h + r
            else:
                h = h @ weights[k]
                k += 1
                h = torch.relu(bn(h) if architecture == "bn_ff" else h)
        return h

    return net


@pytest.mark.parametrize("architecture", prop.ARCHITECTURES)
def test_noise_is_the_jacobian_with_frozen_statistics(architecture):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    depth, width, seed = 4, 16, 11
    net = _reference_network(x, architecture, depth, width, seed)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    signal, jvp = torch.func.jvp(net, (x,), (noise,))
    run = prop.propagate(x, architecture, depth, width, seed=seed)
    mu2_signal = ((signal - signal.mean(0)) ** 2).mean().item()
    assert run.log_mu2_signal[-1] == pytest.approx(math.log(mu2_signal), abs=1e-10)
    assert run.log_mu2_noise[-1] == pytest.approx(math.log((jvp**2).mean().item()), abs=1e-9)
    ratio0 = (noise**2).mean().item() / ((x - x.mean(0)) ** 2).mean().item()
    chi = math.sqrt((jvp**2).mean().item() / mu2_signal / ratio0)
    assert run.chi[-1] == pytest.approx(chi, rel=1e-9)


def test_chi_is_one_for_a_linear_isometry():
    # For the input layer itself χ_0 = 1 by definition, and scaling noise does not change χ.
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    run = prop.propagate(x, "vanilla", 2, 8, seed=0)
    assert run.chi[0] == pytest.approx(1.0)
    assert np.all(np.isfinite(run.chi)) and len(run.chi) == 4


def test_bn_feedforward_explodes_and_resnet_does_not():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(128, 20, generator=gen) @ torch.randn(20, 20, generator=gen)  # correlated
    x = (x - x.mean(0)) / x.std(0)  # unit scale, as for the standardised digits: the power
    # law χ ∝ (S_1 + s l)^0.58 only shows once s l exceeds the first layer's moment S_1
    layers = np.arange(1, 42)
    ff = prop.propagate(x, "bn_ff", 40, 128, seed=2, reff_every=100)
    res = prop.propagate(x, "bn_resnet", 40, 128, seed=2, reff_every=100)
    rate, r2 = prop.growth_fits(layers, ff.chi[1:])["exponential"]
    assert r2 > 0.99 and 0.15 < rate < 0.23  # ½ log(π/(π − 1)) = 0.19
    fits = prop.growth_fits(layers, res.chi[1:])
    assert fits["power"][1] > fits["exponential"][1] and res.chi[-1] < 20


def test_growth_fits_recover_known_laws():
    layers = np.arange(1, 60)
    assert prop.growth_fits(layers, 2 * np.exp(0.3 * layers))["exponential"] == pytest.approx(
        (0.3, 1.0))
    fits = prop.growth_fits(layers, layers**0.7)
    assert fits["power"] == pytest.approx((0.7, 1.0)) and fits["exponential"][1] < 0.95
    a, b, r2 = prop.linear_fit([0, 1, 2, 3], [1, 3, 5, 7])
    assert (a, b, r2) == pytest.approx((2.0, 1.0, 1.0))


@pytest.mark.parametrize("call,match", [
    (lambda: prop.propagate(torch.zeros(4, 3), "resnet", 2, 4), "architecture"),
    (lambda: prop.propagate(torch.zeros(4), "vanilla", 2, 4), "x must"),
    (lambda: prop.propagate(torch.zeros(4, 3), "vanilla", 0, 4), "depth"),
    (lambda: prop.propagate(torch.zeros(4, 3), "bn_ff", 2, 4, eps=-1.0), "eps"),
    (lambda: prop.effective_rank(torch.zeros(1, 3)), "x must"),
    (lambda: prop.growth_fits([0, 1, 2], [1, 2, 3]), "positive"),
    (lambda: prop.linear_fit([1, 2], [1, 2]), "length"),
])
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_full_mode_depth_and_checks_at_small_width():
    # Full mode propagates 200 layers (512 inputs, width 512); quick mode 100. The chapter's
    # full-size path at width 16: every architecture stays finite over 200 layers (the noise
    # is renormalised, so χ ~ e^{0.19·200} cannot overflow), r_eff is computed every 5
    # layers and at the last, and the fits and the χ_L band of the checks apply.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 64, generator=gen, dtype=torch.float64)
    depth, s = 200, 1 - 1 / math.pi
    layers = np.arange(depth + 2)
    runs = {a: prop.propagate(x, a, depth, 16, seed=1, reff_every=5) for a in prop.ARCHITECTURES}
    for arch, run in runs.items():
        assert run.chi.shape == (depth + 2,) and np.isfinite(run.chi).all(), arch
        keep = ~np.isnan(run.reff_signal)
        assert keep[layers % 10 == 0].all() and keep[-1]
        fits = prop.growth_fits(layers[1:], run.chi[1:])
        assert np.isfinite([v for pair in fits.values() for v in pair]).all()
    assert np.log(runs["bn_ff"].chi[-1]) > 10  # exponential: e^{κ L} with κ ≈ 0.19 at L = 200
    S0 = math.exp(runs["bn_resnet"].log_mu2_signal[1])
    log_chi_pred = (1 / s**2 - 1) / 2 * math.log((S0 + s * depth) / S0)
    assert 0 < log_chi_pred < np.log(runs["bn_ff"].chi[-1])
