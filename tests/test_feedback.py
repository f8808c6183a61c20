"""Asymmetric feedback layers, Batch Manhattan, and the batched trainer against single models."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import helpers
from helpers.topics import weight_symmetry
from helpers.topics.weight_symmetry import FeedbackLinear
from helpers.topics.weight_symmetry.feedback import concordance_mask, feedback_matrix
from helpers.topics.weight_symmetry.training import BatchedFeedbackMLP, Variant, train_feedback_grid

FEEDBACKS = ("backprop", "sign", "fixed_random_sign", "batch_random_sign", "random")


def _grads(layer, x, grad_out):
    x = x.clone().requires_grad_()
    layer(x).backward(grad_out)
    return x.grad, layer.weight.grad, layer.bias.grad


def test_backprop_feedback_equals_nn_linear_exactly():
    ref = nn.Linear(7, 5, dtype=torch.float64)
    fb = weight_symmetry.FeedbackLinear(7, 5, feedback="backprop", dtype=torch.float64)
    fb.load_state_dict(ref.state_dict(), strict=False)
    x, g = torch.randn(11, 7, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    assert torch.allclose(fb(x), ref(x), rtol=0, atol=1e-14)
    for a, b in zip(_grads(fb, x, g), _grads(ref, x, g), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_sign_feedback_input_gradient(scale):
    layer = weight_symmetry.FeedbackLinear(6, 4, feedback="sign", scale=scale, seed=0,
                                   dtype=torch.float64)
    x, g = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    gx, gw, gb = _grads(layer, x, g)
    assert torch.allclose(gx, g @ (torch.sign(layer.weight) * scale), atol=1e-14)
    # the weight gradient stays the usual outer product, whatever the feedback
    assert torch.allclose(gw, g.T @ x, atol=1e-14) and torch.allclose(gb, g.sum(0))
    assert not torch.allclose(gx, g @ layer.weight)  # the test can tell V from W


@pytest.mark.parametrize("feedback", FEEDBACKS)
def test_weight_gradient_is_outer_product_for_every_feedback(feedback):
    layer = weight_symmetry.FeedbackLinear(5, 3, feedback=feedback, seed=1, dtype=torch.float64)
    x, g = torch.randn(4, 2, 5, dtype=torch.float64), torch.randn(4, 2, 3, dtype=torch.float64)
    _, gw, _ = _grads(layer, x, g)  # two leading sample dimensions
    assert torch.allclose(gw, g.reshape(-1, 3).T @ x.reshape(-1, 5), atol=1e-13)


def test_concordance_q1_is_sign_q0_is_negation():
    for feedback in ("sign", "fixed_random_sign", "batch_random_sign"):
        one = weight_symmetry.FeedbackLinear(8, 6, feedback=feedback, q=1.0, seed=2)
        zero = weight_symmetry.FeedbackLinear(8, 6, feedback=feedback, q=0.0, seed=2)
        assert torch.equal(torch.sign(one.feedback_matrix()), torch.sign(one.weight))
        assert torch.equal(torch.sign(zero.feedback_matrix()), -torch.sign(zero.weight))
    sign1 = weight_symmetry.FeedbackLinear(8, 6, feedback="sign", q=1.0, seed=2)
    assert torch.equal(sign1.feedback_matrix(), torch.sign(sign1.weight))


@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_concordance_fraction_is_exact(q):
    layer = weight_symmetry.FeedbackLinear(20, 10, feedback="sign", q=q, seed=3)
    agree = (torch.sign(layer.feedback_matrix()) == torch.sign(layer.weight)).double().mean()
    assert agree.item() == round(q * 200) / 200


def test_batched_masks_are_per_model_and_exact():
    q = torch.tensor([0.0, 0.3, 1.0])
    mask = concordance_mask((3, 4, 5), q, generator=torch.Generator().manual_seed(0))
    assert mask.abs().eq(1).all()
    assert (mask == 1).flatten(1).sum(1).tolist() == [0, 6, 20]


def test_random_magnitudes_fixed_or_redrawn():
    fixed = weight_symmetry.FeedbackLinear(6, 5, feedback="fixed_random_sign", seed=4)
    batch = weight_symmetry.FeedbackLinear(6, 5, feedback="batch_random_sign", seed=4)
    x = torch.randn(3, 6)
    fixed(x)
    v0 = fixed.feedback_matrix().clone()
    fixed(x)
    assert torch.equal(fixed.feedback_matrix(), v0)
    batch(x)
    v1 = batch.feedback_matrix().clone()
    batch(x)
    v2 = batch.feedback_matrix()
    assert not torch.equal(v1, v2)
    for v, w in ((v1, batch.weight), (v2, batch.weight), (v0, fixed.weight)):
        assert torch.equal(torch.sign(v), torch.sign(w))  # signs always concordant (q = 1)
    batch.eval()
    batch(x)
    assert torch.equal(batch.feedback_matrix(), v2)  # no redraw at evaluation


def test_random_feedback_ignores_weight_signs():
    layer = weight_symmetry.FeedbackLinear(30, 20, feedback="random", seed=5)
    v = layer.feedback_matrix().clone()
    with torch.no_grad():
        layer.weight.neg_()
    assert torch.equal(layer.feedback_matrix(), v)
    agree = (torch.sign(v) == torch.sign(layer.weight)).double().mean().item()
    assert abs(agree - 0.5) < 4 * math.sqrt(0.25 / 600)  # binomial, 4 standard deviations


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_alignment_grows_like_2q_minus_1(q):
    """cos(Wᵀδ, Vᵀδ) → (2q − 1) E|w| / √(E w²) = (2q − 1) √(2/π) for Gaussian W, V = S∘sign W."""
    gen = torch.Generator().manual_seed(6)
    n = 300
    w = torch.randn(n, n, generator=gen, dtype=torch.float64)
    s = concordance_mask((n, n), q, generator=gen, dtype=torch.float64)
    v = feedback_matrix(w, "sign", sign_mask=s, magnitude=torch.ones_like(w))
    delta = torch.randn(50, n, generator=gen, dtype=torch.float64)
    cos = nn.functional.cosine_similarity(delta @ w, delta @ v, dim=1).mean().item()
    # each cosine is an average over n² weights: fluctuations O(1/n) ≈ 0.003
    assert abs(cos - (2 * q - 1) * math.sqrt(2 / math.pi)) < 0.02


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(feedback="transpose"), ValueError, "feedback"),
    (dict(feedback=3), TypeError, "feedback"),
    (dict(feedback="sign", q=1.5), ValueError, "q"),
    (dict(feedback="sign", q=-0.1), ValueError, "q"),
    (dict(feedback="sign", q="half"), TypeError, "q"),
    (dict(feedback="random", q=0.5), ValueError, "q"),
    (dict(feedback="sign", scale=0.0), ValueError, "scale"),
])
def test_feedback_linear_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        weight_symmetry.FeedbackLinear(3, 2, **kwargs)


def test_batch_manhattan_step_and_bad_lr():
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    p.grad = torch.tensor([0.5, -1e-6, 0.0])
    weight_symmetry.BatchManhattan([p], lr=0.1).step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -1.9, 3.0]))
    with pytest.raises(ValueError, match="lr"):
        weight_symmetry.BatchManhattan([p], lr=-1.0)


def _single_models(net, m, widths):
    """Model m of a BatchedFeedbackMLP rebuilt from FeedbackLinear layers (and BatchNorm1d)."""
    v = net.variants[m]
    layers = []
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        lin = weight_symmetry.FeedbackLinear(a, b, feedback=v.feedback, q=v.q, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(net.weights[l][m])
            lin.bias.copy_(net.biases[l][m, 0])
            lin.sign_mask.copy_(net.masks[l][m])
            lin.magnitude.copy_(net.magnitudes[l][m])
        layers.append(lin)
        if l < len(widths) - 2:
            if v.rule == "bn":
                layers.append(nn.BatchNorm1d(b, dtype=torch.float64))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.mark.parametrize("rule", ["sgd", "bn", "bm"])
def test_batched_gradients_equal_single_feedback_linear(rule):
    widths = [5, 7, 6, 3]
    variants = [Variant(fb, None, rule, s) for s in (0, 1)
                for fb in ("backprop", "sign", "fixed_random_sign", "random")]
    variants.append(Variant("sign", 0.25, rule, 0))
    net = BatchedFeedbackMLP(widths, variants, dtype=torch.float64)
    x = torch.randn(len(variants), 8, 5, dtype=torch.float64)
    y = torch.randint(3, (len(variants), 8))
    grads = torch.autograd.grad(net.loss(x, y).sum(), net.weights + net.biases)
    for m in range(len(variants)):
        single = _single_models(net, m, widths)
        nn.functional.cross_entropy(single(x[m]), y[m]).backward()
        lins = [layer for layer in single if isinstance(layer, FeedbackLinear)]
        for l, lin in enumerate(lins):
            assert torch.allclose(grads[l][m], lin.weight.grad, atol=1e-12), (m, l)
            assert torch.allclose(grads[len(lins) + l][m, 0], lin.bias.grad, atol=1e-12)


def test_batched_step_matches_sgd_and_batch_manhattan():
    variants = [Variant("sign", None, "sgd", 0), Variant("sign", None, "bm", 0)]
    net = BatchedFeedbackMLP([4, 5, 2], variants, dtype=torch.float64)
    before = [w.detach().clone() for w in net.weights]
    grads = [torch.randn_like(p) for p in net.parameters()]
    net.step(grads, torch.tensor([0.1, 0.01]))
    for w0, w, g in zip(before, net.weights, grads, strict=False):
        assert torch.allclose(w[0], w0[0] - 0.1 * g[0])
        assert torch.allclose(w[1], w0[1] - 0.01 * torch.sign(g[1]))


def test_models_of_one_seed_share_initial_weights():
    net = BatchedFeedbackMLP([4, 5, 2], [Variant("backprop", None, "sgd", 3),
                                         Variant("random", None, "bm", 3),
                                         Variant("sign", None, "sgd", 4)])
    assert torch.equal(net.weights[0][0], net.weights[0][1])
    assert not torch.equal(net.weights[0][0], net.weights[0][2])


def test_train_feedback_grid_smoke():
    split = helpers.bundled("iris", seed=0)
    variants = [Variant(fb, None, rule, s) for s in (0, 1) for rule in ("sgd", "bn", "bm")
                for fb in ("backprop", "sign")]
    res = train_feedback_grid(split.x_train, split.y_train, split.x_test, split.y_test,
                              variants, hidden=(8, 8), steps=60, n_evals=3)
    assert res.test_acc.shape == res.angle.shape == res.train_loss.shape == (12, 3)
    assert res.steps.tolist() == [20, 40, 60]
    assert res.final_acc("backprop", "bm") > 0.6  # three classes: chance is 1/3
    assert res.angle[res.index("backprop", "bn")].max() < 1e-3
    assert res.angle[res.index("sign", "bn")].min() > 1.0
    with pytest.raises(ValueError, match="no model"):
        res.index("random", "sgd")
    with pytest.raises(ValueError, match="rule"):
        train_feedback_grid(split.x_train, split.y_train, split.x_test, split.y_test,
                            [Variant("sign", None, "adam", 0)])


def test_grid_paired_difference_best_lr_and_no_angles():
    split = helpers.bundled("iris", seed=0)
    variants = [Variant(fb, None, "bn", s) for s in (0, 1, 2) for fb in ("backprop", "sign")]
    variants += [Variant("sign", None, "sgd", s, lr) for s in (0, 1, 2) for lr in (1e-4, 0.1)]
    args = (split.x_train, split.y_train, split.x_test, split.y_test, variants)
    res = train_feedback_grid(*args, hidden=(8,), steps=30, n_evals=2)
    fast = train_feedback_grid(*args, hidden=(8,), steps=30, n_evals=2, angles=False)
    # skipping the angle changes nothing else: same curves, angle NaN
    assert np.array_equal(res.test_acc, fast.test_acc)
    assert np.allclose(res.train_loss, fast.train_loss, equal_nan=True)
    assert np.isnan(fast.angle).all()
    # paired difference: the mean and sd/√S of the per-seed differences (oracle: numpy)
    a, b = res.index("sign", "bn"), res.index("backprop", "bn")
    d = res.test_acc[a, -1] - res.test_acc[b, -1]
    mean, se = res.paired_difference(("sign", "bn"), ("backprop", "bn"))
    assert mean == pytest.approx(d.mean()) and se == pytest.approx(d.std(ddof=1) / 3**0.5)
    # best step by training loss: a step of 1e-4 barely moves in 30 steps
    assert res.best_lr("sign", "sgd", (1e-4, 0.1)) == 0.1


@pytest.mark.parametrize(("rows", "widths"), [("mixed", [5, 7, 6, 3]), ("sorted", [5, 7, 6, 3]),
                                             ("sorted", [5, 4, 4, 4, 4, 3])])  # full mode's depth
def test_hand_written_pass_equals_autograd(rows, widths):
    """loss_and_grads (no autograd graph) gives autograd's loss, gradients and batch-norm
    running statistics, for every feedback and rule, with the rules' rows mixed or in runs."""
    variants = [Variant(fb, q, rule, s) for s in (0, 1) for rule in ("sgd", "bn", "bm")
                for fb, q in (("backprop", None), ("sign", None), ("sign", 0.25),
                              ("fixed_random_sign", None), ("batch_random_sign", None),
                              ("random", None))]
    if rows == "sorted":
        variants.sort(key=lambda v: v.rule)
    nets = [BatchedFeedbackMLP(widths, variants, scale=0.5, dtype=torch.float64)
            for _ in range(2)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(variants), 8, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (len(variants), 8), generator=gen)
    loss = nets[0].loss(x, y)
    expected = torch.autograd.grad(loss.sum(), nets[0].parameters())
    got_loss, got = nets[1].loss_and_grads(x, y)
    assert torch.allclose(got_loss, loss.detach(), atol=1e-12)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and torch.allclose(g, e, atol=1e-12)
    for pair0, pair1 in zip(nets[0].running, nets[1].running, strict=True):
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(pair0, pair1, strict=True))
    true = torch.autograd.grad(nets[0].loss(x, y, true_gradient=True).sum(), nets[0].weights)
    _, got_true = nets[1].loss_and_grads(x, y, true_gradient=True)
    assert all(torch.allclose(g, e, atol=1e-12) for g, e in zip(got_true, true, strict=False))


