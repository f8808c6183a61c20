"""Full-mode-only paths of the Optimisation chapters, exercised at a small size.

Every chapter of Part II switches to full mode through ``cfg.pick`` sizes only (no branch on
``cfg.quick`` in the chapters), except the heavy-tails chapter's rank-correlation block. The
size changes that alter a code path's *structure* are tested here, so that full mode cannot
fail on a shape or a name that quick mode never meets:

- implicit bias: k = 2 outputs (quick: 1) in the ReLU Hessian experiment;
- degenerate minima: walks along *all* W − n null directions (quick: 6);
- square loss: several batch sizes above 32 trained in one stack with per-model sizes up to
  1024 (quick: one, 128) and two below 32 in the main stack (quick: one);
- SGD noise: Tr H at the ends of chains that did not diverge (quick seed 0: none survive);
- sublevel sets: input dimension d = 10 (quick: 5), equal to the first hidden width of the deep
  network;
- heavy tails: the six-batch-size rank correlation (see tests/test_spectra.py);
- skip connections, teacher–student: sizes only (see their own tests).
"""

import math

import torch

import helpers
from helpers.topics import degenerate_minima, sgd_noise, square_loss, sublevel_sets


def test_relu_hessian_with_two_outputs_has_rank_nk():
    """Implicit bias, full mode k = 2: P − n k near-zero Hessian eigenvalues at zero loss."""
    g = torch.Generator().manual_seed(0)
    n, d, hidden, k = 4, 3, 12, 2
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(n, k, generator=g, dtype=torch.float64)

    def half_sse(out):
        return 0.5 * ((out - Y) ** 2).sum()

    net, loss, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([d, hidden, k], dtype=torch.float64, seed=s),
        lambda m: half_sse(m(X)), seed=0)
    eigs = torch.linalg.eigvalsh(helpers.loss_hessian(net, half_sse, X))
    assert loss < 1e-20
    assert helpers.count_near_zero(eigs, rel_tol=1e-8) >= eigs.numel() - n * k


def test_walks_along_every_null_direction():
    """Degenerate minima, full mode: k_walks = W − n, a square orthonormal rotation."""
    g = torch.Generator().manual_seed(1)
    n, d, h = 3, 2, 2
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    net, _, _ = helpers.fit_to_zero_loss(
        lambda s: helpers.MLP([d, h, 1], activation=degenerate_minima.PolyReLU,
                              dtype=torch.float64, seed=s),
        lambda m: 0.5 * ((m(x) - y) ** 2).sum(), seed=1)
    J = helpers.output_jacobian(net, x)
    W = J.shape[1]
    null_basis = torch.linalg.svd(J, full_matrices=True).Vh[n:]  # (W − n, W)
    rotation = torch.linalg.qr(torch.randn(W - n, W - n, generator=g,
                                           dtype=torch.float64)).Q
    walks = [degenerate_minima.walk_on_zero_set(net, x, y, u, length=0.2, steps=8)
             for u in (null_basis.T @ rotation).T]
    ends = torch.stack([theta for theta, _ in walks])
    assert ends.shape == (W - n, W)
    assert max(res for _, res in walks) < 1e-8


def test_square_loss_batch_sizes_of_full_mode_in_one_stack():
    """Square loss, full mode: per-model batch sizes up to 1024 on 1258 samples, and the
    smaller ones mixed into a stack of batch 32."""
    data = helpers.digits(seed=0)
    x, y = data.x_train, data.y_train
    Y = torch.nn.functional.one_hot(y, 10).float()
    large = [64, 128, 256, 512, 1024]
    model = helpers.BatchedMLP([64, 8, 8, 10], seeds=[0] * len(large))
    helpers.train_batched(model, x, Y, lr=0.1, steps=2, weight_decay=[0.01] * len(large),
                          loss="mse", batch_size=large, seed=0)
    main = helpers.BatchedMLP([64, 8, 8, 10], seeds=[0, 1, 2, 2])
    helpers.train_batched(main, x, Y, lr=0.1, steps=2, weight_decay=[0.0, 0.01, 0.01, 0.01],
                          loss="mse", batch_size=[32, 32, 8, 16], seed=0)
    for m in (model, main):
        H = square_loss.batched_hidden_features(m, x)
        assert H.shape == (m.n_models, x.shape[0], 8)
        assert all(math.isfinite(square_loss.etf_deviation(h, y, 10)) for h in H)
        assert len([square_loss.entropy_rank(W) for W in m.weights[1]]) == m.n_models


def test_trace_of_hessian_at_surviving_chain_ends():
    """SGD noise: where chains survive, Tr H is computed at their ends (quick seed 0 has none)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    net = helpers.MLP([4, 5, 3], dtype=torch.float64, seed=0)
    f, theta = sgd_noise.flat_loss(net, torch.nn.functional.cross_entropy)
    ends = sgd_noise.noisy_chains(f, theta, x, y, eta=0.1, steps=5, n_chains=3, batch_size=4,
                                  seed=0)
    with torch.no_grad():
        losses = torch.stack([f(t, x, y) for t in ends])
    finite = [t for t, l in zip(ends, losses, strict=True) if torch.isfinite(l) and l < 1e3]
    assert len(finite) == 3
    tr = [torch.func.hessian(f)(t, x, y).trace().item() for t in finite[:8]]
    assert all(math.isfinite(v) and v > 0 for v in tr)


def test_deep_path_with_input_dimension_ten():
    """Sublevel sets, full mode d = 10: the deep network d → 10 → width → 1 at a level c."""
    g = torch.Generator().manual_seed(3)
    N, d, alpha = 6, 10, 0.1
    X = torch.randn(N, d, generator=g, dtype=torch.float64)
    y = torch.randn(N, generator=g, dtype=torch.float64)
    act = lambda: torch.nn.LeakyReLU(alpha)  # noqa: E731
    nets = [sublevel_sets.DeepNet.from_mlp(helpers.MLP([d, 10, N + 1, 1], activation=act,
                                                       dtype=torch.float64, seed=s))
            for s in (0, 1)]
    level = 2 * max(sublevel_sets.deep_loss(n, X, y, alpha) for n in nets)
    a, b = (sublevel_sets.at_level(n, X, y, alpha, level, seed=k) for k, n in enumerate(nets))
    p = sublevel_sets.deep_path(a, b, X, y, alpha, n_points=21)
    assert p.losses.max().item() <= level + 1e-10
