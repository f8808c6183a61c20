"""The head renderer: exact mirror relation, a closed-form oracle, normalisation, bad input."""

import math

import pytest
import torch

import helpers
from helpers.engine.heads import Heads, flip_matrix, pixel_grid, view_vectors

ANGLES = torch.tensor([-90.0, -55.0, -20.0, 0.0, 20.0, 55.0, 90.0])


def test_pixel_grid_is_exactly_antisymmetric():
    for size in (7, 12, 24):
        g = pixel_grid(size, extent=1.3)
        assert torch.equal(g.flip(0), -g)
        assert g[0] == -1.3 and g[-1] == 1.3


def test_symmetric_head_view_at_minus_theta_is_mirror_image():
    heads = helpers.random_heads(5, seed=3)
    plus = helpers.render_heads(heads, ANGLES, size=16)
    minus = helpers.render_heads(heads, -ANGLES, size=16)
    assert plus.shape == (5, len(ANGLES), 16, 16)
    assert torch.allclose(minus, plus.flip(-1), atol=1e-12, rtol=0)
    assert plus.abs().amax() > 0.1  # the images are not trivially zero


def test_asymmetric_head_breaks_the_mirror_relation_but_its_mirror_twin_restores_it():
    heads = helpers.random_heads(3, seed=4, asymmetry=0.1)
    plus = helpers.render_heads(heads, ANGLES, size=16)
    minus = helpers.render_heads(heads, -ANGLES, size=16)
    assert (minus - plus.flip(-1)).abs().amax() > 1e-2
    twin = helpers.render_heads(heads.mirrored(), ANGLES, size=16)
    assert torch.allclose(minus, twin.flip(-1), atol=1e-12, rtol=0)


def test_single_blob_matches_the_closed_form():
    c = torch.tensor([[[0.4, -0.3, 0.7]]], dtype=torch.float64)
    heads = Heads(c, torch.tensor([[0.25]], dtype=torch.float64),
                  torch.tensor([[2.0]], dtype=torch.float64))
    size, extent, tau, theta = 9, 1.5, 0.3, 35.0
    img = helpers.render_heads(heads, torch.tensor([theta]), size=size, extent=extent,
                               tau=tau)[0, 0]
    t = math.radians(theta)
    x_rot, z_rot = 0.4 * math.cos(t) + 0.7 * math.sin(t), -0.4 * math.sin(t) + 0.7 * math.cos(t)
    g = pixel_grid(size, extent=extent).tolist()
    for r, c_ in [(0, 0), (3, 5), (6, 6), (8, 2)]:
        u, v = g[c_], -g[r]  # row 0 is the top of the image
        want = 2.0 / (1 + math.exp(-z_rot / tau)) * math.exp(
            -((u - x_rot) ** 2 + (v + 0.3) ** 2) / (2 * 0.25**2))
        assert img[r, c_].item() == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_random_heads_are_reproducible_and_symmetric_in_their_parameters():
    a, b = helpers.random_heads(4, seed=9), helpers.random_heads(4, seed=9)
    assert torch.equal(a.centres, b.centres) and torch.equal(a.amplitudes, b.amplitudes)
    assert not torch.equal(a.centres, helpers.random_heads(4, seed=10).centres)
    # every blob has a partner with x negated and the same width and amplitude
    params = lambda h: torch.cat([h.centres[0], h.widths[0, :, None],  # noqa: E731
                                  h.amplitudes[0, :, None]], dim=1)
    assert torch.cdist(params(a), params(a.mirrored())).amin(1).max() < 1e-12
    asym = helpers.random_heads(4, seed=9, asymmetry=0.05)
    assert torch.cdist(params(asym), params(asym.mirrored())).amin(1).max() > 1e-3
    assert len(a[1]) == 1 and a[1:3].centres.shape[0] == 2


def test_view_vectors_normalise_and_commute_with_the_flip():
    images = helpers.render_heads(helpers.random_heads(2, seed=1), ANGLES, size=10)
    x = view_vectors(images)
    assert x.shape == (2, len(ANGLES), 100)
    assert x.mean(-1).abs().max() < 1e-12
    assert (x.norm(dim=-1) - 1).abs().max() < 1e-12
    R = flip_matrix(10)
    assert torch.allclose(view_vectors(images.flip(-1)), x @ R.T, atol=1e-12)
    assert torch.equal(R @ R, torch.eye(100, dtype=R.dtype))


@pytest.mark.parametrize("call,match", [
    (lambda: helpers.random_heads(0, seed=0), "n"),
    (lambda: helpers.random_heads(2, seed=0, asymmetry=-0.1), "asymmetry"),
    (lambda: helpers.render_heads(helpers.random_heads(1, seed=0), torch.tensor([float("nan")])),
     "angles_deg"),
    (lambda: helpers.render_heads(helpers.random_heads(1, seed=0), torch.zeros(2), tau=0.0),
     "tau"),
    (lambda: Heads(torch.zeros(1, 2, 3), -torch.ones(1, 2), torch.ones(1, 2)), "widths"),
    (lambda: Heads(torch.zeros(1, 2, 2), torch.ones(1, 2), torch.ones(1, 2)), "centres"),
    (lambda: pixel_grid(1), "size"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
