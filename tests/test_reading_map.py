"""The reading map (book/reading_map.yml) against the chapters: every chapter is on it, its
"Builds on" line and "Where next" section link exactly to the chapters the map names, the map
lists every link the code makes, and every labelled figure is referenced from the prose."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext"))
import reading_map as rm  # noqa: E402  (the book's Sphinx extension, importable without Sphinx)

DATA = rm.load(ROOT)
DOCS = rm.docname_of(ROOT)
CHAPTERS = [doc for _, docs in rm.parts(ROOT) for doc in docs]
ORDER = {Path(doc).name: i for i, doc in enumerate(CHAPTERS)}


def _text(doc: str) -> str:
    return (ROOT / f"{doc}.md").read_text()


def _doc_links(doc: str, text: str) -> set[str]:
    """Docnames of every {doc}`...` link in ``text``, resolved from ``doc``'s folder."""
    out = set()
    for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", text):
        out.add(str((Path(doc).parent / target).resolve().relative_to(ROOT)))
    return out


def test_generated_cases_exist():
    assert len(CHAPTERS) >= 27 and len(DATA["chapters"]) >= 27


def test_map_covers_every_chapter_once():
    stems = [Path(d).name for d in CHAPTERS]
    assert sorted(DATA["chapters"]) == sorted(stems), \
        f"not on the map: {set(stems) - set(DATA['chapters'])}; " \
        f"not a chapter: {set(DATA['chapters']) - set(stems)}"


def test_links_point_backwards_to_chapters():
    for src, dst, why, then in rm.edges(DATA):
        assert src in ORDER, f"{dst} builds on {src}, which is not a chapter"
        assert ORDER[src] < ORDER[dst], f"{dst} builds on the later chapter {src}"
        assert why.strip() and then.strip(), f"{src} -> {dst} needs both reasons"


def test_every_chapter_has_somewhere_to_go():
    for stem in DATA["chapters"]:
        targets = rm.where_next(DATA, stem)
        assert targets, f"{stem} has no 'Where next'"
        assert all(t in DOCS for t, _ in targets), f"{stem}: a 'Where next' is not in _toc.yml"


def test_code_links_are_on_the_map():
    """Chapters that call an engine module introduced in another chapter build on it."""
    found = rm.code_edges(ROOT, DATA["code_modules"])
    assert found, "the code scan found no links at all"
    listed = {(s, d) for s, d, _, _ in rm.edges(DATA)}
    missing = sorted((s, d, m) for s, d, m in found if (s, d) not in listed)
    assert not missing, f"code links missing from {rm.MAP_FILE}: {missing}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapter_text_follows_the_map(doc):
    stem, text = Path(doc).name, _text(doc)
    overview = text.split("\n## Overview\n", 1)[1].split("\n## ", 1)[0]
    first = overview.strip().split("\n\n")[0]
    assert first.startswith("**Builds on.**"), f"{doc}: the Overview must open with 'Builds on'"
    expected = {DOCS[s] for s in DATA["chapters"][stem].get("builds_on") or {}}
    linked = _doc_links(doc, first) & set(CHAPTERS)
    assert linked == expected, \
        f"{doc} 'Builds on' links {sorted(linked)}, map says {sorted(expected)}"
    assert "\n## Where next\n" in text, f"{doc} has no 'Where next' section"
    tail = text.split("\n## Where next\n", 1)[1]
    assert "\n## " not in tail, f"{doc}: 'Where next' must be the last section"
    expected = {DOCS[s] for s, _ in rm.where_next(DATA, stem)}
    assert _doc_links(doc, tail) == expected, \
        f"{doc} 'Where next' links {sorted(_doc_links(doc, tail))}, map says {sorted(expected)}"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_figure_is_labelled_and_referenced(doc):
    text = _text(doc)
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```$", text, re.S | re.M)
    figures = [c for c in cells if "mystnb:" in c and "figure:" in c]
    labels = [m for c in figures for m in re.findall(r"name: (fig-[\w-]+)", c)]
    assert len(labels) == len(figures), f"{doc}: a figure cell has no name"
    assert all("caption:" in c for c in figures), f"{doc}: a figure cell has no caption"
    referenced = set(re.findall(r"\{numref\}`(?:[^`<]*<)?(fig-[\w-]+)>?`", text))
    assert set(labels) <= referenced, f"{doc}: figures never referenced: {set(labels) - referenced}"
    assert referenced <= set(labels), f"{doc}: references to no figure: {referenced - set(labels)}"


def test_map_draws_every_chapter_with_a_link():
    drawing = rm.svg(ROOT, href=lambda doc: f"{doc}.html")
    for doc in CHAPTERS:
        assert f'href="{doc}.html"' in drawing, f"{doc} is not a node of the map"
    assert drawing.count("<path ") == len(rm.edges(DATA)) + 2  # two in the legend
