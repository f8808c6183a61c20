"""Compressing a network used as a retrieval descriptor: quantisation, Huffman coding, pruning.

Chandrasekhar et al. (2017), "Compression of Deep Neural Networks for Image Instance
Retrieval", take the activations of a late layer as a global image descriptor and ask how far
the network's weights can be compressed before retrieval quality (mean average precision, mAP)
drops. The compression schemes follow the deep-compression recipe:

- uniform quantisation to ``2**bits`` equally spaced levels between a layer's extreme weights;
- k-means (non-uniform) quantisation, levels at the centroids of the layer's weights;
- Huffman coding of the level indices, so the stored size is the Huffman-coded length
  (at most one bit per weight above the entropy) plus a 32-bit codebook;
- magnitude pruning (the smallest weights of each layer set to zero), stored as a bitmask plus
  32 bits per surviving weight, and pruning followed by k-means with zero as its own symbol.

Biases are kept in float32 and counted in every size. Introduced in the chapter "Compressing
networks for instance retrieval".
"""

from __future__ import annotations

import copy
import heapq
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import average_precision_score
from torch import nn

from helpers.core.validation import check_int, check_positive

METHODS = ("uniform", "kmeans", "prune", "prune+kmeans")
FLOAT_BITS = 32


def descriptors(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """L2-normalised penultimate-layer activations ``h(x) / ‖h(x)‖``, shape (n, width)."""
    if not isinstance(model, nn.Sequential) or len(model) < 2:
        raise TypeError("model must be an nn.Sequential with at least two layers")
    h = x
    with torch.no_grad():
        for layer in list(model)[:-1]:  # all but the output layer
            h = layer(h)
    return torch.nn.functional.normalize(h, dim=1)


def retrieval_map(queries: torch.Tensor, query_labels: torch.Tensor,
                  database: torch.Tensor, database_labels: torch.Tensor) -> float:
    """Mean average precision of cosine-similarity retrieval, same class = relevant.

    Each query ranks the database by ``⟨q, d⟩ / (‖q‖ ‖d‖)``; its average precision is
    ``AP = Σ_k P(k) rel(k) / #relevant`` (scikit-learn's ``average_precision_score``), and
    mAP is the mean over queries.
    """
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise ValueError("queries and database must be (n, d) with the same d, got "
                         f"{tuple(queries.shape)} and {tuple(database.shape)}")
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    d = torch.nn.functional.normalize(database.double(), dim=1)
    scores = (q @ d.T).cpu().numpy()  # (n_queries, n_database)
    relevant = (query_labels[:, None] == database_labels[None, :]).cpu().numpy()
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant database item")
    return float(average_precision_score(relevant, scores, average="samples"))


def huffman_lengths(symbols: np.ndarray) -> dict[int, int]:
    """Code length of every symbol in an optimal (Huffman) prefix code for its frequencies.

    A single distinct symbol gets length 1. The expected length L satisfies H ≤ L < H + 1.
    """
    counts = Counter(np.asarray(symbols).ravel().tolist())
    if not counts:
        raise ValueError("symbols must not be empty")
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(c, i, [s]) for i, (s, c) in enumerate(counts.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:  # every merge adds one bit to the codes below it
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def huffman_bits(symbols: np.ndarray) -> int:
    """Total Huffman-coded length of the symbol stream, in bits."""
    lengths = huffman_lengths(symbols)
    counts = Counter(np.asarray(symbols).ravel().tolist())
    return int(sum(counts[s] * lengths[s] for s in counts))


def _check_bits(bits: int) -> None:
    check_int("bits", bits, low=1, high=16)


def uniform_quantize(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Round each weight to the nearest of ``2**bits`` equally spaced levels on [min w, max w].

    Returns (symbols, levels) with ``levels[symbols]`` the quantised weights.
    """
    _check_bits(bits)
    w = np.asarray(w, dtype=np.float64).ravel()
    levels = np.linspace(w.min(), w.max(), 2**bits)
    step = levels[1] - levels[0] if levels[-1] > levels[0] else 1.0
    symbols = np.clip(np.rint((w - levels[0]) / step), 0, 2**bits - 1).astype(np.int64)
    return symbols, levels


def kmeans_quantize(w: np.ndarray, bits: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means (Lloyd) quantisation of the weights to ``2**bits`` levels, linear initialisation.

    Minimises ``Σ_i (w_i − c_{s_i})²`` over levels c and assignments s (scikit-learn's KMeans).
    Returns (symbols, levels).
    """
    _check_bits(bits)
    w = np.asarray(w, dtype=np.float64).ravel()
    k = min(2**bits, np.unique(w).size)
    init = np.linspace(w.min(), w.max(), k)[:, None]
    km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit(w[:, None])
    return km.labels_.astype(np.int64), km.cluster_centers_.ravel()


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask keeping the ``1 − sparsity`` fraction of weights of largest magnitude."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    w = np.asarray(w).ravel()
    n_drop = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=bool)
    mask[np.argsort(np.abs(w), kind="stable")[:n_drop]] = False
    return mask


def _compress_layer(w: np.ndarray, method: str, bits: int, sparsity: float,
                    seed: int) -> tuple[np.ndarray, int]:
    """Compressed weights (same shape) and their stored size in bits."""
    flat = w.ravel().astype(np.float64)
    if method == "uniform":
        s, levels = uniform_quantize(flat, bits)
        return levels[s].reshape(w.shape), huffman_bits(s) + FLOAT_BITS * levels.size
    if method == "kmeans":
        s, levels = kmeans_quantize(flat, bits, seed=seed)
        return levels[s].reshape(w.shape), huffman_bits(s) + FLOAT_BITS * levels.size
    mask = magnitude_mask(flat, sparsity)
    if method == "prune":
        return np.where(mask, flat, 0.0).reshape(w.shape), flat.size + FLOAT_BITS * int(mask.sum())
    s, levels = kmeans_quantize(flat[mask], bits, seed=seed)
    symbols = np.zeros(flat.size, dtype=np.int64)  # symbol 0 = pruned, 1.. = k-means levels
    symbols[mask] = s + 1
    out = np.zeros(flat.size)
    out[mask] = levels[s]
    return out.reshape(w.shape), huffman_bits(symbols) + FLOAT_BITS * levels.size


@dataclass(frozen=True)
class Compressed:
    """A compressed copy of a model and its storage cost.

    Attributes:
        model: the network with compressed weights (float32, same architecture).
        bits: stored size in bits (weights as coded, biases in float32).
        original_bits: 32 bits per parameter.
    """

    model: nn.Sequential
    bits: int
    original_bits: int

    @property
    def ratio(self) -> float:
        """Compression ratio original_bits / bits."""
        return self.original_bits / self.bits


def compress(model: nn.Sequential, method: str, *, bits: int = 8, sparsity: float = 0.0,
             seed: int = 0) -> Compressed:
    """Compress every weight matrix of ``model`` layer by layer with ``method``.

    ``method`` is one of ``uniform``, ``kmeans`` (use ``bits``), ``prune`` (uses ``sparsity``)
    or ``prune+kmeans`` (both). The input model is not modified.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "prune":
        _check_bits(bits)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    out = copy.deepcopy(model)
    total = original = 0
    for layer in out:
        if not isinstance(layer, nn.Linear):
            continue
        w = layer.weight.detach().cpu().numpy()
        w_new, size = _compress_layer(w, method, bits, sparsity, seed)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(w_new, dtype=layer.weight.dtype,
                                               device=layer.weight.device))
        n_bias = layer.bias.numel() if layer.bias is not None else 0
        total += size + FLOAT_BITS * n_bias
        original += FLOAT_BITS * (w.size + n_bias)
    return Compressed(out, total, original)


def tradeoff(model: nn.Sequential, queries: torch.Tensor, query_labels: torch.Tensor,
             database: torch.Tensor, database_labels: torch.Tensor, *,
             bits: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8),
             sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95),
             combo_bits: int = 4, seed: int = 0) -> list[dict]:
    """mAP and size of every method at every setting: the rate–accuracy trade-off curve.

    Returns records ``{method, bits, sparsity, size_bits, ratio, map}``; ``prune+kmeans`` uses
    ``combo_bits`` bits for the surviving weights at each sparsity.
    """
    settings = ([("uniform", b, 0.0) for b in bits] + [("kmeans", b, 0.0) for b in bits]
                + [("prune", 0, s) for s in sparsities]
                + [("prune+kmeans", combo_bits, s) for s in sparsities])
    records = []
    for method, b, s in settings:
        c = compress(model, method, bits=b or 8, sparsity=s, seed=seed)
        m = retrieval_map(descriptors(c.model, queries), query_labels,
                          descriptors(c.model, database), database_labels)
        records.append(dict(method=method, bits=b, sparsity=s, size_bits=c.bits,
                            ratio=c.ratio, map=m))
    return records


def finetune(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, *, steps: int,
             lr: float = 1e-3, keep_zeros: bool = True) -> nn.Sequential:
    """A copy of ``model`` trained ``steps`` Adam steps on cross-entropy, zeros kept at zero.

    With ``keep_zeros`` the weights that are exactly zero (pruned) get their gradient masked
    and stay zero: the retraining step of deep compression (han2016deep), which lets the
    surviving weights make up for the pruned ones.
    """
    steps = check_int("steps", steps, low=1)
    out = copy.deepcopy(model)
    layers = [m for m in out if isinstance(m, nn.Linear)]
    masks = [(m.weight != 0).to(m.weight.dtype) for m in layers]
    opt = torch.optim.Adam(out.parameters(), lr=check_positive("lr", lr))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(out(x), y).backward()
        opt.step()
        if keep_zeros:
            with torch.no_grad():
                for m, keep in zip(layers, masks, strict=True):
                    m.weight.mul_(keep)
    return out


def prune_finetune_quantize(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, *,
                            sparsity: float, bits: int = 4, steps: int = 100, lr: float = 1e-3,
                            seed: int = 0) -> tuple[Compressed, Compressed]:
    """Deep compression's pipeline: prune, retrain the survivors, k-means quantise, Huffman code.

    Returns ``(pruned_only, pipeline)``: the pruned model without retraining (its stored size
    is that of the pruned weights) and the full pipeline (pruned, fine-tuned on ``(x, y)`` with
    the pruned weights held at zero, then ``prune+kmeans`` at ``bits`` bits, zero its own
    Huffman symbol).
    """
    pruned = compress(model, "prune", sparsity=sparsity, seed=seed)
    tuned = finetune(pruned.model, x, y, steps=steps, lr=lr)
    return pruned, compress(tuned, "prune+kmeans", bits=bits, sparsity=sparsity, seed=seed)


def query_ap(queries: torch.Tensor, query_labels: torch.Tensor, database: torch.Tensor,
             database_labels: torch.Tensor) -> np.ndarray:
    """Average precision of every query (cosine ranking, same class relevant), (n_queries,).

    Its mean is :func:`retrieval_map`; paired differences between two models give the
    standard error of a change in mAP.
    """
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    d = torch.nn.functional.normalize(database.double(), dim=1)
    scores = (q @ d.T).cpu().numpy()  # (n_queries, n_database)
    relevant = (query_labels[:, None] == database_labels[None, :]).cpu().numpy()
    return np.array([average_precision_score(r, s) for r, s in zip(relevant, scores,
                                                                   strict=True)])
