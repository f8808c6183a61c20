"""Retrieval mAP, quantisers, Huffman code lengths and pruning (chapter "compression")."""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import entropy

import helpers
import helpers.topics.compression as hc


def test_map_perfect_and_against_a_hand_count():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    assert hc.retrieval_map(x, y, x, y) == pytest.approx(1.0)
    # one query; database ranked by similarity: relevant, irrelevant, relevant -> AP = (1 + 2/3)/2
    q = torch.tensor([[1.0, 0.0]])
    db = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]])
    assert hc.retrieval_map(q, torch.tensor([0]), db, torch.tensor([0, 1, 0])) == \
        pytest.approx((1 + 2 / 3) / 2)


def test_map_rejects_queries_without_relevant_items():
    with pytest.raises(ValueError, match="relevant"):
        hc.retrieval_map(torch.ones(1, 2), torch.tensor([3]), torch.ones(2, 2),
                         torch.tensor([0, 1]))


def test_huffman_lengths_satisfy_kraft_and_entropy_bounds():
    rng = np.random.default_rng(0)
    symbols = rng.choice(8, size=5000, p=[0.4, 0.2, 0.1, 0.1, 0.08, 0.06, 0.04, 0.02])
    lengths = hc.huffman_lengths(symbols)
    assert sum(2.0 ** -length for length in lengths.values()) == pytest.approx(1.0)
    counts = Counter(symbols.tolist())
    h_bits = entropy(list(counts.values()), base=2)
    mean_len = hc.huffman_bits(symbols) / symbols.size
    assert h_bits <= mean_len < h_bits + 1
    # dyadic probabilities: Huffman is exactly the entropy
    dyadic = np.repeat([0, 1, 2, 3], [8, 4, 2, 2])
    assert hc.huffman_bits(dyadic) == 8 * 1 + 4 * 2 + 2 * 3 + 2 * 3


def test_uniform_quantizer_error_is_half_a_step():
    w = np.random.default_rng(1).normal(size=1000)
    s, levels = hc.uniform_quantize(w, 3)
    step = (w.max() - w.min()) / 7
    assert levels.size == 8 and np.abs(levels[s] - w).max() <= step / 2 + 1e-12


def test_kmeans_quantizer_beats_uniform_in_mse():
    w = np.random.default_rng(2).standard_t(3, size=2000)  # heavy tails: uniform levels waste range
    for bits in (2, 3):
        su, lu = hc.uniform_quantize(w, bits)
        sk, lk = hc.kmeans_quantize(w, bits)
        assert ((lk[sk] - w) ** 2).mean() < ((lu[su] - w) ** 2).mean()


def test_magnitude_mask_keeps_largest():
    w = np.array([0.1, -3.0, 0.5, -0.2, 2.0])
    assert hc.magnitude_mask(w, 0.4).tolist() == [False, True, True, False, True]
    with pytest.raises(ValueError, match="sparsity"):
        hc.magnitude_mask(w, 1.0)


def test_compress_sizes_and_levels():
    net = helpers.MLP([5, 7, 3], seed=0)
    c = hc.compress(net, "kmeans", bits=2)
    assert c.original_bits == 32 * (5 * 7 + 7 + 7 * 3 + 3)
    for layer in c.model:
        if isinstance(layer, torch.nn.Linear):
            assert torch.unique(layer.weight).numel() <= 4
    p = hc.compress(net, "prune", sparsity=0.5)
    first = p.model[0].weight
    assert (first == 0).sum() == round(0.5 * first.numel())
    assert p.bits == (35 + 32 * 18) + (21 + 32 * 10) + 32 * 10  # mask + survivors + biases
    # input model untouched
    assert torch.unique(net[0].weight).numel() == 35


@pytest.mark.parametrize("kwargs", [dict(method="zip"), dict(method="kmeans", bits=0),
                                    dict(method="prune", sparsity=-0.1)])
def test_compress_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        hc.compress(helpers.MLP([2, 3, 2], seed=0), **kwargs)


def test_tradeoff_smoke():
    data = helpers.digits(seed=0)
    net = helpers.MLP([64, 16, 10], seed=0)
    recs = hc.tradeoff(net, data.x_test[:60], data.y_test[:60], data.x_train[:200],
                       data.y_train[:200], bits=(1, 8), sparsities=(0.5,))
    assert {r["method"] for r in recs} == set(hc.METHODS) and len(recs) == 6
    assert all(0 < r["map"] <= 1 and r["ratio"] > 1 for r in recs)
    ratio = {r["bits"]: r["ratio"] for r in recs if r["method"] == "uniform"}
    assert ratio[1] > ratio[8]


def test_finetune_keeps_pruned_weights_at_zero_and_pipeline_smoke():
    from helpers.topics import compression as cp

    gen = torch.Generator().manual_seed(0)  # cpu: test data
    x = torch.randn(40, 8, generator=gen)  # cpu: test data
    y = (x[:, 0] > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    pruned, full = cp.prune_finetune_quantize(net, x, y, sparsity=0.5, bits=2, steps=5)
    tuned = cp.finetune(pruned.model, x, y, steps=5)
    for a, b in zip(pruned.model, tuned, strict=True):
        if isinstance(a, torch.nn.Linear):
            assert torch.equal(a.weight == 0, b.weight == 0)
    assert full.ratio > pruned.ratio > 1
    ap = cp.query_ap(x[:10], y[:10], x[10:], y[10:])
    assert ap.shape == (10,)
    assert ap.mean() == pytest.approx(cp.retrieval_map(x[:10], y[:10], x[10:], y[10:]))
