"""Lp statistics, batch/layer/streaming normalisation against autograd, and online training."""

import math

import pytest
import torch

import helpers
from helpers.topics.streaming_normalisation.backprop import fast_forward, fast_grads, norm_spec
from helpers.topics.streaming_normalisation.normalization import (
    StreamState,
    _forward,
    _init_params,
    lp_stats,
    normalize,
    streaming_normalize,
    train_online,
)


def test_lp_stats_match_numpy_style_oracles():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, s2 = lp_stats(x, 0, p=2)
    assert torch.allclose(mu[0], x.mean(0)) and torch.allclose(s2[0], x.std(0, unbiased=False))
    _, s1 = lp_stats(x, 0, p=1)
    assert torch.allclose(s1[0], (x - x.mean(0)).abs().mean(0))


def test_batch_and_layer_normalize_standardise_their_reference_set():
    x = 3 + 2 * torch.randn(40, 6, generator=torch.Generator().manual_seed(1),
                            dtype=torch.float64)
    b, ln = normalize(x, "batch", eps=0), normalize(x, "layer", eps=0)
    assert torch.allclose(b.mean(0), torch.zeros(6, dtype=x.dtype), atol=1e-12)
    assert torch.allclose(b.std(0, unbiased=False), torch.ones(6, dtype=x.dtype))
    assert torch.allclose(ln.mean(1), torch.zeros(40, dtype=x.dtype), atol=1e-12)
    assert torch.allclose(ln.std(1, unbiased=False), torch.ones(40, dtype=x.dtype))
    # L1: mean absolute deviation is 1 on the reference set.
    l1 = normalize(x, "batch", p=1, eps=0)
    assert torch.allclose(l1.abs().mean(0), torch.ones(6, dtype=x.dtype))
    # a batch of one sample carries no information: batch norm outputs exactly zero
    assert normalize(x[:1], "batch").abs().max() == 0


def test_l1_statistic_of_gaussian_is_rescaled_std():
    n, sigma = 400_000, 1.7
    x = 0.3 + sigma * torch.randn(n, 1, generator=torch.Generator().manual_seed(2),
                                  dtype=torch.float64)
    _, s1 = lp_stats(x, 0, p=1)
    predicted = sigma * math.sqrt(2 / math.pi)
    se = sigma * math.sqrt(1 - 2 / math.pi) / math.sqrt(n)  # sd of |x − μ| over sqrt(n)
    assert abs(s1.item() - predicted) < 5 * se, (s1.item(), predicted, se)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_streaming_backward_with_full_rate_is_batch_norm_gradient(p):
    # rate 1 makes every running average the current batch's own average, so streaming
    # normalisation must reproduce batch norm's forward and its exact autograd gradient.
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(2, 16, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 16, 5, generator=gen, dtype=torch.float64)
    state = StreamState.zeros(2, 5, dtype=torch.float64)
    u = streaming_normalize(z, state, p=p, rate=1.0)
    (g_stream,) = torch.autograd.grad((u * w).sum(), z)
    mu = z.mean(1, keepdim=True)
    ref = (z - mu) / ((z - mu).abs().pow(p).mean(1, keepdim=True) + 1e-5).pow(1 / p)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), z)
    assert torch.allclose(u, ref, atol=1e-12)
    assert torch.allclose(g_stream, g_ref, atol=1e-10)


def test_naive_backward_ignores_the_statistics():
    z = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    state = StreamState.zeros(1, 3, dtype=torch.float64)
    u = streaming_normalize(z, state, rate=1.0, backward="naive")
    (g,) = torch.autograd.grad(u.sum(), z)
    s = (state.m_p + 1e-5).sqrt()
    assert torch.allclose(g, (1 / s).expand_as(g))


