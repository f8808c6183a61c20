"""Oja and Sanger against torch.linalg.eigh, the fast rule against the rule as written, the MSI."""

import pytest
import torch

import helpers
from helpers.topics import mirror_symmetry as ms
from helpers.topics.mirror_symmetry import _generalized_hebbian, _orders, principal_components

ANGLES = torch.arange(-90.0, 91.0, 15.0)


def gapped_samples(batch, n, d, spectrum, seed):
    """Samples x = Q diag(√λ) z with a random rotation Q per batch element: (B, n, d)."""
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(batch, d, d, generator=gen, dtype=torch.float64)).Q
    z = torch.randn(batch, n, d, generator=gen, dtype=torch.float64)
    return (z * torch.tensor(spectrum, dtype=torch.float64).sqrt()) @ Q.mT


def top_eigenvectors(X, k):
    """Oracle: eigh of the d x d second-moment matrix (descending), rows (B, k, d)."""
    _, vecs = torch.linalg.eigh(X.mT @ X / X.shape[-2])
    return vecs.flip(-1)[..., :k].mT


def test_oja_converges_to_the_top_eigenvector_of_eigh():
    spectrum = [1.0, 0.4, 0.25, 0.15, 0.1, 0.05, 0.05, 0.02]
    X = gapped_samples(6, 300, 8, spectrum, seed=0) / 2
    w = ms.oja(X, eta=0.01, epochs=40, seed=1)
    v = top_eigenvectors(X, 1)[:, 0]
    cos = torch.nn.functional.cosine_similarity(w, v, dim=-1).abs()
    assert cos.min() >= 0.99, cos
    # Oja's decay term keeps ‖w‖ near 1
    assert torch.allclose(w.norm(dim=-1), torch.ones((), dtype=w.dtype), atol=0.05)
    single = ms.oja(X[2], eta=0.01, epochs=40, seed=1)
    assert single.shape == (8,) and abs(torch.dot(single, v[2]) / single.norm()) >= 0.99


def test_sanger_rows_converge_to_the_top_k_eigenvectors():
    spectrum = [1.0, 0.5, 0.25, 0.08, 0.05, 0.03]
    X = gapped_samples(4, 300, 6, spectrum, seed=2) / 2
    W = ms.sanger(X, 3, eta=0.01, epochs=80, seed=3)
    V = top_eigenvectors(X, 3)
    cos = torch.nn.functional.cosine_similarity(W, V, dim=-1).abs()
    assert W.shape == (4, 3, 6) and cos.min() >= 0.99, cos


def test_fast_rule_equals_the_rule_as_written():
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(3, 10, 25, generator=gen, dtype=torch.float64) / 5  # span of 10 < d = 25
    X = X - X.mean(1, keepdim=True)  # centred: rank 9, as in the chapter
    W0 = torch.randn(3, 4, 25, generator=gen, dtype=torch.float64)
    order = _orders(3, 10, 20, gen)
    W = W0.clone()
    rows = torch.arange(3)
    for i in order:  # Sanger (1989): ΔW = η (y xᵀ − LT(y yᵀ) W), one sample at a time
        x = X[rows, i]
        y = torch.einsum("bkd,bd->bk", W, x)
        W = W + 0.05 * (y[:, :, None] * x[:, None] - torch.tril(y[:, :, None] * y[:, None]) @ W)
    assert torch.allclose(_generalized_hebbian(X, W0, 0.05, order), W, atol=1e-12, rtol=0)


def test_principal_components_match_eigh_of_the_covariance():
    X = gapped_samples(2, 15, 40, [1.0] * 40, seed=4)
    vals, vecs = principal_components(X, 5)
    Xc = X - X.mean(1, keepdim=True)
    ref_vals, ref_vecs = torch.linalg.eigh(Xc.mT @ Xc / 15)
    assert torch.allclose(vals, ref_vals.flip(-1)[:, :5], atol=1e-12)
    cos = torch.einsum("bkd,bdk->bk", vecs, ref_vecs.flip(-1)[:, :, :5]).abs()
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-9)


def test_msi_is_one_for_even_and_minus_one_for_odd_curves():
    theta = torch.deg2rad(ANGLES)
    gen = torch.Generator().manual_seed(0)
    even = torch.cos(theta) + theta**2 + torch.rand(1, generator=gen, dtype=torch.float64)
    odd = torch.sin(theta) + theta**3
    msi = ms.mirror_symmetry_index(torch.stack([even, odd]), ANGLES)
    assert torch.allclose(msi, torch.tensor([1.0, -1.0], dtype=torch.float64), atol=1e-12)
    perm = torch.randperm(len(ANGLES), generator=gen)  # angles in any order
    assert ms.mirror_symmetry_index(odd[perm], ANGLES[perm]).item() == pytest.approx(-1)
    ramp = ms.mirror_symmetry_index(torch.exp(theta), ANGLES).item()  # neither: in between
    assert -1 < ramp < 1


def test_mirror_symmetric_units_on_symmetric_heads():
    """Smoke test of the chapter's experiment at tiny scale: Oja units give MSI ≈ 1."""
    X = helpers.view_vectors(helpers.render_heads(helpers.random_heads(4, seed=1), ANGLES,
                                                  size=12))
    Y = helpers.view_vectors(helpers.render_heads(helpers.random_heads(3, seed=2), ANGLES,
                                                  size=12))
    Xc, mean, scale = ms.centre_views(X)
    w = ms.oja(Xc, eta=0.05, epochs=150, seed=0)
    assert ms.mirror_symmetry_index(ms.unit_responses(w, Y, mean, scale),
                                         ANGLES).median() > 0.95
    view_tuned = ms.unit_responses(Xc[:, 1], Y, mean, scale)  # one stored view per template
    assert ms.mirror_symmetry_index(view_tuned, ANGLES).median() < 0.5


