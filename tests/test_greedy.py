"""Tests for helpers.greedy: greedy layerwise training with auxiliary heads."""

import math

import numpy as np
import pytest
import torch

from helpers.topics.greedy_layerwise import (
    accuracy,
    aux_head,
    binary_logistic_newton,
    channels_last,
    conv_block,
    freeze,
    linear_probe,
    mlp_block,
    paired_difference,
    shift_images,
    stage_features,
    train_end_to_end,
    train_greedy,
    train_greedy_together,
    two_spirals,
)


def test_two_spirals_geometry():
    x, y = two_spirals(400, noise=0.0, seed=0)
    r = x.norm(dim=1)
    assert x.shape == (400, 2) and set(y.tolist()) == {0, 1}
    assert (r <= 1 + 1e-6).all() and (r >= 0.05 - 1e-6).all()
    # class 1 is class 0 turned by π: the angle, once the spiral's winding is removed
    angle = torch.atan2(x[:, 1], x[:, 0]) - 2 * math.pi * 3 * r
    offset = torch.remainder(angle - math.pi * y, 2 * math.pi)
    assert torch.minimum(offset, 2 * math.pi - offset).max() < 1e-3


def test_earlier_blocks_are_truly_frozen():
    """After stage j, blocks < j never change: weights, gradients, batch-norm statistics."""
    x, y = two_spirals(256, seed=0)
    blocks = [mlp_block(2, 16), mlp_block(16, 16), mlp_block(16, 16)]
    heads = [aux_head(16, 2, k=1, width=16) for _ in blocks]
    train_greedy(blocks[:1], heads[:1], x, y, steps=20, seed=0)
    snapshot = {k: v.clone() for k, v in blocks[0].state_dict().items()}
    assert any("running_mean" in k for k in snapshot)
    # later stages train on top of the frozen block, and even train() cannot unfreeze it
    h = blocks[0](x)
    train_greedy(blocks[1:], heads[1:], h, y, steps=20, seed=1)
    blocks[0].train()
    out = torch.nn.Sequential(*blocks, heads[-1])(x).sum()
    out.backward()
    for k, v in blocks[0].state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    assert all(not p.requires_grad and p.grad is None for p in blocks[0].parameters())
    assert not blocks[0][1].training  # batch norm uses its fixed running statistics
    assert all(p.requires_grad for p in heads[-1].parameters())


def test_greedy_trains_each_stage_and_freezes_it():
    x, y = two_spirals(256, seed=1)
    blocks = [mlp_block(2, 16), mlp_block(16, 16)]
    heads = [aux_head(16, 2, k=1, width=16) for _ in blocks]
    fits = train_greedy(blocks, heads, x, y, steps=30, seed=0)
    assert len(fits) == 2 and all(0 <= f <= 1 for f in fits)
    assert all(not p.requires_grad for b in blocks for p in b.parameters())


def test_greedy_together_is_greedy_alone():
    """Networks trained side by side get exactly the weights each gets when trained alone."""
    x, y = two_spirals(200, seed=0)

    def network(k):
        torch.manual_seed(3)
        blocks = [mlp_block(2, 8), mlp_block(8, 8)]
        return blocks, [aux_head(8, 2, k=k, width=8) for _ in blocks]

    alone = [network(k) for k in (0, 1)]
    fits_alone = [train_greedy(b, h, x, y, steps=20, seed=5) for b, h in alone]
    together = [network(k) for k in (0, 1)]
    assert train_greedy_together(together, x, y, steps=20, seed=5) == fits_alone
    for (b1, h1), (b2, h2) in zip(alone, together, strict=True):
        for p1, p2 in zip(torch.nn.ModuleList(b1 + h1).state_dict().values(),
                          torch.nn.ModuleList(b2 + h2).state_dict().values(), strict=True):
            assert torch.equal(p1, p2)
    with pytest.raises(ValueError, match="same number of stages"):
        train_greedy_together([network(0), ([mlp_block(2, 8)], [aux_head(8, 2, k=0)])], x, y,
                              steps=1, seed=0)


