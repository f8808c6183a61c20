"""The book's shape: every toc chapter has a synced pair, a Colab cell, a claim check."""

import json
import re
from pathlib import Path

import jupytext
import pytest
import yaml

from helpers.colab import install_cell

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
TOC_FILES = [c["file"] for part in TOC["parts"] for c in part["chapters"]]
CHAPTERS = [f for f in TOC_FILES if len(Path(f).parts) == 3]  # book/<part>/<name>
MYST_PAGES = sorted(p for p in ROOT.glob("book/**/*.md") if "format_name: myst" in p.read_text())


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_generated_cases_exist():
    assert CHAPTERS, "no chapters found in _toc.yml"
    assert MYST_PAGES, "no MyST notebooks found under book/"


def test_every_toc_entry_exists():
    for f in [TOC["root"], *TOC_FILES]:
        assert (ROOT / f"{f}.md").is_file(), f"{f}.md listed in _toc.yml is missing"


@pytest.mark.parametrize("md", MYST_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pair_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{md} has no paired .ipynb: run `make pair`"
    a, b = jupytext.read(md), jupytext.read(ipynb)
    cells = lambda nb: [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))  # noqa: E731
                        for c in nb.cells]
    assert cells(a) == cells(b), f"{md.name} and {ipynb.name} differ: run `make pair`"
    raw = json.loads(ipynb.read_text())
    assert not any(c.get("outputs") for c in raw["cells"]), f"{ipynb} has outputs committed"
    assert "md:myst" in a.metadata["jupytext"]["formats"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_shape(chapter):
    nb = jupytext.read(ROOT / f"{chapter}.md")
    cells = code_cells(nb)
    repository = CONFIG["repository"]
    colab = cells[0]
    assert colab.source == install_cell(repository["url"], repository["branch"]), \
        "first code cell must be helpers.colab.install_cell of _config.yml's repository"
    assert "remove-cell" in colab.metadata.get("tags", [])
    name = Path(chapter).name.replace("_", "-")
    assert re.search(rf'start_chapter\("{name}"(, threads=\d+)?\)', cells[1].source), \
        f"second code cell must call helpers.start_chapter({name!r})"
    source = "\n".join(c.source for c in cells)
    assert "check_claim(" in source, "a chapter needs at least one claim check"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert text.lstrip().startswith("# ") and "{chapter-header}" in text.split("##")[0], \
        "a chapter opens with its title and a {chapter-header} box"
    for needed in ("{prf:theorem}", "{cite}", "When the assumptions fail", "{exercise}",
                   "{solution}"):
        assert needed in text, f"{chapter} lacks {needed}"
    assert "ipywidgets" in source, f"{chapter} has no widget"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_citations_exist_in_bib(chapter):
    bib = "\n".join((ROOT / f).read_text() for f in CONFIG["bibtex_bibfiles"])
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    text = (ROOT / f"{chapter}.md").read_text()
    cited = {k.strip() for group in re.findall(r"\{cite[a-z]*\}`([^`]+)`", text)
             for k in group.split(",")}
    papers = set(re.findall(r'paper="([^"]+)"', text))
    assert cited and papers, f"{chapter} cites nothing"
    assert cited | papers <= keys, f"unknown bib keys: {(cited | papers) - keys}"


def test_bib_keys_are_unique_across_files():
    keys = [k for f in CONFIG["bibtex_bibfiles"]
            for k in re.findall(r"@\w+\{([^,]+),", (ROOT / f).read_text())]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []


def test_ipynb_excluded_from_build_and_hidden_folders_ignored():
    patterns = CONFIG["exclude_patterns"]
    assert "**.ipynb" in patterns and ".*" in patterns


@pytest.mark.parametrize("page", ["book/performance.md", "book/reproducibility.md"])
def test_pages_built_from_generated_files_always_execute(page):
    """Their code never changes, so the execution cache would serve stale output."""
    header = yaml.safe_load((ROOT / page).read_text().split("---")[1])
    assert header["mystnb"]["execution_mode"] == "force"


def _figure_cells(chapter):
    nb = jupytext.read(ROOT / f"{chapter}.md")
    return [c for c in code_cells(nb) if "figure" in c.metadata.get("mystnb", {})]


# Matplotlib calls that return an object (a Legend, Line2D list, ...), shown as a second output.
RETURNS_AN_ARTIST = {"legend", "plot", "loglog", "semilogx", "semilogy", "hist", "imshow", "bar",
                     "barh", "scatter", "text", "annotate", "set_title", "set_xlabel",
                     "set_ylabel", "axhline", "axvline", "fill_between", "colorbar", "errorbar",
                     "contour", "contourf", "pcolormesh", "suptitle", "step", "stairs"}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figure_cells_end_without_a_value(chapter):
    """A figure cell that ends with a value (e.g. ``ax.legend()``) outputs it beside the figure;
    the build then gives the figure's name to two outputs, a duplicate-target warning that
    fails the strict build. Such a cell ends with ``;``."""
    import ast

    for cell in _figure_cells(chapter):
        if cell.source.rstrip().endswith(";"):
            continue
        body = ast.parse("\n".join(line for line in cell.source.splitlines()
                                   if not line.startswith(("%", "!")))).body
        last = body[-1].value if body and isinstance(body[-1], ast.Expr) else None
        shows_value = last is not None and (
            not isinstance(last, ast.Call)
            or (isinstance(last.func, ast.Attribute) and last.func.attr in RETURNS_AN_ARTIST))
        name = cell.metadata["mystnb"]["figure"].get("name")
        assert not shows_value, f"figure cell {name!r} ends with a value: end it with ';'"


def test_figure_names_unique_across_the_book():
    names = [c.metadata["mystnb"]["figure"].get("name") for ch in CHAPTERS
             for c in _figure_cells(ch)]
    duplicates = {n for n in names if n and names.count(n) > 1}
    assert not duplicates, f"figure names used twice: {duplicates}"
