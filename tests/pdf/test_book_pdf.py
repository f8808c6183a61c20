"""The whole-book PDF that `make pdf` builds (and `make test` runs), against its sources.

It must open a chapter for every page of ``_toc.yml``, in order; draw every figure output of
the executed pages as an image; hold every theorem block, the claims ledger with every
chapter, and the bibliography with every cited work; and the HTML book beside it must link
it. ``BOOK_PDF`` names the PDF, ``BOOK_HTML`` the HTML book it was copied into; ``make pdf``
sets both and builds the PDF first, so a skip here means that it was not built.
"""

import os
import re
from pathlib import Path

import pytest

from helpers import pdf

ROOT = Path(__file__).resolve().parents[2]
PDF = Path(os.environ.get("BOOK_PDF", ROOT / "_build/pdf/_build/latex/book.pdf"))
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build/html"))
EXECUTED = PDF.parent.parent / "jupyter_execute"  # the notebooks this build executed or loaded


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _require_pdf():
    if not PDF.is_file():
        pytest.skip(f"!!!!!!!! PDF TEST SKIPPED: {PDF} was not built (`make pdf` builds it and "
                    "runs this test; `make test` does both)")


@pytest.fixture(scope="module")
def text() -> str:
    _require_pdf()
    return pdf.pdf_text(PDF).replace("’", "'")  # LaTeX prints ' as a closing quote


@pytest.fixture(scope="module")
def openings(text) -> dict[str, int]:
    """Where each page's chapter opens: its title in capitals (the chapter heading's style; the
    table of contents and the running heads keep the title's own case), searched in order."""
    at, found, missing = 0, {}, []
    for page in pdf.toc_pages(ROOT)[1:]:  # the root page is the book's front page
        title = _plain(pdf.page_title(ROOT, page)).upper()
        hit = text.find(title, at)
        if hit < 0:
            missing.append(title)
        else:
            found[page] = at = hit
    assert not missing, f"{len(missing)} pages of _toc.yml have no chapter in the PDF, or not " \
                        f"in the order of _toc.yml: {missing}"
    return found


def test_every_page_of_the_toc_opens_a_chapter_in_order(openings):
    assert len(openings) == len(pdf.toc_pages(ROOT)) - 1


def test_every_figure_output_is_an_image_in_the_pdf():
    _require_pdf()
    expected = pdf.expected_figures(ROOT, ROOT / "_build", EXECUTED)
    total = sum(expected.values())
    assert total > 0, "no figure outputs found in the executed pages"
    drawn = pdf.pdf_image_count(PDF)
    assert drawn == total, (f"the PDF draws {drawn} images, the executed pages have {total} "
                            "figure outputs: "
                            + ", ".join(f"{Path(p).name} {n}" for p, n in expected.items()))


def test_every_theorem_block_is_in_the_pdf(text, openings):
    """Each ``{prf:theorem}`` whose title is plain words (no math) shows that title."""
    titles = []
    for page in pdf.toc_pages(ROOT):
        source = (ROOT / f"{page}.md").read_text()
        titles += re.findall(r"^```{prf:theorem} ([^$\\`{}\n]+)$", source, re.M)
    assert len(titles) >= 20, f"only {len(titles)} theorem titles found in the sources"
    body = text[min(openings.values()):]
    missing = [t for t in titles if _plain(t) not in body]
    assert not missing, f"theorem blocks missing from the PDF: {missing}"


def test_the_claims_ledger_lists_every_chapter(text, openings):
    pages = list(openings)
    start = openings["book/claims_ledger"]
    ledger = text[start:openings[pages[pages.index("book/claims_ledger") + 1]]]
    chapters = [p for p in pages if len(Path(p).parts) == 3]
    missing = [c for c in chapters if _plain(pdf.page_title(ROOT, c)) not in ledger]
    assert not missing, f"chapters missing from the PDF's claims ledger: {missing}"
    assert "0 failed" in ledger, "the PDF's claims ledger does not say that no check failed"


def _bib_title(bib: str, key: str) -> str:
    """The first four words of an entry's title, as LaTeX prints them (no braces, -- as –)."""
    entry = re.search(r"@\w+\{" + re.escape(key) + r",.*?\btitle\s*=\s*\{(.+?)\},?\n", bib, re.S)
    assert entry, f"{key} is cited but has no title in the .bib files"
    words = re.sub(r"[{}\\$]", "", entry.group(1).replace("--", "–")).split()[:4]
    return " ".join(words)


def test_the_bibliography_has_every_cited_work(text, openings):
    keys = set()
    for page in pdf.toc_pages(ROOT):
        for group in re.findall(r"{cite(?::\w+)?}`([^`]+)`", (ROOT / f"{page}.md").read_text()):
            keys.update(k.strip() for k in group.split(","))
    assert len(keys) >= 20, f"only {len(keys)} cited keys found"
    bib = "\n".join(path.read_text() for path in ROOT.glob("book/**/*.bib"))
    references = text[text.index("[1] ", openings["book/bibliography"]):].lower()
    missing = {k: t for k in keys if (t := _bib_title(bib, k)).lower() not in references}
    assert not missing, f"cited works missing from the PDF's bibliography: {missing}"


def test_the_html_book_links_the_pdf():
    _require_pdf()
    if not (HTML / "index.html").is_file():
        pytest.skip(f"!!!!!!!! PDF LINK TEST SKIPPED: no HTML book in {HTML}")
    landing = HTML / "book" / "intro.html"
    links = re.findall(r'href="([^"]*book\.pdf)"', landing.read_text())
    assert links, f"{landing} does not link the PDF"
    for link in links:
        target = (landing.parent / link).resolve()
        assert target.is_file(), f"{landing} links {link}, which is not in the HTML book"
        assert target.read_bytes() == PDF.read_bytes(), f"{target} is not the PDF just built"