def test_stacked_feedback_matrices_follow_the_table():
    """V of every model (α ∘ W + A ∘ sign(W) + B) equals feedback_matrix of its variant, also
    after the batch-random magnitudes are redrawn."""
    variants = [Variant(fb, q, "bm", 0) for fb, q in
                (("backprop", 0.5), ("sign", None), ("sign", 0.0), ("fixed_random_sign", None),
                 ("batch_random_sign", None), ("random", None))]
    net = BatchedFeedbackMLP([4, 5, 3], variants, scale=2.0, dtype=torch.float64)
    for redraw in (False, True):
        if redraw:
            net.redraw_magnitudes(torch.Generator().manual_seed(1))
        for l, vs in enumerate(net.feedback_matrices()):
            for m, v in enumerate(variants):
                oracle = weight_symmetry.feedback_matrix(
                    net.weights[l][m], v.feedback, sign_mask=net.masks[l][m],
                    magnitude=net.magnitudes[l][m], scale=2.0)
                assert torch.allclose(vs[m], oracle), (l, v)


def test_grid_at_full_mode_depth_with_one_evaluation():
    """Full mode's four hidden layers and the single final evaluation of the small sets."""
    split = helpers.bundled("wine", seed=0)
    variants = [Variant(fb, None, rule, s) for s in (0, 1) for rule in ("bn", "bm")
                for fb in ("backprop", "batch_random_sign")]
    res = train_feedback_grid(split.x_train, split.y_train, split.x_test, split.y_test,
                              variants, hidden=(6, 6, 6, 6), steps=12, n_evals=1, angles=False)
    assert res.test_acc.shape == (8, 1) and res.steps.tolist() == [12]
    assert res.variants == variants  # rows come back in the caller's order
    net = BatchedFeedbackMLP([13, 6, 6, 6, 6, 3], variants[:2])
    grads = torch.autograd.grad(net.loss(split.x_train[:16].expand(2, -1, -1),
                                         split.y_train[:16].expand(2, -1)).sum(), net.weights)
    assert len(grads) == 5


