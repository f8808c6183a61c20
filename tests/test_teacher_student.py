"""Tests for helpers.topics.teacher_student: batch-norm backward projection and student training."""

import pytest
import torch

from helpers.topics.teacher_student import (
    Teacher,
    batch_norm_train,
    best_correlations,
    bn_projected_gradient,
    eps_leak,
    make_teacher,
    order_concordance,
    relu_nodes,
    stack_teachers,
    train_students,
)

F64 = torch.float64


def _batch(seed=0, n=32, c=5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, dtype=F64, generator=gen) * 3 + 1
    return x, torch.randn(n, c, dtype=F64, generator=gen)


def test_batch_norm_matches_torch():
    x, _ = _batch()
    ref = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-3)
    torch.testing.assert_close(batch_norm_train(x, eps=1e-3), ref)


def test_backward_is_the_projection_at_eps_zero():
    x, g = _batch(1)
    x.requires_grad_()
    (batch_norm_train(x) * g).sum().backward()
    torch.testing.assert_close(x.grad, bn_projected_gradient(x.detach(), g), rtol=1e-12, atol=1e-12)
    xhat = batch_norm_train(x.detach())
    assert (x.grad.sum(0).abs() < 1e-12).all() and ((x.grad * xhat).sum(0).abs() < 1e-12).all()


def test_torch_eps_leaks_the_predicted_fraction():
    x, g = _batch(2)
    eps = 1e-2
    x.requires_grad_()
    (torch.nn.functional.batch_norm(x, None, None, training=True, eps=eps) * g).sum().backward()
    var, s = x.detach().var(0, unbiased=False), torch.sqrt(x.detach().var(0, unbiased=False) + eps)
    xhat = batch_norm_train(x.detach(), eps=eps)
    ratio = (x.grad * xhat).sum(0) / ((g * xhat).sum(0) / s)
    torch.testing.assert_close(ratio, eps_leak(var, eps), rtol=1e-8, atol=0)


def test_teacher_output_weights_and_norms():
    t = make_teacher(3, 7, 5, decay=2.0, seed=1)
    torch.testing.assert_close(t.w.norm(dim=-1), torch.ones(3, 5))
    torch.testing.assert_close(t.v, torch.tensor([[1, 1 / 4, 1 / 9, 1 / 16, 1 / 25]] * 3))
    x = torch.randn(10, 7)
    torch.testing.assert_close(t(x), relu_nodes(t.w, t.b, x) @ t.v[0])
    both = stack_teachers(t, make_teacher(2, 7, 5, decay=0.0, seed=2))
    assert both.w.shape == (5, 5, 7) and (both.v[3:] == 1).all()
    torch.testing.assert_close(both(x)[:3], t(x))


def test_best_correlation_is_one_for_a_copy_and_zero_for_dead_nodes():
    t = make_teacher(2, 6, 3, seed=0)
    x = torch.randn(2000, 6)
    w_s = torch.cat([t.w, torch.zeros(2, 1, 6)], dim=1)
    b_s = torch.cat([t.b, -torch.ones(2, 1)], dim=1)  # last student node never fires
    # float32 sums over 2000 inputs: rounding of order 1e-5
    torch.testing.assert_close(best_correlations(t, w_s, b_s, x), torch.ones(2, 3),
                               atol=1e-4, rtol=0)
    dead = best_correlations(t, torch.zeros(2, 1, 6), -torch.ones(2, 1), x)
    assert (dead == 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match=r"x\.shape\[0\] must"):
        batch_norm_train(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="eps"):
        batch_norm_train(torch.zeros(4, 3), eps=-1.0)
    with pytest.raises(ValueError, match="grad_out"):
        bn_projected_gradient(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="m must"):
        make_teacher(1, 3, 0)
    with pytest.raises(ValueError, match="n must"):
        train_students(make_teacher(1, 3, 2), 0, steps=10)
    with pytest.raises(ValueError, match="n must have 2"):
        train_students(make_teacher(2, 3, 2), [4], steps=10)
    with pytest.raises(ValueError, match="teachers"):
        stack_teachers()


def test_order_concordance_counts_censored_nodes_and_ties():
    inf = float("inf")
    first = torch.tensor([[100.0, 200.0, inf, inf],  # strong first, weak never: 1
                          [inf, inf, inf, inf],  # nothing matched: all ties, 1/2
                          [300.0, inf, 100.0, 200.0]])  # strong after weak: 0
    torch.testing.assert_close(order_concordance(first, [0, 1], [2, 3]),
                               torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_order_concordance_null_mean_and_variance():
    # Under a random order the share is 1/2 with variance (s + w + 1) / (12 s w).
    gen = torch.Generator().manual_seed(5)
    first = torch.stack([torch.randperm(5, generator=gen) for _ in range(20000)]).double()
    c = order_concordance(first, [0, 1, 2], [3, 4])
    se_mean = (1 / 12 / 20000) ** 0.5
    assert abs(c.mean().item() - 0.5) < 4 * se_mean
    assert c.var().item() == pytest.approx(6 / 72, rel=0.05)  # 5 standard errors of a variance


def test_students_of_different_sizes_train_in_one_run():
    teacher = make_teacher(1, 5, 3, seed=0)
    pairs = stack_teachers(teacher, teacher)
    mixed = train_students(pairs, [12, 3], steps=200, every=100, lr=1e-2, n_eval=500, seed=0)
    alone = train_students(teacher, 3, steps=200, every=100, lr=1e-2, n_eval=500, seed=0)
    assert mixed.correlations.shape == (3, 2, 3)
    # nodes beyond a student's size are inert: it learns only through its own 3 nodes, so
    # its correlations stay in [-1, 1] and its loss is finite (the draws differ from `alone`)
    assert torch.isfinite(mixed.final_loss).all() and torch.isfinite(alone.final_loss).all()
    assert (mixed.correlations.abs() <= 1 + 1e-5).all()


def test_smoke_students_learn_the_strongest_node():
    torch.manual_seed(0)
    teacher = make_teacher(2, 5, 3, seed=0)
    run = train_students(teacher, 12, steps=400, every=100, lr=1e-2, n_eval=1000, seed=0)
    assert run.correlations.shape == (5, 2, 3) and run.first_match.shape == (2, 3)
    assert run.correlations[-1, :, 0].mean() > run.correlations[0, :, 0].mean()
    assert isinstance(teacher, Teacher)
    finite = run.first_match[run.first_match.isfinite()]
    assert (finite <= 400).all()  # matched nodes have a recorded step, the rest inf
