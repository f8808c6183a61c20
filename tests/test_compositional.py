"""Tests for the deep-vs-shallow chapter: tree and shallow networks, targets, the experiment."""

import math

import pytest
import torch

from helpers.topics.compositional.experiments import (
    CONSTITUENTS,
    Budget,
    budget_for,
    check_constituent,
    compositional_target,
    deep_vs_shallow,
    deep_vs_shallow_grid,
    deep_vs_shallow_study,
    error_vs_parameters,
    lr_schedule,
    pairing_permutation,
    power_law_fit,
    relative_mse,
    train_deep_and_shallow,
)
from helpers.topics.compositional.models import (
    ShallowNet,
    TreeNet,
    matched_width,
    shallow_parameter_count,
    tree_parameter_count,
)

DT = torch.float64


def naive_tree(net: TreeNet, x: torch.Tensor, copy: int | None = None) -> torch.Tensor:
    """Oracle: the tree evaluated node by node with Python loops, x of shape (B, n)."""
    pick = (lambda p: p) if copy is None else (lambda p: p[copy])
    values = [x[:, i] for i in range(net.n_inputs)]
    for lv in range(net.levels):
        nxt = []
        for j in range(len(values) // 2):
            z = torch.stack([values[2 * j], values[2 * j + 1]], dim=1)  # (B, 2)
            w1, b1 = pick(net.w1[lv])[j], pick(net.b1[lv])[j]  # (2, k), (k,)
            w2, b2 = pick(net.w2[lv])[j], pick(net.b2[lv])[j]  # (k,), ()
            nxt.append(net._act(z @ w1 + b1) @ w2 + b2)
        values = nxt
    return values[0]


def set_every_node(net: TreeNet, w1, b1, w2, b2) -> None:
    """Give every node of every level the same weights (w1: (2, k), b1: (k,), w2: (k,), b2)."""
    with torch.no_grad():
        for lv in range(net.levels):
            net.w1[lv][:] = torch.as_tensor(w1, dtype=DT)
            net.b1[lv][:] = torch.as_tensor(b1, dtype=DT)
            net.w2[lv][:] = torch.as_tensor(w2, dtype=DT)
            net.b2[lv][:] = torch.as_tensor(b2, dtype=DT)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("k", [1, 3, 8, 13])
def test_parameter_counts_match_formulas(n, k):
    tree = TreeNet(n, k)
    assert tree.num_parameters() == tree_parameter_count(n, k) == (n - 1) * (4 * k + 1)
    assert sum(p.numel() for p in tree.parameters()) == (n - 1) * (4 * k + 1)
    batched = TreeNet(n, k, n_models=3)
    assert sum(p.numel() for p in batched.parameters()) == 3 * (n - 1) * (4 * k + 1)
    assert batched.num_parameters() == tree.num_parameters()
    shallow = ShallowNet(n, 5 * k)
    assert shallow.num_parameters() == shallow_parameter_count(n, 5 * k) == 5 * k * (n + 2) + 1


@pytest.mark.parametrize("n", [4, 8, 16, 64])
def test_equal_parameter_sizing_is_within_one_unit(n):
    checked = 0
    for k in range(1, 41):
        tree = TreeNet(n, k)
        shallow = ShallowNet.matching(tree)
        gap = abs(shallow.num_parameters() - tree.num_parameters())
        assert gap <= (n + 2) / 2, (n, k, shallow.width, gap)  # closer than one hidden unit
        checked += 1
    assert checked == 40


def test_equal_parameter_sizing_is_exact_when_divisible():
    # n = 8: 7(4k + 1) − 1 = 28k + 6 is a multiple of 10 exactly when k ≡ 3 (mod 5).
    for k in range(3, 60, 5):
        p = tree_parameter_count(8, k)
        assert shallow_parameter_count(8, matched_width(8, p)) == p
    assert tree_parameter_count(8, 8) == shallow_parameter_count(8, 23) == 231


def test_hand_set_tree_computes_the_target_exactly():
    # |a − b| = relu(a − b) + relu(b − a): a 2 → 2 → 1 ReLU node, exact.
    def absdiff(a, b):
        return (a - b).abs()

    x = 2 * torch.rand(500, 16, generator=torch.Generator().manual_seed(0), dtype=DT) - 1
    for n in (2, 8, 16):
        net = TreeNet(n, 2, activation="relu", dtype=DT)
        set_every_node(net, [[1.0, -1.0], [-1.0, 1.0]], [0.0, 0.0], [1.0, 1.0], 0.0)
        exact = compositional_target(absdiff, n)(x[:, :n])
        assert torch.equal(net(x[:, :n]), exact)
        if n >= 4:  # the same network does not compute a differently paired target
            other = compositional_target(absdiff, n, "mismatched")(x[:, :n])
            assert (net(x[:, :n]) - other).abs().max() > 0.1


def test_batched_tree_matches_node_by_node_oracle():
    x = 2 * torch.rand(64, 8, generator=torch.Generator().manual_seed(1), dtype=DT) - 1
    net = TreeNet(8, 5, activation="tanh", dtype=DT, seed=3)
    torch.testing.assert_close(net(x), naive_tree(net, x), rtol=1e-12, atol=1e-12)
    many = TreeNet(8, 5, n_models=4, activation="gelu", dtype=DT, seed=4)
    out = many(x)  # (4, 64)
    assert out.shape == (4, 64)
    for c in range(4):
        torch.testing.assert_close(out[c], naive_tree(many, x, copy=c), rtol=1e-12, atol=1e-12)
    per_copy = many(x.expand(4, -1, -1))  # (n_models, B, n) input gives the same
    torch.testing.assert_close(per_copy, out, rtol=1e-12, atol=1e-12)


def test_shallow_net_matches_formula():
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(2), dtype=DT)
    net = ShallowNet(8, 7, n_models=2, dtype=DT, seed=0)
    for c in range(2):
        expected = torch.nn.functional.gelu(x @ net.w[c] + net.b[c]) @ net.v[c] + net.c[c]
        torch.testing.assert_close(net(x)[c], expected, rtol=1e-12, atol=1e-12)