def test_inverse_permutation_equals_argsort():
    """One scatter gives the ranks that a second argsort would (oracle: argsort)."""
    from helpers.topics.weight_symmetry.feedback import inverse_permutation

    gen = torch.Generator().manual_seed(0)
    perm = torch.rand(4, 50, generator=gen).argsort(-1)
    assert torch.equal(inverse_permutation(perm), perm.argsort(-1))


def test_workspace_pass_equals_fresh_network_and_eval_forward():
    """Repeated calls reuse the buffers without leaking state: a second network, fed the same
    batch once, gives the same gradients as a network on its second call; the evaluation
    forward equals the autograd path's forward in evaluation mode. The first layer is thin
    (3 → 5, stored transposed), so both layouts of ∂W are exercised."""
    variants = [Variant(fb, None, rule, 0) for rule in ("sgd", "bn", "bm")
                for fb in ("backprop", "sign", "batch_random_sign")]
    widths = [3, 5, 4, 2]
    nets = [BatchedFeedbackMLP(widths, variants, dtype=torch.float64) for _ in range(2)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(variants), 6, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(2, (len(variants), 6), generator=gen)
    nets[0].loss_and_grads(x[:, :, [2, 1, 0]], y)  # a first call on other data
    nets[0].running = [[r.clone() for r in pair] for pair in nets[1].running]
    _, a = nets[0].loss_and_grads(x, y)
    _, b = nets[1].loss_and_grads(x, y)
    assert not a[0].is_contiguous() and a[1].is_contiguous()
    assert all(torch.equal(g, h) for g, h in zip(a, b, strict=True))
    with torch.no_grad():
        expected = nets[1].forward(x, training=False)
    assert torch.allclose(nets[1]._forward_eval(x), expected, atol=1e-12)


def test_step_on_own_buffers_equals_step_on_copies():
    """The training loop's update (row views of the network's gradient buffers, made once)
    gives the same weights as the general update on copies of the same gradients."""
    variants = [Variant(fb, None, rule, 0) for rule in ("sgd", "bn", "bm")
                for fb in ("backprop", "sign", "random")]
    nets = [BatchedFeedbackMLP([4, 6, 5, 3], variants, dtype=torch.float64) for _ in range(2)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(variants), 8, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(3, (len(variants), 8), generator=gen)
    lr = torch.tensor([0.1, 0.05, 0.01]).repeat_interleave(3)
    for _ in range(3):  # the views stay valid across steps
        _, own = nets[0].loss_and_grads(x, y)
        nets[0].step(own, lr)
        _, grads = nets[1].loss_and_grads(x, y)
        nets[1].step([g.clone() for g in grads], lr)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
