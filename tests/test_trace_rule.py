"""Tests for helpers.trace_rule: Földiák's trace rule over stored templates."""

import pytest
import torch

from helpers.topics.temporal_association.trace_rule import (
    foldiak_trace,
    foldiak_trace_batched,
    invariance_index,
    label_accuracy,
    match_purity,
    template_codes,
    trace_experiment,
    trace_runs,
    trace_sweep,
    winners,
)
from helpers.topics.temporal_association.videos import make_videos


def test_template_codes_keep_the_best_matches():
    gen = torch.Generator().manual_seed(0)
    templates = torch.randn(20, 30, generator=gen, dtype=torch.float64)
    frames = templates[:5] * 3.0  # a scaled template matches itself with cosine 1
    codes = template_codes(frames, templates, keep=4)
    assert ((codes > 0).sum(1) <= 4).all()
    assert torch.allclose(codes.norm(dim=1), torch.ones(5, dtype=torch.float64))
    assert torch.equal(codes.argmax(1), torch.arange(5))
    cos = torch.nn.functional.normalize(frames, dim=1) @ torch.nn.functional.normalize(
        templates, dim=1).T
    kept = cos.topk(4, dim=1).indices.sort(1).values
    assert torch.equal((codes > 0).nonzero()[:, 1].reshape(5, -1).sort(1).values, kept)


def _one_hot_videos(n_videos=4, length=5):
    """Every frame its own template: only time can tell which frames belong together."""
    eye = torch.eye(n_videos * length, dtype=torch.float64)
    return eye.reshape(n_videos, length, -1)


def test_trace_binds_each_video_to_one_unit():
    codes = _one_hot_videos()
    W = foldiak_trace(codes, 4, delta=0.2, eta=0.2, epochs=20, seed=0)
    win = winners(W, codes)  # (S, T)
    assert (win == win[:, :1]).all(), win
    assert win[:, 0].unique().numel() == 4  # and different videos to different units


def test_without_trace_frames_are_not_bound():
    codes = _one_hot_videos()
    W = foldiak_trace(codes, 4, delta=1.0, eta=0.2, epochs=20, seed=0)
    win = winners(W, codes)
    assert not (win == win[:, :1]).all()


def _reference_trace(codes, n_units, delta, eta, epochs, seed):
    """The rule as written in the module docstring, one frame at a time, with plain lists.

    Draws the initial weights and the video order from ``seed`` in the order the module
    documents: U picked codes, the jitter, then per epoch the directions and the order.
    """
    S, T, M = codes.shape
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(S * T, (n_units,), generator=gen)
    jitter = 0.01 * torch.rand(n_units, M, generator=gen, dtype=torch.float64) / M**0.5
    W = [[codes.reshape(-1, M)[pick[i], j].item() + jitter[i, j].item() for j in range(M)]
         for i in range(n_units)]
    rows = codes.tolist()
    for _ in range(epochs):
        backwards = (torch.rand(S, generator=gen) < 0.5).tolist()
        for s in torch.randperm(S, generator=gen).tolist():
            h, y_bar = [0.0] * n_units, [0.0] * n_units
            for r in (rows[s][::-1] if backwards[s] else rows[s]):
                drive = [sum(w * x for w, x in zip(W[i], r, strict=True)) for i in range(n_units)]
                h = [(1 - delta) * h[i] + delta * drive[i] for i in range(n_units)]
                win = max(range(n_units), key=h.__getitem__)
                y_bar = [(1 - delta) * y + (delta if i == win else 0.0)
                         for i, y in enumerate(y_bar)]
                W = [[w + eta * y_bar[i] * (x - w) for w, x in zip(W[i], r, strict=True)]
                     for i in range(n_units)]
    return torch.tensor(W, dtype=torch.float64)


