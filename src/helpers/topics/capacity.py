"""Counting the functions a threshold architecture computes: enumeration, Cover, Baldi–Vershynin.

* :func:`threshold_functions` enumerates the linear threshold functions f(x) = [w·x > t] on
  {0,1}^n from integer weights |w_i| ≤ W (every threshold function has an integer realisation;
  the count stops growing once W is large enough: 1, 1, 2, 3, 5 for n = 1..5).
* :func:`arrangement_regions` counts the same functions independently: they are the regions of
  the central arrangement of the 2^n hyperplanes {(w, t) : w·x = t} in R^{n+1}, and Whitney's
  formula gives the number of regions as Σ_{S ⊆ hyperplanes} (−1)^{|S| − rank S}.
* :func:`lp_separable` decides linear separability of many labelings at once with one sparse
  linear program (scipy's HiGHS): min Σ ξ subject to y_i w·x_i ≥ 1 − ξ_i, ξ ≥ 0, block by block;
  a labeling is separable iff its block's optimum is 0.
* :func:`cover_count` is Cover's (1965) function-counting theorem: m points in general position
  in R^d have C(m, d) = 2 Σ_{k<d} binom(m−1, k) homogeneously separable labelings.
* :func:`count_functions` counts exactly the Boolean functions {0,1}^n → {0,1} that a tiny
  layered threshold architecture A(n, n_2, …, n_{L−1}, 1) computes, layer by layer;
  :func:`cover_upper_bound` is the upper bound that Cover's count gives gate by gate.
* :func:`capacity_formula` is Baldi & Vershynin's (2019) capacity of a layered threshold
  architecture, C(n_1, …, n_L) ≍ Σ_{k=1}^{L−1} min(n_1, …, n_k) n_k n_{k+1} (up to constants).

Introduced in the chapter "The capacity of feedforward networks".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sps
from scipy.optimize import linprog

from helpers.core.validation import check_int, check_ints


def _check_n(n: int, top: int = 6) -> None:
    check_int("n", n, low=1, high=top)


def cube(n: int) -> np.ndarray:
    """The 2^n vertices of {0,1}^n as rows, (2^n, n) int64; row k holds the binary digits of k."""
    _check_n(n)
    return (np.arange(2**n)[:, None] >> np.arange(n)) & 1


def threshold_functions(n: int, max_weight: int) -> np.ndarray:
    """Truth tables of all f(x) = [w·x > t] on {0,1}^n with integer |w_i| ≤ max_weight.

    A truth table is an integer whose bit k is f(x_k), x_k the k-th row of ``cube(n)``. Only
    half-integer thresholds t matter, from below the smallest to above the largest w·x.

    Returns:
        Sorted unique truth tables, uint64 array.
    """
    _check_n(n)
    check_int("max_weight", max_weight, low=0)
    weights = np.array(list(itertools.product(range(-max_weight, max_weight + 1), repeat=n)))
    sums = weights @ cube(n).T  # (M, 2^n) integer values of w·x
    bits = np.uint64(1) << np.arange(2**n, dtype=np.uint64)
    tables = [((sums > t).astype(np.uint64) * bits).sum(axis=1, dtype=np.uint64)
              for t in range(-n * max_weight - 1, n * max_weight + 1)]  # t + 1/2 in effect
    return np.unique(np.concatenate(tables))


def truth_table_matrix(tables: np.ndarray, n: int) -> np.ndarray:
    """Truth tables (uint64) as a (K, 2^n) array of 0/1 labels."""
    _check_n(n)
    tables = np.asarray(tables, dtype=np.uint64)
    return ((tables[:, None] >> np.arange(2**n, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)


def depends_on_all(tables: np.ndarray, n: int) -> np.ndarray:
    """Whether each function depends on every one of its n variables, (K,) bool."""
    f = truth_table_matrix(tables, n)
    idx = np.arange(2**n)
    return np.all([(f != f[:, idx ^ (1 << i)]).any(axis=1) for i in range(n)], axis=0)


def arrangement_regions(vectors: np.ndarray) -> int:
    """Regions of the central arrangement {v : a_i·v = 0}, by Whitney's formula.

    r = Σ_{S ⊆ {1..m}} (−1)^{|S| − rank(a_S)}: a sum over all 2^m subsets (m ≤ 20 here). For the
    rows (x, 1), x ∈ {0,1}^n, it counts the threshold functions of n variables.
    """
    a = np.asarray(vectors, dtype=np.float64)
    if a.ndim != 2 or not 1 <= a.shape[0] <= 20:
        raise ValueError(f"vectors must be an (m, D) array with 1 ≤ m ≤ 20, got {a.shape}")
    m = a.shape[0]
    total = 0
    for chunk in np.array_split(np.arange(2**m), max(1, 2**m // 8192)):
        mask = ((chunk[:, None] >> np.arange(m)) & 1).astype(np.float64)  # (c, m)
        ranks = np.linalg.matrix_rank(mask[:, :, None] * a[None], tol=1e-9)
        total += int(((-1) ** ((mask.sum(1).astype(int) - ranks) % 2)).sum())
    return total


def lp_separable(points: np.ndarray, labels: np.ndarray, *, bias: bool = False,
                 tol: float = 1e-6) -> np.ndarray:
    """Decide, by linear programming, which labelings are linearly separable.

    For labeling k, solve min Σ_i ξ_i s.t. y_ki w_k·x_ki ≥ 1 − ξ_i, ξ ≥ 0; all K problems go into
    one block-diagonal sparse LP (scipy.optimize.linprog, HiGHS). Labeling k is separable (some
    w_k has y_ki w_k·x_ki > 0 for all i) iff its block's optimum is 0.

    Args:
        points: (m, d) shared points, or (K, m, d) one point set per labeling.
        labels: (K, m) labels in {−1, +1} (0/1 labels are mapped to −1/+1).
        bias: append a constant coordinate 1 (affine instead of homogeneous separation).
        tol: optimum below which a block counts as zero.

    Returns:
        (K,) bool.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"labels must have shape (K, m), got {y.shape}")
    if set(np.unique(y)) <= {0.0, 1.0}:
        y = 2 * y - 1
    if not set(np.unique(y)) <= {-1.0, 1.0}:
        raise ValueError("labels must be in {-1, +1} or {0, 1}")
    x = np.asarray(points, dtype=np.float64)
    K, m = y.shape
    if x.ndim == 2:
        x = np.broadcast_to(x, (K, *x.shape))
    if x.ndim != 3 or x.shape[:2] != (K, m):
        raise ValueError(f"points must have shape (m, d) or (K, m, d) with K={K}, m={m}")
    if bias:
        x = np.concatenate([x, np.ones((K, m, 1))], axis=2)
    d = x.shape[2]
    rows = np.arange(K * m)
    coef = -(y[:, :, None] * x).reshape(K * m, d)  # −y x·w − ξ ≤ −1
    w_cols = (np.arange(K)[:, None] * d + np.arange(d)).repeat(m, axis=0)  # (K m, d)
    a_ub = sps.csr_matrix((np.concatenate([coef.ravel(), -np.ones(K * m)]),
                           (np.concatenate([rows.repeat(d), rows]),
                            np.concatenate([w_cols.ravel(), K * d + rows]))),
                          shape=(K * m, K * (d + m)))
    c = np.concatenate([np.zeros(K * d), np.ones(K * m)])
    bounds = [(None, None)] * (K * d) + [(0, None)] * (K * m)
    res = linprog(c, A_ub=a_ub, b_ub=-np.ones(K * m), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    slack = res.x[K * d:].reshape(K, m).sum(axis=1)
    return slack < tol


def cover_count(m: int, d: int) -> int:
    """Cover's C(m, d) = 2 Σ_{k=0}^{d−1} binom(m−1, k): separable labelings of m points in R^d.

    Exact for points in general position (every d of them linearly independent), homogeneous
    separators w·x; an upper bound for any other m points.
    """
    m, d = check_int("m", m, low=1), check_int("d", d, low=1)
    return 2 * sum(math.comb(m - 1, k) for k in range(d))


def capacity_formula(widths: Sequence[int]) -> int:
    """Baldi–Vershynin capacity Σ_{k=1}^{L−1} min(n_1, …, n_k) n_k n_{k+1} of A(n_1, …, n_L).

    n_1 is the number of inputs and n_L of outputs. The true capacity (log2 of the number of
    Boolean functions the threshold architecture computes) equals this up to absolute constant
    factors (Baldi & Vershynin 2019); for one layer C(n, m) = n² m (1 + o(1)).
    """
    widths = _check_widths(widths)
    return int(sum(min(widths[:k + 1]) * widths[k] * widths[k + 1]
                   for k in range(len(widths) - 1)))


def _check_widths(widths: Sequence[int]) -> list[int]:
    widths = check_ints("widths", list(widths) if isinstance(widths, tuple) else widths, low=1)
    if len(widths) < 2:
        raise ValueError(f"widths must hold at least 2 layer sizes, got {widths}")
    return widths


def count_functions(widths: Sequence[int]) -> int:
    """Exact number of Boolean functions {0,1}^n → {0,1} computed by A(n, n_2, …, 1).

    Every gate computes a threshold function of the layer below; a layer's map on the 2^n
    inputs is an array of codes (bit j = gate j's output). Layer by layer, every multiset of
    threshold functions of the previous width (gates are interchangeable, so multisets
    suffice) is applied to every distinct map so far, and duplicates are dropped. Enumeration,
    so only for tiny architectures (n ≤ 4, widths ≤ 3; CPU work).
    """
    widths = _check_widths(widths)
    if widths[-1] != 1 or widths[0] > 4 or max(widths[1:]) > 3:
        raise ValueError(f"widths must be (n ≤ 4, hidden widths ≤ 3, …, 1), got {widths}")
    maps = np.arange(2 ** widths[0])[None, :]  # (1, 2^n): the identity map, codes of inputs
    for prev, width in zip(widths[:-1], widths[1:], strict=True):
        gates = truth_table_matrix(_all_threshold_functions(prev), prev)  # (T, 2^prev)
        combos = np.array(list(itertools.combinations_with_replacement(range(len(gates)),
                                                                       width)))  # (M, width)
        # Each gate's output on every old map, (T, maps, 2^n); a new map packs `width` of them
        # into one code per input, and the whole map into one integer key (≤ 2^n · 3 bits).
        out = gates[:, maps].astype(np.int64)  # (T, maps, 2^n)
        weights = np.int64(1) << (width * np.arange(maps.shape[1], dtype=np.int64))
        keys = set()
        for chunk in np.array_split(combos, max(1, len(combos) * len(maps) // 2_000_000)):
            code = sum(out[chunk[:, j]] << j for j in range(width))  # (c, maps, 2^n)
            keys.update(np.unique(code @ weights).tolist())
        keys = np.array(sorted(keys), dtype=np.int64)
        maps = (keys[:, None] >> (width * np.arange(maps.shape[1]))) & ((1 << width) - 1)
    return len(maps)


def _all_threshold_functions(n: int) -> np.ndarray:
    """Every threshold function of n ≤ 4 variables (integer weights up to 3 suffice)."""
    return threshold_functions(n, {1: 1, 2: 1, 3: 2, 4: 3}[check_int("n", n, low=1, high=4)])


def cover_upper_bound(widths: Sequence[int]) -> float:
    """log2 of the bound Σ_k n_{k+1} log2 C(m_k, n_k + 1) on the functions of A(n_1, …, n_L).

    Gate by gate, as in the upper half of Baldi & Vershynin's theorem: a gate of layer k + 1
    sees at most m_k = 2^{min(n_1, …, n_k)} distinct input patterns (a layer of n_j gates has at
    most 2^{n_j} output patterns), points in R^{n_k} with a threshold, i.e. homogeneous in
    R^{n_k + 1}, so by Cover's count it computes at most C(m_k, n_k + 1) functions of them.
    """
    widths = _check_widths(widths)
    return float(sum(widths[k + 1] * math.log2(cover_count(2 ** min(widths[:k + 1]),
                                                           widths[k] + 1))
                     for k in range(len(widths) - 1)))
