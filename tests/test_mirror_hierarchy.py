"""The mirror-symmetry chapter's hierarchy: view-tuned units, the alternative learning rule,
identification from a frontal view, and the top-layer checks of both modes at a small size."""

import math

import pytest
import torch

import helpers
from helpers.core import ledger
from helpers.core.config import BookConfig
from helpers.topics import mirror_symmetry as ms

ANGLES = torch.arange(-90.0, 91.0, 15.0)
SIZE = 12


def views(n, seed):
    heads = helpers.random_heads(n, seed=seed)
    return helpers.view_vectors(helpers.render_heads(heads, ANGLES, size=SIZE))  # (n, V, d)


@pytest.fixture(scope="module")
def stage1():
    stored = views(3, 11).flatten(0, 1)  # closed under the mirror
    sigma2 = 0.25 * torch.cdist(stored, stored).pow(2).median().item()
    return stored, sigma2


def test_view_tuned_matches_the_formula(stage1):
    stored, sigma2 = stage1
    Y = views(2, 5)
    r = ms.view_tuned(Y, stored, sigma2=sigma2)
    assert r.shape == (2, len(ANGLES), len(stored))
    y, s = Y[1, 4], stored[7]
    assert r[1, 4, 7].item() == pytest.approx(math.exp(-(y - s).pow(2).sum().item()
                                                       / (2 * sigma2)), rel=1e-12)


def test_view_tuned_units_are_permuted_by_the_mirror(stage1):
    stored, sigma2 = stage1
    Y = views(2, 5)
    flipped = Y.unflatten(-1, (SIZE, SIZE)).flip(-1).flatten(-2)
    swap = (torch.arange(3)[:, None] * len(ANGLES) + ms.mirror_pairs(ANGLES)).flatten()
    assert torch.allclose(ms.view_tuned(flipped, stored, sigma2=sigma2),
                          ms.view_tuned(Y, stored, sigma2=sigma2)[..., swap], atol=1e-12)


def test_hebbian_units_on_view_tuned_responses_are_mirror_symmetric(stage1):
    stored, sigma2 = stage1
    F_t = ms.view_tuned(views(4, 21), stored, sigma2=sigma2)
    F_y = ms.view_tuned(views(5, 22), stored, sigma2=sigma2)
    Fc, mean, scale = ms.centre_views(F_t)
    _, V = ms.principal_components(Fc, 1)
    msi_pc = ms.mirror_symmetry_index(ms.unit_responses(V[:, 0], F_y, mean, scale), ANGLES)
    assert torch.allclose(msi_pc, torch.ones_like(msi_pc), atol=1e-9)  # the theorem with Π
    mix = ms.random_combinations(Fc, seed=0)
    msi_mix = ms.mirror_symmetry_index(ms.unit_responses(mix, F_y, mean, scale), ANGLES)
    assert msi_mix.median() < 0.95  # the alternative rule is not mirror-symmetric


def test_random_combinations_lie_in_the_span_of_the_views():
    gen = torch.Generator().manual_seed(0)
    Xc = torch.randn(3, 5, 20, generator=gen, dtype=torch.float64)
    w = ms.random_combinations(Xc, seed=1)
    assert w.shape == (3, 20)
    assert torch.allclose(w.norm(dim=-1), torch.ones(3, dtype=torch.float64))
    coef = torch.linalg.lstsq(Xc.mT, w[..., None]).solution  # w = Xcᵀ a
    assert torch.allclose(Xc.mT @ coef, w[..., None], atol=1e-10)
    assert torch.equal(w, ms.random_combinations(Xc, seed=1))
    assert not torch.allclose(w, ms.random_combinations(Xc, seed=2))


def test_identified_pooled_and_gains():
    gen = torch.Generator().manual_seed(0)
    heads = torch.randn(6, 1, 10, generator=gen, dtype=torch.float64)
    same = heads.expand(6, len(ANGLES), 10)  # every view equals the frontal one
    assert ms.identified(same, ANGLES).all()
    noise = torch.randn(6, len(ANGLES), 10, generator=gen, dtype=torch.float64)
    correct = {"base": ms.identified(noise, ANGLES), "same": ms.identified(same, ANGLES),
               "copy": ms.identified(noise, ANGLES)}
    keep = ANGLES != 0
    gains = ms.gains_over(correct, "base", keep)
    assert set(gains) == {"same", "copy"}
    mean, se = ms.clustered_difference(correct["same"][:, keep], correct["base"][:, keep])
    assert gains["same"][:2] == (mean, se)
    assert gains["copy"] == (0.0, 0.0, 0.0)  # no difference: zero gain, not ±∞
    W = torch.randn(4, 2, 10, generator=gen, dtype=torch.float64)
    mean_t, scale_t = torch.zeros(4, 10, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    top = ms.pooled(W, noise, mean_t, scale_t)
    assert top.shape == (6, len(ANGLES), 4)
    assert torch.allclose(top[2, 3, 1], ((W[1] @ noise[2, 3]) ** 2).sum())


def test_bad_input():
    X = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="stored"):
        ms.view_tuned(X, torch.zeros(5, 3), sigma2=1.0)
    with pytest.raises(ValueError, match="sigma2"):
        ms.view_tuned(X, torch.zeros(5, 4), sigma2=0.0)
    with pytest.raises(TypeError, match="Xc"):
        ms.random_combinations(X.long(), seed=0)
    with pytest.raises(ValueError, match="features"):
        ms.identified(X, torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="baseline"):
        ms.gains_over({"a": X[0] > 0}, "b", torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_top_layer_checks_run_in_both_modes(mode, tmp_path, monkeypatch):
    """The chapter's top-layer pipeline at a small size, with the check as each mode makes it:
    full mode turns the pixel-level check into a paper check with the shuffled control."""
    monkeypatch.setenv("BOOK_CLAIMS_DIR", str(tmp_path))
    monkeypatch.setattr(ledger, "_state", dict(ledger._state))  # restored after the test
    cfg = BookConfig(mode, 0, "cpu")
    ledger.begin_chapter("scratch-mirror", cfg)
    X, Y = views(6, 5), views(5, 6)
    Xt_c, t_mean, t_scale = ms.centre_views(X)
    Xm_c, m_mean, m_scale = ms.centre_views(ms.shuffled_templates(X, seed=7))
    W, W_shuffled = ms.sanger(torch.cat([Xt_c, Xm_c]), 3, eta=0.05, epochs=5, seed=1).split(6)
    correct = {"raw pixels": ms.identified(Y, ANGLES),
               "top layer (Sanger units)": ms.identified(ms.pooled(W, Y, t_mean, t_scale),
                                                         ANGLES),
               "top layer (shuffled templates)": ms.identified(
                   ms.pooled(W_shuffled, Y, m_mean, m_scale), ANGLES)}
    z = {name: g[2] for name, g in ms.gains_over(correct, "raw pixels", ANGLES != 0).items()}
    kind = cfg.pick(quick="not-reproduced", full="paper")
    control = cfg.pick(quick=None, full=("Sanger units on shuffled templates",
                                         z["top layer (shuffled templates)"]))
    # a tiny run may land on either side of the gate: what must not happen is any other error
    try:
        helpers.check_claim("top layer minus raw pixels (small)", z["top layer (Sanger units)"],
                            ">=", 3, kind=kind, paper="leibo2017view", control=control,
                            note="test of the code path")
    except AssertionError:
        pass
    except ValueError as err:
        assert "does not discriminate" in str(err)
