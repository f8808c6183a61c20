"""The whole book as one PDF (``make pdf``), rendered from the execution cache.

The PDF is Jupyter Book's LaTeX build of the same executed chapters as the HTML book: it reads
every chapter's outputs from the execution cache that ``make test`` (or ``make book``) fills,
and must never execute a chapter itself. ``python -m helpers.pdf check BUILD_DIR`` exits with
status 1, naming them, when a chapter is not in ``BUILD_DIR/.jupyter_cache`` with its current
code, or was cached under other helpers, requirements or settings (its key in
``BUILD_DIR/.execution-keys.json``, see ``helpers.build_cache``, differs from the current one).

Two back-matter pages (Performance, Reproducibility) are executed by every build, HTML or
PDF, in ``execution_mode: force``: they only read the published ``book/*.json`` reports.

The other functions count what the PDF must hold, for ``tests/pdf``: the pages of the table of
contents with their titles, and the figures, which are the image outputs of the executed
pages. ``python -m helpers.pdf figures BUILD_DIR`` prints the figure count per page (of
the PDF that ``make pdf`` builds on its own, in ``BUILD_DIR/pdf``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from helpers.build_cache import KEYS_FILE, current_keys

# What Sphinx's LaTeX builder shows of a cell's outputs (myst-nb's priority for ``latex``).
FIGURE_MIMES = ("application/pdf", "image/png", "image/jpeg")
HIDDEN_OUTPUT_TAGS = {"remove-output", "remove-cell"}


def toc_pages(root: Path) -> list[str]:
    """Every page of ``_toc.yml`` in reading order (``book/intro``, ``book/how_to_run``, …)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [toc["root"], *(c["file"] for part in toc.get("parts", [])
                           for c in part.get("chapters", []))]


def page_title(root: Path, page: str) -> str:
    """The first level-one heading of a page's MyST source."""
    for line in (root / f"{page}.md").read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise ValueError(f"{page}.md has no '# ' title")


def _cache(build_dir: Path):
    from jupyter_cache import get_cache

    return get_cache(str(build_dir / ".jupyter_cache"))


def cached_notebook(cache, source: Path):
    """The executed notebook the cache holds for ``source`` (a chapter's ``.md``) with its
    current code cells, or ``None``. Jupyter Book matches on the same hash of the code."""
    import jupytext

    try:
        record = cache.match_cache_notebook(jupytext.read(source))
    except KeyError:
        return None
    return cache.get_cache_bundle(record.pk).nb


def cache_gaps(root: Path, build_dir: Path) -> list[str]:
    """Chapters the PDF build would have to execute, each with the reason."""
    keys_path = build_dir / KEYS_FILE
    stored = json.loads(keys_path.read_text()) if keys_path.is_file() else {}
    cache = _cache(build_dir)
    gaps = []
    for source, key in current_keys(root).items():
        if stored.get(source) != key:
            gaps.append(f"{source} (cached under other helpers, requirements or settings)")
        elif cached_notebook(cache, root / source) is None:
            gaps.append(f"{source} (not in the cache with its current code)")
    return gaps


def figure_outputs(nb) -> int:
    """Image outputs of an executed notebook that the LaTeX build shows (cells tagged
    ``remove-output`` or ``remove-cell`` show none)."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or HIDDEN_OUTPUT_TAGS & set(cell.metadata.get("tags", [])):
            continue
        count += sum(any(m in out.get("data", {}) for m in FIGURE_MIMES)
                     for out in cell.get("outputs", []))
    return count


def expected_figures(root: Path, build_dir: Path, executed: Path) -> dict[str, int]:
    """Figure outputs of every page of the table of contents (``book/...`` → count): a chapter's
    from the execution cache, a page the build executes itself (``execution_mode: force``) from
    the notebook that build wrote into ``executed`` (its ``jupyter_execute`` folder)."""
    import nbformat

    cache, chapters = _cache(build_dir), current_keys(root)
    counts = {}
    for page in toc_pages(root):
        if f"{page}.md" in chapters:
            nb = cached_notebook(cache, root / f"{page}.md")
            if nb is None:
                raise LookupError(f"{page}.md is not in the execution cache")
        elif (executed / f"{page}.ipynb").is_file():
            nb = nbformat.read(executed / f"{page}.ipynb", as_version=4)
        else:
            continue  # a page without code
        counts[page] = figure_outputs(nb)
    return counts


def image_rows(listing: str) -> int:
    """Images in a ``pdfimages -list`` listing: its rows of type ``image`` (a PNG with
    transparency adds an ``smask`` row, which is not a second figure)."""
    rows = [line.split() for line in listing.splitlines()[2:]]  # two header lines
    return sum(len(row) > 2 and row[2] == "image" for row in rows)


def pdf_image_count(pdf: Path) -> int:
    """Images drawn in a PDF (poppler's ``pdfimages``)."""
    return image_rows(subprocess.run(["pdfimages", "-list", str(pdf)], check=True,
                                     capture_output=True, text=True).stdout)


def pdf_text(pdf: Path) -> str:
    """The PDF's text (``pdftotext``), whitespace collapsed to single spaces."""
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], check=True,
                         capture_output=True, text=True).stdout
    return re.sub(r"\s+", " ", out)


def main(argv: list[str]) -> int:
    """``python -m helpers.pdf check|figures BUILD_DIR``."""
    if len(argv) != 2 or argv[0] not in ("check", "figures"):
        print("usage: python -m helpers.pdf check|figures BUILD_DIR", file=sys.stderr)
        return 2
    root, build_dir = Path.cwd(), Path(argv[1])
    if argv[0] == "figures":
        executed = build_dir / "pdf" / "_build" / "jupyter_execute"
        for page, n in expected_figures(root, build_dir, executed).items():
            print(f"{n:4d}  {page}")
        return 0
    gaps = cache_gaps(root, build_dir)
    if gaps:
        print(f"The PDF is rendered from the execution cache and never executes a chapter, but "
              f"{len(gaps)} chapter(s) are not cached as they are now:\n  "
              + "\n  ".join(gaps)
              + "\nRun `make test` (or `make book`) first: either executes them into the cache.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