def test_batched_trace_equals_reference_run_by_run():
    gen = torch.Generator().manual_seed(3)
    codes = torch.rand(3, 5, 4, 12, generator=gen, dtype=torch.float64)  # (R, S, T, M)
    codes = codes / codes.norm(dim=-1, keepdim=True)
    seeds, deltas, etas = [0, 17, 123456], [0.2, 1.0, 0.05], [0.1, 0.3, 0.2]
    W = foldiak_trace_batched(codes, 3, delta=deltas, eta=etas, epochs=3, seeds=seeds)
    assert W.shape == (3, 3, 12)
    for r in range(3):
        reference = _reference_trace(codes[r], 3, deltas[r], etas[r], 3, seeds[r])
        assert torch.allclose(W[r], reference, rtol=0, atol=1e-10), r
        one = foldiak_trace(codes[r], 3, delta=deltas[r], eta=etas[r], epochs=3, seed=seeds[r])
        assert torch.allclose(W[r], one, rtol=0, atol=1e-10), r


def test_batched_trace_shares_codes_across_runs():
    codes = _one_hot_videos()
    W = foldiak_trace_batched(codes, 4, delta=0.2, eta=0.2, epochs=5, seeds=[0, 1])
    for r, seed in enumerate([0, 1]):
        one = foldiak_trace(codes, 4, delta=0.2, eta=0.2, epochs=5, seed=seed)
        assert torch.allclose(W[r], one, rtol=0, atol=1e-10)


def test_label_accuracy_oracle():
    codes = torch.eye(4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    labelled = torch.tensor([True, True, False, False])
    W_good = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float64)
    W_bad = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0]], dtype=torch.float64)
    assert label_accuracy(W_good, codes, labels, labelled) == 1.0
    assert label_accuracy(W_bad, codes, labels, labelled) == 0.0


def test_invariance_index_extremes():
    labels = torch.tensor([0, 0, 1, 1])
    positions = torch.tensor([0, 1, 0, 1])
    selective = torch.nn.functional.one_hot(labels, 2).double()
    blind = torch.nn.functional.one_hot(positions, 2).double()
    assert invariance_index(selective, labels, positions) == pytest.approx(1.0)
    assert invariance_index(blind, labels, positions) == pytest.approx(0.0)


def test_match_purity():
    codes = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    purity = match_purity(codes, torch.tensor([0, 1, 1]), torch.tensor([0, 1]))
    assert purity == pytest.approx(2 / 3)


def test_bad_input():
    codes = _one_hot_videos()
    with pytest.raises(ValueError, match="delta"):
        foldiak_trace(codes, 2, delta=0.0, seed=0)
    with pytest.raises(ValueError, match="codes"):
        foldiak_trace(codes[0], 2, delta=0.5, seed=0)
    with pytest.raises(ValueError, match="delta"):
        foldiak_trace_batched(codes, 2, delta=[0.5, 1.5], seeds=[0, 1])
    with pytest.raises(ValueError, match="delta"):
        foldiak_trace_batched(codes, 2, delta=[0.5, 0.5, 0.5], seeds=[0, 1])
    with pytest.raises(ValueError, match="codes"):
        foldiak_trace_batched(codes[None].expand(3, -1, -1, -1), 2, delta=0.5, seeds=[0, 1])
    with pytest.raises(ValueError, match="seeds"):
        foldiak_trace_batched(codes, 2, delta=0.5, seeds=[])
    with pytest.raises(ValueError, match="keep"):
        template_codes(torch.ones(2, 3), torch.ones(2, 3), keep=5)
    with pytest.raises(TypeError, match="labelled"):
        label_accuracy(torch.ones(1, 2), torch.ones(2, 2), torch.tensor([0, 1]), torch.ones(2))


