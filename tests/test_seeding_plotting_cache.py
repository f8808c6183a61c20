"""Seeding, thread settings, the figure style and the execution-cache key."""

import random

import matplotlib as mpl
import numpy as np
import pytest
import torch

import helpers
from helpers import build_cache


def test_seed_everything_reproduces_all_generators():
    helpers.seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    helpers.seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    with pytest.raises(TypeError):
        helpers.seed_everything(1.5)
    with pytest.raises(ValueError):
        helpers.seed_everything(-1)


def test_make_generator_is_independent_of_global_state():
    a = torch.randn(3, generator=helpers.make_generator(9))
    torch.manual_seed(123)
    b = torch.randn(3, generator=helpers.make_generator(9))
    assert torch.equal(a, b)


def test_configure_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert helpers.configure_threads() == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError):
        helpers.configure_threads(0)


def test_one_cpu_thread_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with helpers.one_cpu_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), helpers.one_cpu_thread():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_style_and_subplots():
    helpers.use_book_style()
    assert mpl.rcParams["axes.spines.top"] is False
    fig, axes = helpers.subplots(3, 2)
    assert axes.shape == (6,)
    helpers.label(axes[0], "x", "y", "t")
    assert axes[0].get_xlabel() == "x" and axes[0].get_title() == "t"
    with pytest.raises(ValueError):
        helpers.subplots(0)
    with pytest.raises(ValueError):
        helpers.reference_line(axes[0], 1.0, axis="z")


def test_start_chapter_seeds_from_book_seed(monkeypatch):
    monkeypatch.setenv("BOOK_SEED", "17")
    cfg = helpers.start_chapter("unit-seed", quiet=True)
    first = torch.rand(2)
    helpers.start_chapter("unit-seed", quiet=True)
    assert cfg.seed == 17 and torch.equal(torch.rand(2), first)


def test_cache_key_tracks_settings_and_refresh_clears(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("x==1\n")
    key = build_cache.execution_key(tmp_path)
    monkeypatch.setenv("BOOK_SEED", "1")
    assert build_cache.execution_key(tmp_path) != key
    build = tmp_path / "_build"
    claims = build / "claims"
    assert build_cache.refresh(build, tmp_path, claims)  # first time: no key yet
    (build / ".jupyter_cache").mkdir()
    (build / ".doctrees").mkdir()
    claims.mkdir()
    assert not build_cache.refresh(build, tmp_path, claims)  # unchanged: cache kept
    assert (build / ".jupyter_cache").exists()
    monkeypatch.setenv("BOOK_SEED", "2")
    assert build_cache.refresh(build, tmp_path, claims)
    assert not (build / ".jupyter_cache").exists() and not claims.exists()
    assert not (build / ".doctrees").exists()


def test_digits_split_is_seeded_standardised_and_disjoint():
    from helpers.engine.data import bundled, digits

    a, b = digits(seed=3), digits(seed=3)
    assert torch.equal(a.x_train, b.x_train) and a.n_classes == 10
    assert a.x_train.shape[1] == 64 and len(a.x_train) + len(a.x_test) == 1797
    assert abs(a.x_train.mean().item()) < 1e-5
    assert not torch.equal(digits(seed=4).y_test, a.y_test)
    assert bundled("iris").n_classes == 3
    with pytest.raises(ValueError, match="name"):
        bundled("mnist")
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=1.5)