def test_running_statistics_track_a_stationary_stream():
    rate, m, sd = 0.01, 2.0, 3.0
    gen = torch.Generator().manual_seed(4)
    state = StreamState.zeros(1, 200, dtype=torch.float64)  # 200 independent units
    for _ in range(2000):
        streaming_normalize(m + sd * torch.randn(1, 1, 200, generator=gen,
                                                 dtype=torch.float64), state, rate=rate)
    # An exponential average with weight `rate` has variance ≈ Var · rate / (2 − rate).
    tol = 5 * sd * math.sqrt(rate / (2 - rate))
    assert (state.mu - m).abs().max() < tol
    assert ((state.m_p.sqrt() - sd).abs().mean()) < tol


def test_streaming_state_is_updated_and_eval_is_frozen():
    state = StreamState.zeros(1, 2)
    z = torch.ones(1, 1, 2) * 5
    streaming_normalize(z, state, rate=0.1)
    assert state.steps == 1 and torch.allclose(state.mu, z)  # first step: cumulative
    before = state.mu.clone()
    streaming_normalize(z * 3, state, training=False)
    assert torch.equal(state.mu, before) and state.steps == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(p=0.5), "p must"), (dict(rate=0.0), "rate"), (dict(backward="exact"), "backward"),
])
def test_streaming_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        streaming_normalize(torch.zeros(1, 1, 2), StreamState.zeros(1, 2), **kwargs)


def test_normalize_bad_input():
    with pytest.raises(ValueError, match="reference"):
        normalize(torch.zeros(3, 2), "group")
    with pytest.raises(ValueError, match="shape"):
        normalize(torch.zeros(3))


@pytest.fixture(scope="module")
def small_digits():
    d = helpers.digits(seed=0, standardize=False)
    return helpers.Split(d.x_train[:500], d.y_train[:500], d.x_test, d.y_test, d.n_classes)


def test_online_training_smoke_streaming_learns_and_batch_one_fails(small_digits):
    stream = train_online(small_digits, kind="streaming", hidden=(32,), eta=0.04,
                          runs=2, seed=0, passes=2, checkpoints=2)
    assert stream.accuracy.shape == (2,) and stream.curve.shape == (2, 2)
    assert stream.accuracy.min() > 0.8
    bn1 = train_online(small_digits, kind="batch", hidden=(32,), eta=0.04, runs=2,
                       seed=0, batch_size=1)
    assert bn1.accuracy.max() < 0.3  # trained on all-zero features: near chance


def test_online_runs_are_seeded_and_independent(small_digits):
    kw = dict(kind="streaming", p=1, hidden=(8,), passes=1, seed=5, runs=2)
    a = train_online(small_digits, eta=torch.tensor([0.01, 0.02]), **kw)
    b = train_online(small_digits, eta=torch.tensor([0.01, 0.02]), **kw)
    c = train_online(small_digits, eta=torch.tensor([0.01, 0.2]), **kw)
    assert torch.equal(a.accuracy, b.accuracy)  # same seed, same result
    assert a.accuracy[0] == c.accuracy[0]  # run 0 does not see run 1's step size
    assert a.accuracy[1] != c.accuracy[1]


def test_online_recurrent_smoke(small_digits):
    short = helpers.Split(*(t[:100] for t in (small_digits.x_train, small_digits.y_train,
                                              small_digits.x_test, small_digits.y_test)), 10)
    r = train_online(short, kind="streaming", hidden=(8,), eta=0.01, runs=1,
                     recurrent_steps=8, seed=0)
    assert 0 <= r.accuracy.item() <= 1
    with pytest.raises(ValueError, match="recurrent_steps"):
        train_online(short, hidden=(8, 8), recurrent_steps=8)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="group"), "kind"), (dict(passes=0), "passes"), (dict(eta=-1.0), "eta"),
    (dict(runs=2, eta=torch.tensor([0.1, 0.1, 0.1])), "eta"), (dict(batch_size=True), "batch"),
    (dict(runs=2, kind=["none"]), "kind"), (dict(runs=2, kind=["batch", "none"]), "mixed"),
    (dict(runs=2, p=[1, 2, 2]), "p must"), (dict(runs=2, p=[1, 0.5]), "p must"),
    (dict(runs=2, kind=["none", "streaming"], hidden=(8,), recurrent_steps=8), "one kind"),
])
def test_train_online_bad_input(small_digits, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        train_online(small_digits, **kwargs)


def _clone_states(states):
    return [StreamState(*(t.clone() for t in (s.mu, s.m_p, s.G, s.H, s.Phi)), s.steps,
                        s.back_steps) for s in states]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind,p", [("none", 2.0), ("naive", 2.0), ("streaming", 1.0),
                                    ("streaming", 2.0), ("streaming", 3.0), ("batch", 2.0),
                                    ("batch", 1.0)])