def test_batched_copies_have_independent_gradients():
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(5), dtype=DT)
    many = TreeNet(8, 3, n_models=2, dtype=DT, seed=6)
    single = TreeNet(8, 3, dtype=DT)
    with torch.no_grad():
        for p_many, p_one in zip(many.parameters(), single.parameters(), strict=True):
            p_one.copy_(p_many[0])
    (many(x) ** 2).mean(-1).sum().backward()
    (single(x) ** 2).mean().backward()
    for p_many, p_one in zip(many.parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(p_many.grad[0], p_one.grad, rtol=1e-12, atol=1e-12)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = TreeNet(8, 4, seed=7), TreeNet(8, 4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(TreeNet(8, 4, seed=8).w1[0], a.w1[0])


def test_target_matches_written_out_formula():
    h = CONSTITUENTS["product"]
    x = 2 * torch.rand(100, 8, generator=torch.Generator().manual_seed(0), dtype=DT) - 1
    x1, x2, x3, x4, x5, x6, x7, x8 = x.T
    expected = h(h(h(x1, x2), h(x3, x4)), h(h(x5, x6), h(x7, x8)))
    torch.testing.assert_close(compositional_target(h, 8)(x), expected, rtol=0, atol=0)
    # mismatched: the network's pairs (x1, x2), (x3, x4), ... meet only at the target's root.
    y1, y2, y3, y4, y5, y6, y7, y8 = x[:, pairing_permutation(8, "mismatched")].T
    expected = h(h(h(y1, y2), h(y3, y4)), h(h(y5, y6), h(y7, y8)))
    torch.testing.assert_close(compositional_target(h, 8, "mismatched")(x), expected)


@pytest.mark.parametrize("n", [4, 8, 16, 32])
def test_mismatched_pairing_separates_every_network_block(n):
    perm = pairing_permutation(n, "mismatched")
    assert sorted(perm) == list(range(n))
    half = {perm[i] for i in range(n // 2)}  # inputs in the target's left subtree
    for block in range(n // 2):  # a network node of level 1 reads inputs 2b and 2b + 1
        assert (2 * block in half) != (2 * block + 1 in half)
    assert pairing_permutation(8, "mismatched") == [0, 4, 2, 6, 1, 5, 3, 7]


def test_schedule_warms_up_then_decays_to_zero():
    b = Budget(steps=100, lr=0.05, warmup=0.1)
    lrs = [lr_schedule(t, b) for t in range(b.steps)]
    assert lrs[0] == pytest.approx(0.005) and lrs[9] == pytest.approx(0.05)
    assert all(a < c for a, c in zip(lrs[:10], lrs[1:10], strict=False))  # rising
    assert all(a >= c for a, c in zip(lrs[10:], lrs[11:], strict=False))  # then falling
    assert lrs[10] == pytest.approx(0.05) and lrs[-1] < 1e-4
    assert lr_schedule(0, Budget(steps=10, lr=0.1, warmup=0.0)) == pytest.approx(0.1)


def test_relative_mse_of_constant_predictor_is_one():
    y = torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=DT)
    r = relative_mse(torch.full_like(y, y.mean().item()), y).item()
    assert math.isclose(r, (len(y) - 1) / len(y), rel_tol=1e-9)  # var is unbiased


@pytest.mark.parametrize("bad_n", [0, 1, 3, 6, 12])
def test_bad_n_inputs_raise(bad_n):
    with pytest.raises(ValueError, match="n_inputs"):
        TreeNet(bad_n, 4)
    with pytest.raises(ValueError, match="n_inputs"):
        compositional_target("product", bad_n)
    with pytest.raises(ValueError, match="n_inputs"):
        deep_vs_shallow("product", n_inputs=bad_n, mode="quick")


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="n_inputs"):
        TreeNet(8.0, 4)
    with pytest.raises(ValueError, match="k"):
        TreeNet(8, 0)
    with pytest.raises(ValueError, match="activation"):
        TreeNet(8, 4, activation="sigmoid")
    with pytest.raises(ValueError, match="pairing"):
        deep_vs_shallow("product", pairing="reversed", mode="quick")
    with pytest.raises(ValueError, match="pairing"):
        pairing_permutation(8, [0, 1, 2, 3, 4, 5, 6, 6])
    with pytest.raises(TypeError, match="h must"):
        deep_vs_shallow(3.0, mode="quick")
    with pytest.raises(TypeError, match="h must"):
        check_constituent(lambda a: a)  # one input only
    with pytest.raises(ValueError, match="h"):
        check_constituent(lambda a, b: torch.stack([a, b]))  # two outputs
    with pytest.raises(ValueError, match="h"):
        check_constituent("cubic")
    with pytest.raises(ValueError, match="mode"):
        budget_for("medium")
    with pytest.raises(ValueError, match="steps"):
        budget_for("quick", steps=0)
    with pytest.raises(ValueError, match="warmup"):
        Budget(warmup=1.0)
    with pytest.raises(ValueError, match="x must"):
        TreeNet(8, 2)(torch.zeros(5, 4))


def test_deep_vs_shallow_smoke(monkeypatch):
    monkeypatch.setenv("BOOK_MODE", "quick")
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    res = deep_vs_shallow("product", seed=1, k=3, reps=2, steps=40, n_test=512)
    assert {"relmse_deep", "relmse_shallow", "params_deep", "params_shallow"} <= set(res)
    assert res["params_deep"] == res["params_shallow"] == 91
    assert len(res["reps_deep"]) == 2
    for key in ("relmse_deep", "relmse_shallow"):
        assert 0 < res[key] < 2, res  # trained briefly: finite, not wildly off
    again = deep_vs_shallow(lambda a, b: a * b + (a - b) / 2, seed=1, mode="quick", k=3,
                            reps=2, steps=40, n_test=512)
    assert math.isclose(again["relmse_deep"], res["relmse_deep"], rel_tol=1e-5)


def test_grid_rows_follow_targets_and_accept_other_targets():
    tiny = {"k": 2, "reps": 1, "steps": 5, "n_test": 256, "mode": "quick", "device": "cpu"}
    rows = deep_vs_shallow_grid(["product", "additive"], ("matched", "mismatched"), seed=0,
                                others={"sum": lambda x: x.sum(-1)}, **tiny)
    assert [(r["h"], r["pairing"]) for r in rows] == [
        ("product", "matched"), ("product", "mismatched"), ("additive", "matched"),
        ("additive", "mismatched"), ("sum", None)]
    assert all(r["params_deep"] == 63 and r["params_shallow"] == 61 for r in rows)
    with pytest.raises(TypeError, match="others"):
        deep_vs_shallow_grid(["product"], others={"bad": 3.0}, **tiny)


def test_widths_trained_together_match_separate_runs(monkeypatch):
    """error_vs_parameters trains all widths in one loop; each equals its own run."""
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    tiny = {"reps": 2, "steps": 30, "n_test": 256}
    torch.set_num_threads(2)
    curve = error_vs_parameters("product", (2, 3), seed=4, mode="quick", **tiny)
    assert torch.get_num_threads() == 2  # the loop's single thread is restored afterwards
    target = compositional_target("product", 8)
    for i, k in enumerate((2, 3)):
        alone = train_deep_and_shallow([target], seed=4, budget=budget_for("quick", k=k, **tiny))
        assert curve["params_deep"][i] == alone["params_deep"]
        assert curve["params_shallow"][i] == alone["params_shallow"]
        for key in ("relmse_deep", "relmse_shallow"):
            torch.testing.assert_close(curve[key][i], alone[key][0], rtol=1e-4, atol=1e-6)


def test_samples_drawn_in_chunks_equal_one_draw_per_step(monkeypatch):
    """Chunked sampling consumes the generator as per-step draws: identical training."""
    from helpers.topics.compositional import experiments

    targets = [compositional_target(h, 8, p) for h in ("product", "tanh-mix")
               for p in ("matched", "mismatched")]
    budget = budget_for("quick", k=2, reps=2, steps=7, batch=16, n_test=64)
    runs = []
    for per_chunk in (16, 48, 10_000):  # one step, three steps (a partial last chunk), all
        monkeypatch.setattr(experiments, "_SAMPLES_PER_CHUNK", per_chunk)
        runs.append(train_deep_and_shallow(targets, seed=2, budget=budget))
    for run in runs[1:]:
        for key in ("relmse_deep", "relmse_shallow"):
            assert torch.equal(run[key], runs[0][key])


def test_study_equals_its_grid_and_curves_run_separately(monkeypatch):
    """One loop for grid and curves: each part equals its own run where the targets agree."""
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    tiny = {"reps": 2, "steps": 20, "n_test": 256, "mode": "quick", "device": "cpu"}
    study = deep_vs_shallow_study(["product", "abs-product"], curve_h="abs-product",
                                  widths=(2, 3), seed=5, k=3, **tiny)
    grid = deep_vs_shallow_grid(["product", "abs-product"], seed=5, k=3, **tiny)
    assert [(r["h"], r["pairing"]) for r in study["grid"]] == [
        (r["h"], r["pairing"]) for r in grid]
    for a, b in zip(study["grid"], grid, strict=True):
        assert math.isclose(a["relmse_deep"], b["relmse_deep"], rel_tol=1e-4)
        assert math.isclose(a["relmse_shallow"], b["relmse_shallow"], rel_tol=1e-4)
    # The curve's point at k = 3 is the grid's own networks; at k = 2 a separate job.
    curve = study["curves"]["matched"]
    assert curve["params_deep"] == [tree_parameter_count(8, 2), tree_parameter_count(8, 3)]
    row = next(r for r in study["grid"] if r == {**r, "h": "abs-product", "pairing": "matched"})
    assert curve["relmse_deep"][1].tolist() == row["reps_deep"]
    both = [compositional_target("abs-product", 8, p) for p in ("matched", "mismatched")]
    alone = train_deep_and_shallow(both, seed=5, budget=budget_for("quick", k=2, reps=2,
                                                                   steps=20, n_test=256))
    for i, p in enumerate(("matched", "mismatched")):
        for key in ("relmse_deep", "relmse_shallow"):
            torch.testing.assert_close(study["curves"][p][key][0], alone[key][i], rtol=1e-4,
                                       atol=1e-6)
    assert set(study["curves"]) == {"matched", "mismatched"}
    with pytest.raises(ValueError, match="widths"):
        deep_vs_shallow_study(["product"], curve_h="product", widths=(), **tiny)


def test_study_split_over_threads_is_bitwise_the_same(monkeypatch):
    """With two CPU threads the widths train in two groups, one thread each: same numbers."""
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    tiny = {"reps": 2, "steps": 20, "n_test": 256, "mode": "quick", "device": "cpu", "k": 3}
    before = torch.get_num_threads()
    studies = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            studies.append(deep_vs_shallow_study(["product", "abs-product"],
                                                 curve_h="abs-product", widths=(2, 3, 4),
                                                 seed=5, **tiny))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    one, two = studies
    assert one["grid"] == two["grid"]
    for p in ("matched", "mismatched"):
        for key in ("relmse_deep", "relmse_shallow"):
            assert torch.equal(one["curves"][p][key], two["curves"][p][key])


def test_abs_product_is_lipschitz_and_not_smooth():
    h = CONSTITUENTS["abs-product"]
    a = torch.linspace(-1, 1, 201, dtype=DT)
    b = torch.full_like(a, 0.5)
    slope = torch.diff(h(a, b)) / torch.diff(a)
    assert slope.abs().max() <= 1.0 + 1e-12  # |∂h/∂a| = |±b + 1/2| <= 1 here
    assert slope[:100].mean() < 0.1 < 0.9 < slope[100:].mean()  # a kink at a = 0


def test_power_law_fit_recovers_exponent_and_standard_error():
    params = [50, 100, 200, 400, 800]
    gen = torch.Generator().manual_seed(0)  # cpu: test data
    logp = torch.log(torch.tensor(params, dtype=DT))  # cpu: test data
    noise = 0.1 * torch.randn(len(params), 40, generator=gen, dtype=DT)  # cpu: test data
    errors = torch.exp(2.0 - 0.75 * logp[:, None] + noise)
    alpha, se = power_law_fit(params, errors)
    xc = logp.repeat_interleave(40) - logp.mean()
    assert abs(se - 0.1 / math.sqrt(float((xc ** 2).sum()))) < 0.2 * se  # σ / sqrt(Sxx)
    assert abs(alpha - 0.75) < 4 * se
    exact, zero = power_law_fit(params, torch.exp(-0.5 * logp))
    assert math.isclose(exact, 0.5, rel_tol=1e-9) and zero < 1e-6
    with pytest.raises(ValueError, match="positive"):
        power_law_fit(params, -errors)
    with pytest.raises(ValueError, match="one row per size"):
        power_law_fit(params[:2], errors)
    with pytest.raises(ValueError, match="two distinct"):
        power_law_fit([10], torch.ones(1, 2, dtype=DT))


def test_draw_tree_labels_leaves_in_target_order():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.topics.compositional.models import draw_tree

    fig, ax = plt.subplots()
    draw_tree(ax, 8, "mismatched", "t")
    labels = [t.get_text() for t in ax.texts]
    assert labels[:8] == [f"$x_{{{i + 1}}}$" for i in (0, 4, 2, 6, 1, 5, 3, 7)]
    assert labels[8:].count("$h$") == 7 and ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)