def test_linear_probe_oracle():
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(300, 5, generator=gen)
    y = (f[:, 0] + 0.5 * f[:, 1] > 0).long()  # linearly separable
    assert linear_probe(f[:200], y[:200], f[200:], y[200:]) > 0.95
    y_xor = ((f[:, 0] > 0) ^ (f[:, 1] > 0)).long()  # no linear rule does better than chance
    assert linear_probe(f[:200], y_xor[:200], f[200:], y_xor[200:]) < 0.7


def test_binary_newton_is_the_two_class_multinomial_optimum():
    """Newton's (v, b) is stationary, and W = (−v/2, v/2), c = (−b/2, b/2) is at least as good
    for the two-class multinomial objective as a long L-BFGS run (an independent solver)."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(300, 6, generator=gen, dtype=torch.float64)
    y = (a[:, 0] - a[:, 2] + 0.8 * torch.randn(300, generator=gen, dtype=torch.float64) > 0.3)
    y, lam = y.long(), 1e-2
    v, b = binary_logistic_newton(a, y, weight_decay=lam / 2)

    def multinomial(W, c):
        return torch.nn.functional.cross_entropy(a @ W + c, y) + lam * W.pow(2).sum()

    W = torch.zeros(6, 2, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=500, tolerance_grad=1e-12, tolerance_change=0,
                            line_search_fn="strong_wolfe")
    opt.step(lambda: (opt.zero_grad(), (loss := multinomial(W, c)), loss.backward())[1])
    W_newton = torch.stack([-v / 2, v / 2], 1).requires_grad_()
    c_newton = torch.stack([-b / 2, b / 2]).requires_grad_()
    value = multinomial(W_newton, c_newton)
    value.backward()
    assert value.item() <= multinomial(W, c).item() + 1e-12
    assert W_newton.grad.abs().max() < 1e-8 and c_newton.grad.abs().max() < 1e-8
    with pytest.raises(ValueError, match="weight_decay"):
        binary_logistic_newton(a, y, weight_decay=-1.0)


def test_heads_and_blocks_shapes():
    x = torch.randn(4, 1, 8, 8)
    block = conv_block(1, 6, pool=True)
    assert block(x).shape == (4, 6, 4, 4)
    assert aux_head(6, 10, k=2, spatial=True)(block(x)).shape == (4, 10)
    assert len([m for m in aux_head(3, 2, k=2) if isinstance(m, torch.nn.Linear)]) == 3
    feats = stage_features([mlp_block(2, 3)], torch.randn(5, 2))
    assert [tuple(f.shape) for f in feats] == [(5, 2), (5, 3)]


def test_end_to_end_smoke():
    x, y = two_spirals(128, turns=0.5, seed=0)
    net = train_end_to_end([mlp_block(2, 16)], aux_head(16, 2, k=1, width=16), x, y,
                           steps=100, seed=0)
    assert accuracy(net, x, y) > 0.8


def test_freeze_and_bad_input():
    block = freeze(mlp_block(2, 3))
    assert block.train() is block and not block.training
    with pytest.raises(ValueError, match="k"):
        aux_head(2, 2, k=-1)
    with pytest.raises(ValueError, match="blocks and heads"):
        train_greedy([mlp_block(2, 2)], [], torch.zeros(2, 2), torch.zeros(2).long(),
                     steps=1, seed=0)
    with pytest.raises(ValueError, match="turns"):
        two_spirals(10, turns=0, seed=0)


def test_paired_difference_oracle_and_per_sample():
    a = torch.tensor([True, True, False, True])
    b = torch.tensor([True, False, False, False])
    mean, se = paired_difference(a, b)
    d = np.array([0, 1, 0, 1], dtype=float)  # numpy oracle
    assert mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / 2)
    with pytest.raises(ValueError, match="same n"):
        paired_difference(a, b[:3])
    x, y = two_spirals(200, seed=0)
    ok = linear_probe(x, y, x, y, per_sample=True)
    assert ok.dtype == torch.bool and ok.shape == (200,)
    assert ok.double().mean().item() == pytest.approx(linear_probe(x, y, x, y))
    net = torch.nn.Linear(2, 2)
    per = accuracy(net, x, y, per_sample=True)
    assert per.double().mean().item() == pytest.approx(accuracy(net, x, y))


def test_shift_images_oracle():
    """Each image is moved by its own offset in {−s..s}², zero-filled: checked against
    torch.roll on images whose border is blank (nothing falls off)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(50, 2, 8, 8)
    x[:, :, 1:7, 1:7] = torch.randn(50, 2, 6, 6, generator=gen)  # a blank 1-pixel border
    assert torch.equal(shift_images(x, 0, seed=3), x)
    out = shift_images(x, 1, seed=3)
    seen = set()
    for m in range(len(x)):
        match = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(out[m], torch.roll(x[m], (-dy, -dx), dims=(1, 2)))]
        assert len(match) == 1, m
        seen.add(match[0])
    assert len(seen) == 9  # every offset occurs among 50 images
    assert torch.equal(shift_images(x, 1, seed=3), out)  # the seed fixes the offsets
    with pytest.raises(ValueError, match="max_shift"):
        shift_images(x, -1, seed=0)
    with pytest.raises(ValueError, match="x must"):
        shift_images(x[0], 1, seed=0)


