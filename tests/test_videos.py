"""Tests for helpers.videos: the synthetic videos of the temporal-association chapter."""

import pytest
import torch

from helpers.topics.temporal_association.videos import (
    backgrounds,
    cluttered,
    frame_table,
    make_videos,
    object_templates,
)


@pytest.fixture(scope="module")
def vids():
    return make_videos(3, 4, n_positions=5, size=8, object_seed=0, seed=1)


def test_shapes_and_labels(vids):
    assert vids.objects.shape == (12, 5, 8, 40)
    assert vids.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert vids.n_positions == 5 and vids.rms > 0


def test_each_frame_lives_in_its_own_slot(vids):
    energy = vids.objects.pow(2).sum(-2).reshape(12, 5, 5, 8).sum(-1)  # (S, P, slot)
    off_slot = energy * (1 - torch.eye(5))
    assert off_slot.abs().max() == 0
    assert (energy.diagonal(dim1=1, dim2=2) > 0).all()


def test_same_heads_for_the_same_object_seed(vids):
    again = make_videos(3, 4, n_positions=5, size=8, angle_jitter=0.0, object_seed=0, seed=9)
    other = make_videos(3, 4, n_positions=5, size=8, angle_jitter=0.0, object_seed=5, seed=9)
    twin = make_videos(3, 4, n_positions=5, size=8, angle_jitter=0.0, object_seed=0, seed=3)
    assert torch.equal(again.objects, twin.objects)  # no jitter: the seed does not matter
    assert not torch.allclose(again.objects, other.objects)


@pytest.mark.parametrize("kind", ["patches", "noise"])
def test_backgrounds_zero_mean_unit_rms(kind):
    b = backgrounds(6, 8, 40, kind=kind, seed=0)
    assert torch.allclose(b.mean((-1, -2)), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(b.pow(2).mean((-1, -2)), torch.ones(6, dtype=torch.float64))


def test_clutter_is_static_behind_the_object(vids):
    assert torch.equal(cluttered(vids, 0.0, seed=0), vids.objects)
    x = cluttered(vids, 1.0, seed=0)
    diff = (x - vids.objects).reshape(12, 5, 8, 5, 8)  # (S, P, H, slot, col)
    for p in range(5):
        assert diff[:, p, :, p].abs().max() == 0  # the head occludes its own square
    # the same background in every frame of a video, wherever no head stands
    assert torch.allclose(diff[:, 0, :, 3], diff[:, 1, :, 3])
    assert not torch.allclose(diff[0, 0], diff[1, 0])


def test_object_templates_centred_in_their_square(vids):
    t = object_templates(vids).reshape(12, 5, 8, 5, 8)
    for p in range(5):
        means = t[:, p, :, p].mean((-1, -2))
        assert torch.allclose(means, torch.zeros(12, dtype=torch.float64), atol=1e-12)
        others = [q for q in range(5) if q != p]
        assert t[:, p, :, others].abs().max() == 0


def test_frame_table(vids):
    table = frame_table(vids, 2)
    assert int(table["labelled"].sum()) == 3 * 2  # position 0 of two videos per object
    assert int(table["evaluated"].sum()) == 3 * 2 * 4
    assert not (table["labelled"] & table["evaluated"]).any()
    assert (table["positions"][table["evaluated"]] != 0).all()


def test_bad_input(vids):
    with pytest.raises(ValueError, match="n_objects"):
        make_videos(1, 2, object_seed=0, seed=0)
    with pytest.raises(ValueError, match="kind"):
        backgrounds(1, 4, 4, kind="fog", seed=0)
    with pytest.raises(ValueError, match="contrast"):
        cluttered(vids, -1.0, seed=0)
    with pytest.raises(ValueError, match="n_label_videos"):
        frame_table(vids, 4)


def test_box_crops_keep_the_box_and_drop_the_rest():
    from helpers.topics import temporal_association
    v = temporal_association.make_videos(2, 1, n_positions=4, size=8, object_seed=0, seed=1)
    x = temporal_association.cluttered(v, 0.8, seed=2)
    crops = temporal_association.box_crops(v, x, margin=0.5)
    side = x.shape[-1] // 4
    # position 1: the box spans [side/2, 5 side/2): zero outside, mean-free inside
    assert crops[:, 1, :, : side // 2].abs().max() == 0
    assert crops[:, 1, :, 5 * side // 2:].abs().max() == 0
    inside = crops[:, 1, :, side // 2: 5 * side // 2]
    assert inside.mean((-1, -2)).abs().max() < 1e-12


@pytest.fixture(scope="module")
def overlapping():
    return make_videos(3, 2, n_positions=6, size=8, stride=2, object_seed=0, seed=1)


def test_overlapping_positions_share_columns(overlapping):
    o = overlapping.objects  # (S, P, 8, (6 − 1)·2 + 8)
    assert o.shape == (6, 6, 8, 18) and overlapping.stride == 2
    squares = overlapping.squares()  # (P, W)
    assert squares.sum(1).tolist() == [8.0] * 6
    assert (squares[:-1] * squares[1:]).sum(1).tolist() == [6.0] * 5  # size − stride shared
    inside = (o.pow(2).sum(-2) > 0).to(o.dtype)  # (S, P, W) columns the head reaches
    assert (inside * (1 - squares)).max() == 0  # nothing outside its square
    assert (inside[:, :-1] * inside[:, 1:]).sum(-1).min() > 0  # neighbours share pixels


def test_overlapping_clutter_templates_and_crops(overlapping):
    x = cluttered(overlapping, 1.0, seed=0)
    diff = x - overlapping.objects
    squares = overlapping.squares()
    assert (diff * squares[None, :, None, :]).abs().max() == 0  # occluded inside the square
    assert torch.equal(diff[:, 0, :, 16:], diff[:, 1, :, 16:])  # one static background
    t = object_templates(overlapping)
    assert (t * (1 - squares)[None, :, None, :]).abs().max() == 0
    assert t.sum((-1, -2)).abs().max() < 1e-12  # mean removed over the square
    from helpers.topics.temporal_association import box_crops
    crops = box_crops(overlapping, x, margin=0.25)  # box: square ± 2 columns
    for p in range(6):
        left, right = max(0, 2 * p - 2), min(18, 2 * p + 10)
        assert crops[:, p, :, :left].abs().sum() == 0
        assert crops[:, p, :, right:].abs().sum() == 0
        assert crops[:, p, :, left:right].mean((-1, -2)).abs().max() < 1e-12


def test_stride_must_fit_the_square():
    for bad in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match="stride"):
            make_videos(2, 1, size=8, stride=bad, object_seed=0, seed=0)