def test_hand_written_gradient_matches_autograd(kind, p, batch):
    # The fast path's backpropagation by hand against autograd through the reference forward
    # (float64), over several SGD steps so that the running averages and states evolve too.
    runs, widths, rate = 2, [5, 4, 3, 3], 0.3
    gen = torch.Generator().manual_seed(7)
    params = _init_params(widths, runs, gen, torch.float64, "cpu", 0)
    ref = [{k: t.clone().requires_grad_() for k, t in layer.items()} for layer in params]
    states = [StreamState.zeros(runs, n, torch.float64) for n in widths[1:-1]]
    ref_states = _clone_states(states)
    spec = norm_spec([kind] * runs, p, rate, "cpu")
    names = [(i, k) for i, layer in enumerate(params) for k in layer
             if k != "gamma" or kind != "none"]
    for _ in range(6):
        x = 2 * torch.rand(runs, batch, widths[0], generator=gen, dtype=torch.float64)
        y = torch.randint(0, widths[-1], (runs, batch), generator=gen)
        logits, cache = fast_forward(params, states, x, spec, True)
        onehot = torch.nn.functional.one_hot(y, widths[-1]).to(torch.float64)
        fast = fast_grads(params, states, cache, logits, onehot, spec)
        out = _forward(ref, ref_states, x, kind, p, rate, True, 0)
        loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(),
                                                 reduction="sum") / batch
        auto = torch.autograd.grad(loss, [ref[i][k] for i, k in names])
        assert torch.allclose(logits, out, atol=1e-12)
        for (i, k), g in zip(names, auto, strict=True):
            assert torch.allclose(fast[i][k], g, atol=1e-10), (i, k)
            with torch.no_grad():
                params[i][k] -= 0.5 * fast[i][k]
                ref[i][k] -= 0.5 * g
    for s, r in zip(states, ref_states, strict=True):
        for name in ("mu", "m_p", "G", "H", "Phi"):
            assert torch.allclose(getattr(s, name), getattr(r, name), atol=1e-10), name


def test_per_run_kinds_and_orders_train_like_separate_calls(small_digits):
    # Run r of a mixed call has the initialisation and sample order of run r of a plain call.
    kw = dict(hidden=(8,), passes=1, seed=2, runs=3, eta=0.02)
    mixed = train_online(small_digits, kind=["none", "naive", "streaming"], p=[2, 2, 1], **kw)
    for r, (kind, p) in enumerate([("none", 2), ("naive", 2), ("streaming", 1)]):
        alone = train_online(small_digits, kind=kind, p=p, **kw)
        assert abs(mixed.accuracy[r] - alone.accuracy[r]) < 0.01, (kind, p)


def test_full_mode_recurrent_experiment_at_small_size(small_digits):
    # Full mode alone runs the recurrent network: one call per kind with one step size per run
    # (the sweep's η repeated over runs), the accuracies viewed as (η, run). Same call, small.
    etas, runs = [0.005, 0.04], 2
    eta_runs = torch.tensor(etas).repeat_interleave(runs)
    short = helpers.Split(*(t[:120] for t in (small_digits.x_train, small_digits.y_train,
                                              small_digits.x_test, small_digits.y_test)), 10)
    rnn = dict(hidden=(8,), recurrent_steps=8, passes=1, runs=len(eta_runs), eta=eta_runs,
               seed=0)
    for kind in ("none", "streaming"):
        acc = train_online(short, kind=kind, **rnn).accuracy.view(len(etas), runs)
        assert acc.shape == (2, 2) and ((0 <= acc) & (acc <= 1)).all()
