"""Residual stacks: the unrolled RNN equals the weight-shared ResNet; sharing; batch norm."""

import pytest
import torch

import helpers
from helpers.topics.resnet_rnn import (
    ResidualStack,
    StackedStacks,
    classifier_accuracy,
    rnn_unroll,
    spirals,
    train_classifier,
    train_together,
)


def _x(runs=2, n=6, d=5, seed=0):
    return torch.randn(runs, n, d, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("skip", [True, False])
def test_shared_stack_equals_its_unrolled_resnet_copy(skip):
    net = ResidualStack(5, 7, 3, 6, shared=True, skip=skip, runs=2, seed=1, dtype=torch.float64)
    resnet = net.unrolled_copy()
    assert not resnet.shared and resnet.W1.shape[1] == 6
    x = _x()
    assert (net(x) - resnet(x)).abs().max() < 1e-12
    # the copies are equal in value but no longer tied: changing one block changes the output
    with torch.no_grad():
        resnet.W1[:, 3] += 0.1
    assert (net(x) - resnet(x)).abs().max() > 1e-6


def test_forward_is_the_recurrence_h_plus_f_of_h():
    net = ResidualStack(5, 4, 3, 4, shared=True, runs=1, seed=2, dtype=torch.float64)
    x = _x(runs=1)
    h0 = net.hidden(x)[0]
    hT = rnn_unroll(lambda h: net.branch(h, 0), h0, 4)
    assert torch.allclose(hT, net.hidden(x)[-1], atol=1e-14)
    # an independent oracle: the block written out with plain matrix products
    W1, b1, W2, b2 = (t[0, 0] for t in (net.W1, net.b1, net.W2, net.b2))
    h = h0[0]
    for _ in range(4):
        h = h + torch.relu(h @ W1 + b1) @ W2 + b2
    assert torch.allclose(h, hT[0], atol=1e-12)


def test_rnn_unroll_linear_cell_is_binomial():
    # f(h) = w h gives h_T = (1 + w)^T h_0 with the skip and w^T h_0 without.
    h0 = torch.tensor([2.0], dtype=torch.float64)
    assert torch.allclose(rnn_unroll(lambda h: 0.3 * h, h0, 5), 1.3**5 * h0)
    assert torch.allclose(rnn_unroll(lambda h: 0.3 * h, h0, 5, skip=False), 0.3**5 * h0)
    assert torch.equal(rnn_unroll(lambda h: 0.3 * h, h0, 0), h0)


def test_parameter_counts():
    d_in, d, k, T = 64, 64, 10, 8
    io = d_in * d + d + d * k + k
    block = 2 * (d * d + d)
    shared = ResidualStack(d_in, d, k, T, shared=True)
    unshared = ResidualStack(d_in, d, k, T, shared=False)
    assert shared.n_parameters() == io + block
    assert unshared.n_parameters() == io + T * block


def test_runs_are_independent_models():
    net = ResidualStack(5, 4, 3, 3, shared=False, runs=3, seed=0, dtype=torch.float64)
    x = _x(runs=3)
    out = net(x)
    with torch.no_grad():
        net.W2[1] += 1.0
    new = net(x)
    assert torch.equal(out[0], new[0]) and torch.equal(out[2], new[2])
    assert not torch.allclose(out[1], new[1])


def test_batch_norm_statistics_shared_vs_per_step():
    x = _x(runs=1, n=32)
    rnn = ResidualStack(5, 6, 3, 4, shared=True, norm="shared", seed=3, dtype=torch.float64)
    resnet = rnn.unrolled_copy()
    resnet.norm = "per_step"
    resnet.running_mean = resnet.running_mean.expand(1, 4, 1, 6).clone()
    resnet.running_var = resnet.running_var.expand(1, 4, 1, 6).clone()
    rnn.train(), resnet.train()
    # training mode: batch statistics, so the two agree exactly
    assert (rnn(x) - resnet(x)).abs().max() < 1e-12
    for _ in range(20):
        rnn(x), resnet(x)
    rnn.eval(), resnet.eval()
    # evaluation: one pooled set of running statistics vs one per step; they differ
    assert (rnn(x) - resnet(x)).abs().max() > 1e-3


def test_training_smoke_and_accuracy_shape():
    d = helpers.digits(seed=0)
    small = helpers.Split(d.x_train[:400], d.y_train[:400], d.x_test, d.y_test, 10)
    net = ResidualStack(64, 16, 10, 2, shared=True, runs=2, seed=0)
    acc = train_classifier(net, small, epochs=10, lr=1e-2, seed=0)
    assert acc.shape == (2,) and acc.min() > 0.7
    assert torch.equal(acc, classifier_accuracy(net, small))


@pytest.mark.parametrize("kwargs,match", [
    (dict(T=0), "T must"), (dict(width=2.5), "width"), (dict(norm="layer"), "norm"),
    (dict(runs=True), "runs"),
])
def test_bad_input(kwargs, match):
    args = dict(d_in=4, width=3, n_classes=2, T=2, shared=True) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        ResidualStack(**args)


def test_bad_input_elsewhere():
    with pytest.raises(ValueError, match="T must"):
        rnn_unroll(lambda h: h, torch.zeros(1), -1)
    with pytest.raises(ValueError, match="shared"):
        ResidualStack(4, 3, 2, 2, shared=False).unrolled_copy()
    d = helpers.digits(seed=0)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(ResidualStack(64, 3, 10, 1, shared=True), d, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_classifier(ResidualStack(64, 3, 10, 1, shared=True), d, lr=0)


def test_spirals_are_seeded_balanced_and_on_their_arms():
    a, b = spirals(400, 100, turns=3, seed=5), spirals(400, 100, turns=3, seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (400, 2) and a.x_test.shape == (100, 2) and a.n_classes == 2
    assert abs(a.y_train.float().mean().item() - 0.5) < 0.1  # binomial: 4 SE at n = 400
    # every point lies on its class's arm: angle = 2π·turns·r + π·y (mod 2π), r = |x| / 2
    r = a.x_train.double().norm(dim=1) / 2
    angle = torch.atan2(a.x_train[:, 1].double(), a.x_train[:, 0].double())
    offset = torch.remainder(angle - 2 * torch.pi * 3 * r - torch.pi * a.y_train, 2 * torch.pi)
    assert torch.minimum(offset, 2 * torch.pi - offset).max() < 1e-4


def test_spirals_smoke_shared_and_unshared_train_small():
    # the chapter's experiment at a tiny size, full-mode depths included
    split = spirals(200, 200, turns=1, seed=0)
    for T, shared in ((1, True), (2, True), (2, False), (4, False)):
        net = ResidualStack(2, 16, 2, T, shared=shared, runs=2, seed=T)
        acc = train_classifier(net, split, epochs=3, seed=0)
        assert acc.shape == (2,) and ((0 <= acc) & (acc <= 1)).all()


@pytest.mark.parametrize("kwargs", [dict(n_train=0, n_test=5), dict(n_train=5, n_test=5, turns=0)])
def test_spirals_bad_input(kwargs):
    with pytest.raises(ValueError, match="n_train|turns"):
        spirals(**kwargs)


def _mixed_nets(dtype=torch.float64):
    # every kind of network the chapter stacks: depths 1..3, shared or not, with or without skip
    return [ResidualStack(2, 6, 3, T, shared=sh, skip=sk, runs=2, seed=T + 7 * sh, dtype=dtype)
            for T, sh, sk in [(1, True, True), (3, True, True), (3, False, True),
                              (3, True, False), (2, False, False)]]


def test_stacked_stacks_forward_and_gradient_match_each_network_by_autograd():
    nets = _mixed_nets()
    stack = StackedStacks(nets)
    assert stack.runs == 10 and stack.T == 3
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(stack.runs, 5, 2, generator=gen, dtype=torch.float64)
    w = torch.randn(stack.runs, 5, 3, generator=gen, dtype=torch.float64)
    out = stack(x)
    ref = torch.cat([n(xi) for n, xi in zip(nets, stack.split(x), strict=True)])
    assert (out - ref).abs().max() < 1e-13
    (out * w).sum().backward()
    (ref * w).sum().backward()  # the oracle: autograd through each network on its own
    for name in StackedStacks.NAMES:
        for net, g in zip(nets, stack.split(getattr(stack, name).grad), strict=True):
            g_ref = getattr(net, name).grad
            if g.dim() == 4:  # blocks: a shared block's copies all carry the summed gradient
                g_ref = g_ref.expand(net.runs, stack.T, *g_ref.shape[2:]) if net.shared else \
                    torch.cat([g_ref, g_ref.new_zeros(net.runs, stack.T - net.T,
                                                       *g_ref.shape[2:])], 1)
            assert torch.allclose(g, g_ref, atol=1e-12), (name, net.T, net.shared, net.skip)


def test_stacked_training_keeps_tied_blocks_tied_and_matches_separate_training():
    split = spirals(128, 64, turns=1, seed=0)
    nets = _mixed_nets()
    stack = StackedStacks(nets)
    acc = train_classifier(stack, split, epochs=1, batch_size=32, seed=0)
    assert acc.shape == (stack.runs,)
    for lo, hi in stack.tied:  # copies of a shared block stay equal to the last bit
        assert torch.equal(stack.W1[lo:hi], stack.W1[lo:hi, :1].expand_as(stack.W1[lo:hi]))
    # the stack's first network, trained alone on the same sample orders (one epoch: the
    # stack's first runs draw the first orders), ends at the same weights
    first = _mixed_nets()[0]
    train_classifier(first, split, epochs=1, batch_size=32, seed=0)
    assert torch.allclose(stack.A[:2], first.A, atol=1e-12)
    assert torch.allclose(stack.W2[:2, :1], first.W2, atol=1e-12)
    assert torch.allclose(stack.split(acc)[0], classifier_accuracy(first, split))


def test_stacked_stacks_bad_input():
    with pytest.raises(TypeError, match="nets"):
        StackedStacks([])
    with pytest.raises(ValueError, match="nets must share"):
        StackedStacks([ResidualStack(2, 4, 2, 1, shared=True),
                       ResidualStack(2, 5, 2, 1, shared=True)])
    with pytest.raises(ValueError, match="batch norm"):
        StackedStacks([ResidualStack(2, 4, 2, 1, shared=True, norm="shared")])


def test_full_mode_configurations_train_as_one_stack():
    # Full mode sweeps T in {1, 2, 4, 8, 16}: shared networks at every T, unshared for T > 1,
    # plus the shared network without skip at T = 8, one StackedStacks per depth. The
    # chapter's cell at width 4, one epoch: every network gets its accuracies and its
    # parameter count, keyed as the figure reads them.
    Ts, runs = [1, 2, 4, 8, 16], 2
    configs = [(T, True, True) for T in Ts] + [(T, False, True) for T in Ts if T > 1] + \
        [(8, True, False)]
    nets = [ResidualStack(2, 4, 2, T, shared=sh, skip=sk, runs=runs, seed=T + 100 * sh)
            for T, sh, sk in configs]
    split = spirals(64, 32, turns=1, seed=0)
    per_net = train_together(nets, split, epochs=1, batch_size=32, seed=0)
    accuracy = dict(zip(configs, per_net, strict=True))
    n_params = {(T, sh): n.n_parameters() for (T, sh, _), n in zip(configs, nets, strict=True)}
    accuracy[1, False, True], n_params[1, False] = accuracy[1, True, True], n_params[1, True]
    for T in Ts:
        for shared in (True, False):
            assert accuracy[T, shared, True].shape == (runs,) and (T, shared) in n_params
    assert accuracy[8, True, False].shape == (runs,)
    assert n_params[16, False] > n_params[16, True] == n_params[1, True]


def test_train_together_groups_by_depth_like_one_stack_per_depth():
    split = spirals(64, 32, turns=1, seed=0)
    nets = _mixed_nets(torch.float32)
    got = train_together(nets, split, epochs=1, batch_size=32, seed=0)
    fresh = _mixed_nets(torch.float32)
    depth3 = StackedStacks([fresh[i] for i in (1, 2, 3)])
    want = depth3.split(train_classifier(depth3, split, epochs=1, batch_size=32, seed=0))
    for i, w in zip((1, 2, 3), want, strict=True):
        assert torch.equal(got[i], w)
    assert [g.shape for g in got] == [(n.runs,) for n in nets]
    with pytest.raises(TypeError, match="nets"):
        train_together([], split)
