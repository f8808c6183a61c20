"""Non-negative networks: order preservation, the XOR bound, the best monotone classifier."""

from itertools import product

import numpy as np
import pytest
import torch

import helpers.topics.negative_weights as mo


def test_forward_matches_a_plain_loop():
    params = mo.init_mlps([3, 5, 4, 2], 3, nonnegative=False, seed=0)
    x = torch.randn(7, 3, dtype=torch.float64)
    out = mo.forward(params, x, torch.relu)
    for r in range(3):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w[r].T + b[r]
            h = torch.relu(h) if i < len(params) - 1 else h
        assert torch.allclose(out[r], h)


@pytest.mark.parametrize("activation", [torch.tanh, torch.relu, torch.sigmoid])
def test_nonnegative_networks_preserve_order(activation):
    params = mo.init_mlps([4, 16, 16, 2], 5, nonnegative=True, seed=1)
    assert mo.is_nonnegative(params)
    x, y = mo.ordered_pairs(20_000, 4, seed=2)
    assert (x <= y).all()
    assert mo.monotonicity_violations(params, x, y, activation).sum() == 0
    # the property is real: with signed weights most models violate it
    signed = mo.init_mlps([4, 16, 16, 2], 5, nonnegative=False, seed=1)
    assert (mo.monotonicity_violations(signed, x, y, activation) > 0).all()


def test_jacobian_of_nonnegative_network_is_nonnegative():
    params = mo.init_mlps([3, 8, 8, 1], 1, nonnegative=True, seed=3)
    x = torch.randn(50, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda z: mo.forward(params, z)[0, :, 0].sum(), x)
    assert (jac >= 0).all()


def test_training_keeps_weights_nonnegative_and_hits_the_xor_bound():
    x, y = mo.xor_data()
    trained = mo.train_classifiers(mo.init_mlps([2, 8, 8, 1], 16, nonnegative=True, seed=4),
                                   x, y, steps=200, lr=0.05, nonnegative=True)
    assert mo.is_nonnegative(trained)
    acc = mo.accuracy(trained, x, y)
    assert acc.max() == 0.75  # the bound, and it is attained
    free = mo.train_classifiers(mo.init_mlps([2, 8, 8, 1], 16, nonnegative=False, seed=4),
                                x, y, steps=200, lr=0.05)
    assert mo.accuracy(free, x, y).max() == 1.0


def test_only_selected_layers_are_projected():
    x, y = mo.xor_data()
    trained = mo.train_classifiers(mo.init_mlps([2, 8, 1], 4, nonnegative=False, seed=5), x, y,
                                   steps=50, nonnegative_layers=[1])
    assert (trained[1][0] >= 0).all() and (trained[0][0] < 0).any()


def _brute_force_best_monotone(x, y):
    n, best = len(x), 0.0
    below = [(i, j) for i in range(n) for j in range(n) if i != j and (x[i] <= x[j]).all()]
    for z in product([0, 1], repeat=n):
        if all(z[i] <= z[j] for i, j in below):
            best = max(best, float(np.mean(np.array(z) == y)))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_best_monotone_accuracy_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, 2))
    y = rng.integers(0, 2, 9)
    assert mo.best_monotone_accuracy(x, y) == _brute_force_best_monotone(x, y)


def test_best_monotone_accuracy_xor_and_trivial_cases():
    x, y = mo.xor_data()
    assert mo.best_monotone_accuracy(x, y) == 0.75
    # labels increasing along the order: an order-preserving classifier gets everything right
    pts = np.arange(6.0)[:, None]
    assert mo.best_monotone_accuracy(pts, np.array([0, 0, 0, 1, 1, 1])) == 1.0
    assert mo.best_monotone_accuracy(pts, np.array([1, 1, 1, 0, 0, 0])) == 0.5


@pytest.mark.parametrize("call,match", [
    (lambda: mo.init_mlps([2], 1, nonnegative=True), "widths"),
    (lambda: mo.init_mlps([2, 3, 1], 0, nonnegative=True), "n_models"),
    (lambda: mo.ordered_pairs(0, 2), "n must"),
    (lambda: mo.best_monotone_accuracy(np.zeros((3, 2)), np.array([0, 2, 1])), "labels"),
    (lambda: mo.best_monotone_accuracy(np.zeros((3, 2)), np.array([0, 1])), "x must"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_training_and_pairs_input():
    x, y = mo.xor_data()
    params = mo.init_mlps([2, 3, 1], 1, nonnegative=True)
    with pytest.raises(ValueError, match="steps"):
        mo.train_classifiers(params, x, y, steps=0)
    with pytest.raises(ValueError, match="lr"):
        mo.train_classifiers(params, x, y, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="nonnegative_layers"):
        mo.train_classifiers(params, x, y, steps=1, nonnegative_layers=[2])
    with pytest.raises(ValueError, match="y must"):
        mo.train_classifiers(params, x, y[:3], steps=1)
    with pytest.raises(ValueError, match="x <= y"):
        mo.monotonicity_violations(params, x, x - 1)


def test_smoke_chapter_circles():
    xtr, ytr = mo.circles(200, seed=0)
    xte, yte = mo.circles(300, seed=1)
    accs = {}
    for nonneg in (True, False):
        p = mo.train_classifiers(mo.init_mlps([2, 16, 16, 1], 4, nonnegative=nonneg, seed=0),
                                 xtr, ytr, steps=200, lr=0.05, nonnegative=nonneg)
        accs[nonneg] = mo.accuracy(p, xte, yte).max().item()
    assert accs[True] <= mo.best_monotone_accuracy(xte, yte) + 1e-12
    assert accs[False] - accs[True] >= 0.15


def test_violation_count_does_not_depend_on_chunking():
    signed = mo.init_mlps([4, 16, 2], 3, nonnegative=False, seed=2)
    x, y = mo.ordered_pairs(1000, 4, seed=5)
    whole = mo.monotonicity_violations(signed, x, y, chunk=10_000)
    assert whole.sum() > 0
    assert torch.equal(mo.monotonicity_violations(signed, x, y, chunk=7), whole)
    with pytest.raises(ValueError, match="chunk"):
        mo.monotonicity_violations(signed, x, y, chunk=0)