def test_unit_responses_match_the_formula_and_centre_views_normalises():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(3, 6, 5, generator=gen, dtype=torch.float64)
    Xc, mean, scale = ms.centre_views(X)
    assert torch.allclose(Xc.pow(2).sum(-1).mean(-1), torch.ones(3, dtype=X.dtype))
    assert torch.allclose(Xc * scale[:, None, None] + mean[:, None], X)
    W, Y = torch.randn(3, 2, 5, generator=gen, dtype=X.dtype), torch.randn(4, 7, 5, generator=gen,
                                                                            dtype=X.dtype)
    r = ms.unit_responses(W, Y, mean, scale)
    assert r.shape == (3, 2, 4, 7)
    want = (W[1, 0] @ (Y[2, 5] - mean[1]) / scale[1]) ** 2
    assert r[1, 0, 2, 5].item() == pytest.approx(want.item(), rel=1e-12)
    assert torch.allclose(ms.unit_responses(W[:, 0], Y, mean, scale), r[:, 0])


@pytest.mark.parametrize("call,exc,match", [
    (lambda X: ms.oja(X, eta=0.0, epochs=1, seed=0), ValueError, "eta"),
    (lambda X: ms.oja(X, eta=-1e-3, epochs=1, seed=0), ValueError, "eta"),
    (lambda X: ms.oja(X, eta=float("nan"), epochs=1, seed=0), TypeError, "eta"),
    (lambda X: ms.oja(X, eta=0.1, epochs=0, seed=0), ValueError, "epochs"),
    (lambda X: ms.oja(X.numpy(), eta=0.1, epochs=1, seed=0), TypeError, "X"),
    (lambda X: ms.oja(X[0, 0], eta=0.1, epochs=1, seed=0), ValueError, "X"),
    (lambda X: ms.sanger(X, 0, eta=0.1, epochs=1, seed=0), ValueError, "k"),
    (lambda X: ms.sanger(X, 2, eta=0.0, epochs=1, seed=0), ValueError, "eta"),
])
def test_rules_reject_bad_input(call, exc, match):
    X = torch.randn(2, 5, 3, dtype=torch.float64)
    with pytest.raises(exc, match=match):
        call(X)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_data_raises(bad):
    X = torch.randn(5, 3, dtype=torch.float64)
    X[2, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        ms.oja(X, eta=0.1, epochs=1, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        ms.sanger(X, 2, eta=0.1, epochs=1, seed=0)
    r = torch.ones(len(ANGLES), dtype=torch.float64)
    r[3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        ms.mirror_symmetry_index(r, ANGLES)


def test_msi_rejects_angles_not_symmetric_about_zero():
    angles = torch.tensor([-60.0, -30.0, 0.0, 30.0, 45.0])
    with pytest.raises(ValueError, match="symmetric about 0"):
        ms.mirror_symmetry_index(torch.rand(5), angles)
    with pytest.raises(ValueError, match="one value per angle"):
        ms.mirror_symmetry_index(torch.rand(4), ANGLES)
    flat = ms.mirror_symmetry_index(torch.ones(len(ANGLES)), ANGLES)
    assert torch.isnan(flat)  # a flat curve has no defined correlation


def test_shuffled_templates_keep_each_angle_but_mix_the_heads():
    # X[t, v] = 10 t + v: the source template and the angle can be read off every view
    X = torch.arange(5.0)[:, None, None] * 10 + torch.arange(4.0)[None, :, None]
    X = X.expand(5, 4, 3).clone()
    Xs = ms.shuffled_templates(X, seed=0)
    assert Xs.shape == X.shape
    assert torch.equal(Xs % 10, X % 10)  # every view keeps its angle
    heads = (Xs[..., 0] // 10).long()  # (T, V) source template of each view
    for v in range(4):  # each angle's views are a permutation of the templates
        assert sorted(heads[:, v].tolist()) == list(range(5))
    assert (heads != heads[:, :1]).any()  # not every pseudo-template is one head's orbit
    assert torch.equal(Xs, ms.shuffled_templates(X, seed=0))
    with pytest.raises(ValueError, match="T, V, d"):
        ms.shuffled_templates(X[0], seed=0)


def test_clustered_difference_is_the_standard_error_of_row_means():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(40, 9, generator=gen) < 0.6
    b = torch.rand(40, 9, generator=gen) < 0.4
    mean, se = ms.clustered_difference(a, b)
    rows = (a.double() - b.double()).mean(1).numpy()
    assert mean == pytest.approx(rows.mean(), rel=1e-12)
    assert se == pytest.approx(rows.std(ddof=1) / len(rows) ** 0.5, rel=1e-12)
    # entries of a row that are perfectly dependent: the clustered SE is √m times the naive one
    rep = a[:, :1].expand(40, 9).double()
    _, se_rep = ms.clustered_difference(rep, torch.zeros_like(rep))
    naive = rep.flatten().std().item() / rep.numel() ** 0.5
    assert se_rep == pytest.approx(naive * 9 ** 0.5, rel=0.05)
    with pytest.raises(ValueError, match="same shape"):
        ms.clustered_difference(a, b[:, :3])