def test_smoke_chapter_experiment():
    train = make_videos(3, 3, n_positions=4, size=8, object_seed=0, seed=1)
    test = make_videos(3, 4, n_positions=4, size=8, object_seed=0, seed=2)
    clean = trace_experiment(train, test, 0.0, keep=3, n_units=6, epochs=8, seed=0)
    assert clean.W.shape == (6, 36)
    assert clean.accuracy > 1 / 3 and clean.pooling > 0.9
    runs = trace_runs(train, test, 0.5, runs=2, templates="object", keep=3, n_units=6,
                      epochs=4, seed=0)
    keys = {"accuracy", "invariance", "purity", "pooling"}
    assert set(runs) == keys | {f"{k}_se" for k in keys} | {f"{k}_runs" for k in keys}
    assert all(runs[f"{k}_se"] >= 0 for k in keys)
    assert all(len(runs[f"{k}_runs"]) == 2 for k in keys)
    assert runs["accuracy"] == pytest.approx(sum(runs["accuracy_runs"]) / 2)
    shuffled = trace_runs(train, test, 0.0, runs=2, shuffle=True, keep=3, n_units=6, epochs=4,
                          seed=0)
    boxed = trace_runs(train, test, 0.5, runs=2, templates="box", keep=3, n_units=6, epochs=4,
                       seed=0)
    assert 0 <= shuffled["accuracy"] <= 1 and 0 <= boxed["accuracy"] <= 1
    one_by_one = [trace_experiment(train, test, 0.5, templates="object", keep=3, n_units=6,
                                   epochs=4, seed=seed) for seed in (0, 1000)]
    assert runs["accuracy"] == pytest.approx(sum(r.accuracy for r in one_by_one) / 2)
    both = trace_sweep(train, test, [{"contrast": 0.0, "delta": 1.0, "n_units": 6},
                                     {"contrast": 0.5, "templates": "object", "keep": 3,
                                      "n_units": 6, "epochs": 4}], runs=2, seed=0)
    for key, value in runs.items():
        assert both[1][key] == pytest.approx(value, nan_ok=True), key
    with pytest.raises(TypeError, match="settings"):
        trace_sweep(train, test, [{"contrast": 0.0, "eta": 0.5}], runs=1, seed=0)


def test_smoke_full_mode_settings():
    """The chapter's full-mode path at a small size: more heads than quick mode's five, U = 2K
    units, overlapping positions (stride 1), a contrast grid and per-run curves."""
    K, P = 4, 6
    kw = dict(n_positions=P, size=8, stride=1, object_seed=0)
    train, test = make_videos(K, 3, seed=1, **kw), make_videos(K, 4, seed=2, **kw)
    assert train.objects.shape == (K * 3, P, 8, P - 1 + 8)
    base = {"n_units": 2 * K, "epochs": 3, "keep": 3}
    contrasts = [0.0, 0.1, 0.2]
    rows = trace_sweep(train, test, [{"contrast": c, "templates": kind, **base}
                                     for kind in ("whole", "object") for c in contrasts]
                       + [{"contrast": 0.0, "delta": 1.0, **base}], runs=2, seed=0)
    assert len(rows) == 2 * len(contrasts) + 1
    values = torch.tensor([r["accuracy_runs"] for r in rows[:len(contrasts)]],
                          dtype=torch.float64)  # (C, R)
    step = (values[:-1] - values[1:]).amax(0)
    assert step.shape == (2,) and (step.abs() <= 1).all()
    codes = template_codes(train.objects, train.objects, keep=3).flatten(0, 1)
    positions = train.positions.repeat(len(train.labels))
    assert 0 <= 1 - match_purity(codes, positions, positions) <= 1


def test_sweep_in_small_batches_equals_one_batch():
    train = make_videos(3, 2, n_positions=4, size=8, stride=4, object_seed=0, seed=1)
    test = make_videos(3, 4, n_positions=4, size=8, stride=4, object_seed=0, seed=2)
    settings = [{"contrast": c, "keep": 3, "n_units": 6, "epochs": 3} for c in (0.0, 0.4)]
    one = trace_sweep(train, test, settings, runs=3, seed=0, batch_size=64)
    small = trace_sweep(train, test, settings, runs=3, seed=0, batch_size=2)
    for a, b in zip(one, small, strict=True):
        assert a["accuracy_runs"] == pytest.approx(b["accuracy_runs"])
        assert a["invariance"] == pytest.approx(b["invariance"])
    with pytest.raises(ValueError, match="batch_size"):
        trace_sweep(train, test, settings, runs=1, seed=0, batch_size=0)
