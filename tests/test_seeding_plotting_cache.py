"""Seeding, thread settings, the figure style and the execution-cache key."""

import os
import random
from pathlib import Path

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
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert helpers.configure_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert helpers.configure_threads() == 1 and torch.get_num_threads() == 1
        assert helpers.configure_threads(preferred=2) == min(2, os.cpu_count() or 1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert helpers.configure_threads(preferred=2) == 1  # the environment wins
        with pytest.raises(ValueError, match="n_threads"):
            helpers.configure_threads(0)
        with pytest.raises(ValueError, match="preferred"):
            helpers.configure_threads(preferred=0)
        with pytest.raises(TypeError, match="n_threads"):
            helpers.configure_threads(1.5)
    finally:
        torch.set_num_threads(before)


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


def test_map_in_threads_keeps_order_and_restores_the_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        def work(k):
            seen.append(torch.get_num_threads())
            gen = torch.Generator().manual_seed(k)  # its own generator: the same as in a loop
            return torch.randn(50, 50, generator=gen).matmul(torch.ones(50)).sum().item()

        expected = [work(k) for k in range(5)]
        seen.clear()
        assert helpers.map_in_threads(work, range(5)) == expected  # two workers
        assert seen == [1] * 5 and torch.get_num_threads() == 2
        assert helpers.map_in_threads(work, range(5), workers=1) == expected
        assert helpers.map_in_threads(work, []) == []
        with pytest.raises(ValueError, match="workers"):
            helpers.map_in_threads(work, range(2), workers=0)
        with pytest.raises(TypeError, match="workers"):
            helpers.map_in_threads(work, range(2), workers=1.5)
        with pytest.raises(ZeroDivisionError):
            helpers.map_in_threads(lambda k: 1 / k, [1, 0])
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


def _fake_book(root):
    """A book with two chapters whose topics exist in the real package."""
    (root / "requirements.txt").write_text("x==1\n")
    for part, name in (("depth", "resnet_rnn"), ("robustness", "zico")):
        (root / "book" / part).mkdir(parents=True, exist_ok=True)
        (root / "book" / part / f"{name}.md").write_text("# x\n")
    return root / "_build", root / "_build" / "claims"


def test_cache_key_tracks_settings_and_the_chapters_topic(tmp_path, monkeypatch):
    _fake_book(tmp_path)
    key = build_cache.execution_key(tmp_path, "resnet_rnn")
    assert build_cache.execution_key(tmp_path, "zico") != key  # different topics
    monkeypatch.setenv("BOOK_SEED", "1")
    assert build_cache.execution_key(tmp_path, "resnet_rnn") != key
    assert build_cache.topic_files("resnet_rnn")[0].name == "resnet_rnn.py"
    assert len(build_cache.topic_files("compositional")) >= 3  # a package: every file
    assert not any(f.parent.name == "topics" and f.stem != "__init__"
                   for f in build_cache.shared_files())  # no topic in the shared part


def test_refresh_invalidates_only_the_chapters_whose_key_changed(tmp_path, monkeypatch):
    build, claims = _fake_book(tmp_path)
    assert len(build_cache.refresh(build, tmp_path, claims)) == 2  # first time: all
    claims.mkdir()
    for name in ("resnet-rnn", "zico"):
        (claims / f"{name}.json").write_text("[]")
    assert build_cache.refresh(build, tmp_path, claims) == []  # unchanged: all kept
    keys = build_cache.current_keys(tmp_path)
    stored = dict(keys, **{"book/robustness/zico.md": "an older key"})
    (build / build_cache.KEYS_FILE).write_text(__import__("json").dumps(stored))
    source = tmp_path / "book/robustness/zico.md"
    import os
    os.utime(source, (0, 0))
    assert build_cache.refresh(build, tmp_path, claims) == ["book/robustness/zico.md"]
    assert not (claims / "zico.json").exists() and (claims / "resnet-rnn.json").exists()
    assert source.stat().st_mtime > 0  # marked for Sphinx to read again
    monkeypatch.setenv("BOOK_SEED", "2")
    assert len(build_cache.record(build, tmp_path)) == 2  # a setting: every chapter
    assert (claims / "resnet-rnn.json").exists()  # record never deletes


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


def test_refresh_drops_the_stale_chapters_cached_execution(tmp_path):
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    build, claims = _fake_book(tmp_path)
    build_cache.refresh(build, tmp_path, claims)
    cache = get_cache(str(build / ".jupyter_cache"))
    for name in ("depth/resnet_rnn", "robustness/zico"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = '{name}'")])
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(tmp_path / f"book/{name}.md")),
                                    check_validity=False)
    stored = {"book/depth/resnet_rnn.md": "old"}
    (build / build_cache.KEYS_FILE).write_text(
        __import__("json").dumps(build_cache.current_keys(tmp_path) | stored))
    build_cache.refresh(build, tmp_path, claims)
    assert [Path(r.uri).name for r in cache.list_cache_records()] == ["zico.md"]