@pytest.mark.parametrize("channels", [[4, 8, 8], [6, 12, 12]])  # the chapter's two modes, scaled
def test_conv_stack_greedy_and_end_to_end_on_shifted_images(channels):
    """The chapter's convolutional stack for any channel widths (full mode doubles them):
    greedy stages with spatial heads, end-to-end training and per-stage features."""
    gen = torch.Generator().manual_seed(0)
    x = shift_images(torch.randn(40, 1, 8, 8, generator=gen), 1, seed=0)
    y = torch.arange(40) % 10
    c_in = [1, *channels[:-1]]
    make = lambda: [conv_block(a, b, pool=j > 0)  # noqa: E731
                    for j, (a, b) in enumerate(zip(c_in, channels, strict=True))]
    blocks = make()
    heads = [aux_head(c, 10, k=1, width=8, spatial=True) for c in channels]
    fits = train_greedy(blocks, heads, x, y, steps=3, batch_size=16, seed=0)
    assert len(fits) == 3
    net = train_end_to_end(make(), aux_head(channels[-1], 10, k=1, width=8, spatial=True), x, y,
                           steps=3, batch_size=16, seed=0)
    assert net(x).shape == (40, 10)
    feats = stage_features(blocks, x)
    assert [f.shape[1] for f in feats] == [64, channels[0] * 64, channels[1] * 16,
                                           channels[2] * 4]


def test_five_wide_stages_on_spirals():
    """Full mode's spirals stack: five blocks of one width, each with its own head."""
    x, y = two_spirals(64, seed=0)
    blocks = [mlp_block(2 if j == 0 else 12, 12) for j in range(5)]
    heads = [aux_head(12, 2, k=2, width=8) for _ in blocks]
    assert len(train_greedy(blocks, heads, x, y, steps=2, seed=0)) == 5
    assert len(stage_features(blocks, x)) == 6


def test_channels_last_changes_memory_order_only():
    """Channels-last blocks compute what the NCHW ones do (float64 oracle); other ranks pass."""
    torch.manual_seed(0)
    block = conv_block(2, 4, pool=True).double().eval()
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    expected = block(x)
    x_cl = channels_last(x, block)
    assert x_cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(x_cl, x)
    assert block[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(block(x_cl), expected, rtol=0, atol=1e-12)
    flat = torch.randn(3, 2)
    assert channels_last(flat, block) is flat
