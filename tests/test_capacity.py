"""Threshold-function enumeration against OEIS, Whitney's formula and linear programming."""

import math
from itertools import product

import numpy as np
import pytest

import helpers.topics.capacity as cp

# OEIS A000609 (threshold functions of n or fewer variables) and A000615 (of exactly n).
A000609 = {1: 4, 2: 14, 3: 104, 4: 1882}
A000615 = {1: 2, 2: 8, 3: 72, 4: 1536}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_enumeration_matches_oeis_and_whitney(n):
    tables = cp.threshold_functions(n, 3)
    assert len(tables) == A000609[n]
    assert cp.depends_on_all(tables, n).sum() == A000615[n]
    rows = np.concatenate([cp.cube(n), np.ones((2**n, 1))], axis=1)
    assert cp.arrangement_regions(rows) == A000609[n]


def test_too_small_weights_miss_functions():
    assert len(cp.threshold_functions(4, 2)) < A000609[4]
    assert len(cp.threshold_functions(3, 1)) < A000609[3]


def test_truth_table_encoding():
    # bit k of the table is f(x_k) with x_k the binary digits of k: AND of 2 variables is 0b1000
    tables = set(cp.threshold_functions(2, 1).tolist())
    assert 0b1000 in tables and 0b1110 in tables  # AND, OR
    assert 0b0110 not in tables and 0b1001 not in tables  # XOR, XNOR
    np.testing.assert_array_equal(cp.truth_table_matrix(np.array([0b1000]), 2), [[0, 0, 0, 1]])


def test_lp_classifies_all_boolean_functions_of_three_variables():
    every = np.arange(256, dtype=np.uint64)
    separable = cp.lp_separable(cp.cube(3), cp.truth_table_matrix(every, 3), bias=True)
    assert set(every[separable].tolist()) == set(cp.threshold_functions(3, 2).tolist())


def test_lp_separable_on_points_with_known_answers():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = np.array([[1, 1, -1, -1], [1, -1, 1, -1], [1, 1, 1, 1], [1, -1, -1, 1]])
    # a homogeneous separator gives x and -x opposite signs: labelings that put them in the
    # same class are impossible, the antisymmetric ones are realised by w = (1, 1), (1, -1)
    np.testing.assert_array_equal(cp.lp_separable(x, labels), [True, False, False, True])


def test_cover_count_small_cases_by_brute_force():
    # m points in general position on a line through no point (d = 1): only the two constant
    # sign patterns of w·x are homogeneous, C(m, 1) = 2; in the plane C(m, 2) = 2m.
    assert all(cp.cover_count(m, 1) == 2 for m in range(1, 6))
    assert all(cp.cover_count(m, 2) == 2 * m for m in range(1, 8))
    assert all(cp.cover_count(m, d) == 2**m for d in range(1, 6) for m in range(1, d + 1))
    assert cp.cover_count(10, 5) == 2**9  # m = 2d: exactly half of the labelings


def test_cover_count_matches_lp_on_all_labelings():
    # every labeling of 6 Gaussian points in R^3, decided by LP, against C(6, 3) exactly
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3))
    labels = np.array(list(product([-1, 1], repeat=6)))
    assert cp.lp_separable(x, labels).sum() == cp.cover_count(6, 3)


def test_cube_is_not_in_general_position():
    for n, bound_is_tight in [(1, True), (2, True), (3, False), (4, False)]:
        assert (cp.cover_count(2**n, n + 1) == A000609[n]) == bound_is_tight
        assert cp.cover_count(2**n, n + 1) >= A000609[n]


def test_capacity_formula():
    n, m = 10, 7
    assert cp.capacity_formula([n, m]) == n**2 * m
    # bottleneck: a narrow first hidden layer caps every later term
    assert cp.capacity_formula([8, 2, 8, 1]) == 8 * 8 * 2 + 2 * 2 * 8 + 2 * 8 * 1
    assert cp.capacity_formula([5, 5, 5]) == 250
    # deep beats shallow at a fixed hidden budget N exactly when N > 2n + 2 (chapter)
    n = 6
    for N in range(2 * n, 40, 2):
        deep, shallow = cp.capacity_formula([n, N // 2, N // 2, 1]), cp.capacity_formula([n, N, 1])
        assert (deep > shallow) == (N > 2 * n + 2)


@pytest.mark.parametrize("call,match", [
    (lambda: cp.cube(0), "n must"),
    (lambda: cp.threshold_functions(2, -1), "max_weight"),
    (lambda: cp.cover_count(0, 2), "m must"),
    (lambda: cp.capacity_formula([3]), "widths"),
    (lambda: cp.lp_separable(np.zeros((3, 2)), np.array([[1, 2, 1]])), "labels"),
    (lambda: cp.lp_separable(np.zeros((3, 2)), np.array([[1, -1]])), "points"),
    (lambda: cp.arrangement_regions(np.zeros((21, 2))), "vectors"),
])
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_smoke_chapter_cover_experiment():
    rng = np.random.default_rng(1)
    d, m, K = 3, 6, 300
    x = rng.standard_normal((m, d))
    frac = cp.lp_separable(x, rng.choice([-1, 1], (K, m))).mean()
    p = cp.cover_count(m, d) / 2**m
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / K)


def test_count_functions_tiny_architectures():
    # one gate: the threshold functions; two hidden gates on two inputs: all 16 (XOR included)
    assert cp.count_functions([2, 1]) == 14 and cp.count_functions([3, 1]) == 104
    assert cp.count_functions([2, 2, 1]) == 16
    # a chain of single gates adds nothing beyond negation and constants
    assert cp.count_functions([3, 1, 1, 1]) == cp.count_functions([3, 1]) == 104
    # A(3, 2, 1) misses exactly parity and its negation
    assert cp.count_functions([3, 2, 1]) == 254
    with pytest.raises(ValueError, match="widths"):
        cp.count_functions([3, 2, 2])
    with pytest.raises(ValueError, match="widths"):
        cp.count_functions([3])


def test_cover_upper_bound_is_the_gate_by_gate_sum():
    # A(2, 1): one gate on 4 points in R^3 (homogeneous): C(4, 3) = 14 = T(2), tight
    assert cp.cover_upper_bound([2, 1]) == pytest.approx(math.log2(14))
    expected = 2 * math.log2(cp.cover_count(8, 4)) + math.log2(cp.cover_count(4, 3))
    assert cp.cover_upper_bound([3, 2, 1]) == pytest.approx(expected)
    for widths in ([2, 2, 1], [3, 2, 1], [3, 1, 1, 1], [2, 1, 2, 1]):
        assert math.log2(cp.count_functions(widths)) <= cp.cover_upper_bound(widths)
