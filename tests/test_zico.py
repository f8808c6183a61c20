"""ZiCo scores, batched against one-by-one, and the search-space experiment (chapter "zico")."""

import math

import numpy as np
import pytest
import torch

import helpers
import helpers.topics.zico as hz


def test_layer_term_against_numpy():
    g = torch.randn(5, 2, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g[:, 1, :4] = 1.5  # constant gradients: std 0, left out
    expected = []
    for k in range(2):
        a = g[:, k].numpy()
        std = a.std(axis=0)
        keep = std > 0
        expected.append(math.log((np.abs(a).mean(axis=0)[keep] / std[keep]).sum()))
    assert torch.allclose(hz.zico_from_gradients(g), torch.tensor(expected, dtype=torch.float64))


def test_layer_term_is_scale_invariant_and_zero_for_dead_layers():
    g = torch.randn(4, 1, 10, dtype=torch.float64)
    assert torch.allclose(hz.zico_from_gradients(g), hz.zico_from_gradients(7.0 * g))
    assert hz.zico_from_gradients(torch.zeros(3, 2, 5)).eq(0).all()
    # a constant gradient is left out even where its mean over the batches rounds (3 × 0.1)
    assert hz.zico_from_gradients(torch.full((3, 1, 4), 0.1, dtype=torch.float64)).eq(0).all()
    with pytest.raises(ValueError, match="grads"):
        hz.zico_from_gradients(torch.zeros(1, 2, 5))


def test_batched_matches_one_by_one():
    data = helpers.digits(seed=0)
    seeds = [3, 4, 5]
    net = helpers.BatchedMLP([64, 16, 16, 10], seeds)
    batched = hz.zico_batched(net, data.x_train, data.y_train, seed=1)
    single = [hz.zico_score(net.model(k), data.x_train, data.y_train, seed=1) for k in range(3)]
    assert torch.allclose(batched.double(), torch.tensor(single, dtype=torch.float64), atol=1e-4)


def test_consistent_gradients_score_higher():
    # labels that are a function of the input give gradients that agree across batches
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 10, generator=gen)
    y_signal = (x[:, 0] > 0).long()
    y_noise = torch.randint(2, (512,), generator=gen)
    net = helpers.MLP([10, 32, 2], seed=0)
    assert hz.zico_score(net, x, y_signal) > hz.zico_score(net, x, y_noise)


def test_small_cnn_shapes_and_errors():
    cnn = hz.SmallCNN(4, 2, seed=0)
    assert cnn(torch.zeros(3, 64)).shape == (3, 10)
    assert hz.n_parameters(cnn) == (9 * 4 + 4) + (9 * 16 + 4) + (256 * 10 + 10)
    with pytest.raises(ValueError, match="channels"):
        hz.SmallCNN(0)
    with pytest.raises(TypeError, match="BatchedMLP"):
        hz.zico_batched(cnn, torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))


def test_search_space_smoke():
    data = helpers.digits(seed=0)
    res = hz.search_space(data.x_train, data.y_train, data.x_test, data.y_test, depths=(1, 2),
                          widths=(8, 32), cnn_channels=(4,), budgets=(5, 10), n_seeds=2)
    assert len(res.names) == 5 and np.array(res.accuracy).shape == (5, 2)
    assert res.params[:2] == [64 * 8 + 8 + 8 * 10 + 10, 64 * 32 + 32 + 32 * 10 + 10]
    # ZiCo adds one log-term per layer: the deeper net of each width scores higher
    assert res.zico[2] > res.zico[0] and res.zico[3] > res.zico[1]
    with pytest.raises(ValueError, match="budgets"):
        hz.search_space(data.x_train, data.y_train, data.x_test, data.y_test, budgets=(0,))


def test_batched_cnns_match_train_one_float64():
    # the K seeds trained at once take exactly the SGD steps of train_one, seed by seed
    data = helpers.digits(seed=0)
    x, y = data.x_train.double(), data.y_train
    cnn = hz.BatchedCNN(4, 2, [3, 4, 5]).double()
    hz._he_rescale(cnn.weights)
    singles = [cnn.model(k) for k in range(3)]
    for i, steps in enumerate((7, 13)):  # two budgets, each with its own batch stream
        helpers.train_batched(cnn, x, y, lr=0.1, steps=steps, batch_size=32, seed=i)
        for m in singles:
            helpers.train_one(m, x, y, lr=0.1, steps=steps, batch_size=32, seed=i)
    for k, m in enumerate(singles):
        start = hz.SmallCNN(4, 2, seed=3 + k).double()
        moved = max((p - q).abs().max().item()
                    for p, q in zip(m.parameters(), start.parameters(), strict=True))
        diff = max((p - q).abs().max().item()
                   for p, q in zip(m.parameters(), cnn.model(k).parameters(), strict=True))
        assert moved > 1e-3, f"model {k} did not train (moved {moved:.2e})"
        assert diff < 1e-8, f"model {k}: batched and one-by-one differ by {diff:.2e}"


def test_batched_cnn_forward_and_zico_match_small_cnns():
    data = helpers.digits(seed=0)
    seeds = [0, 7]
    cnn = hz.BatchedCNN(8, 2, seeds)
    out = cnn(data.x_test[:5])
    assert out.shape == (2, 5, 10)
    for k, s in enumerate(seeds):
        assert torch.allclose(out[k], hz.SmallCNN(8, 2, seed=s)(data.x_test[:5]), atol=1e-5)
    batched = hz.zico_batched(cnn, data.x_train, data.y_train, seed=1)
    single = [hz.zico_score(hz.SmallCNN(8, 2, seed=s), data.x_train, data.y_train, seed=1)
              for s in seeds]
    assert torch.allclose(batched, torch.tensor(single, dtype=torch.float64), atol=1e-4)
    assert hz.n_parameters(cnn) == 2 * hz.n_parameters(hz.SmallCNN(8, 2))


def test_batched_cnn_errors():
    cnn = hz.BatchedCNN(4, 2, [0, 1])
    with pytest.raises(ValueError, match="x must be"):
        cnn(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="seeds"):
        hz.BatchedCNN(4, 2, [])
    with pytest.raises(ValueError, match="steps"):
        helpers.train_batched(cnn, torch.zeros(4, 64), torch.zeros(4, dtype=torch.long), lr=0.1,
                              steps=0)
    with pytest.raises(TypeError, match="stacked model"):
        helpers.train_batched(hz.SmallCNN(4), torch.zeros(4, 64),
                              torch.zeros(4, dtype=torch.long), lr=0.1, steps=1)


def test_plain_seeds_ride_along_without_changing_the_he_models():
    data = helpers.digits(seed=0)
    args = (data.x_train, data.y_train, data.x_test, data.y_test)
    kw = dict(depths=(1,), widths=(8,), cnn_channels=(4,), budgets=(3, 6), n_seeds=2)
    alone = hz.search_space(*args, **kw)
    both = hz.search_space(*args, **kw, plain_seeds=2)
    # the He models (the first n_seeds of each stack) are the same models, trained alike
    assert both.zico == pytest.approx(alone.zico, rel=1e-5)
    assert np.allclose(both.accuracy, alone.accuracy)
    assert both.params == alone.params and alone.zico_plain == []
    assert np.array(both.accuracy_plain).shape == (2, 2) and len(both.zico_plain) == 2
    with pytest.raises(ValueError, match="plain_seeds"):
        hz.search_space(*args, **kw, plain_seeds=-1)
