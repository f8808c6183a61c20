"""The Colab install cell every chapter opens with, and the build step that pins it.

Every chapter's first code cell (tagged ``remove-cell``) is :func:`install_cell`. In Colab it
installs this package, ``executable-dl-theory-helpers``, which Colab lacks; anywhere else it
does nothing. It installs, in this order of preference:

1. a wheel uploaded beside the notebook (``executable_dl_theory_helpers-*.whl`` in the working
   folder), the path that needs no repository: the built book serves its wheel;
2. else ``git+<repository>@<commit>``, where the environment variables ``BOOK_REPOSITORY`` (a
   fork) and ``BOOK_COMMIT`` (another commit, branch or tag) override the cell's defaults.

How the commit is pinned. A notebook cannot name the commit it is committed in, and the book's
execution cache keys a chapter by the text of its code cells, so the chapter files keep the
branch of ``_config.yml`` (``repository: branch``) as the cell's default and stay output-free,
exactly as jupytext pairs them with their ``.md``. After ``make book`` has built the HTML,
``python -m helpers.colab _build/html`` (the last step of the ``book`` target):

* rewrites that default in the notebooks the HTML offers for download
  (``_build/html/_sources/**/*.ipynb`` and ``.md``) to the commit the book was built from
  (``BOOK_COMMIT`` if set, else ``git rev-parse HEAD``), so a notebook downloaded from the
  built book installs the helpers its outputs were computed with;
* builds the package's wheel into ``_build/html/wheel/`` with
  ``pip wheel --no-deps --no-build-isolation`` (no network), beside a small index page.

A chapter opened with the Colab button is the repository's copy on the branch, so it installs
the helpers of that same branch. The repository URL is one setting, ``repository: url`` in
``_config.yml``; ``tests/test_book_structure.py`` checks that every chapter's cell is
``install_cell`` of that URL and branch, and ``tests/test_colab.py`` runs a chapter in an
emulated Colab (a fresh environment that sees the heavy packages but not this one).
Introduced in the *How to run this book* page (``book/how_to_run.md``).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

DISTRIBUTION = "executable-dl-theory-helpers"
WHEEL_GLOB = "executable_dl_theory_helpers-*.whl"

_CELL = '''\
# In Colab, install the book's helpers package (does nothing anywhere else): a wheel uploaded
# beside this notebook if there is one, else the repository at the book's commit.
import glob
import os
import sys

if "google.colab" in sys.modules:
    repo = os.environ.get("BOOK_REPOSITORY", "{repository}")
    commit = os.environ.get("BOOK_COMMIT", "{ref}")  # the built book's copy names its commit
    wheels = glob.glob("{wheel_glob}")
    source = wheels[0] if wheels else f"git+{{repo}}@{{commit}}"
    %pip install -q {{source}}'''

# The default of BOOK_COMMIT in the cell: the one string the build step rewrites.
_REF = re.compile(r'(os\.environ\.get\("BOOK_COMMIT", ")([^"]*)("\))')
_GIT_REF = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/-]*")
# What a wheel is built from: the package's own files, never caches or build leftovers.
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


def _check_ref(name: str, value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not _GIT_REF.fullmatch(value) or ".." in value:
        raise ValueError(f"{name} must be a git commit, branch or tag, got {value!r}")
    return value


def install_cell(repository: str, ref: str) -> str:
    """The source of every chapter's first code cell: install from ``git+repository@ref``.

    Args:
        repository: the repository URL (``repository: url`` in ``_config.yml``).
        ref: the default commit, branch or tag (the chapter files use the branch).
    """
    if not isinstance(repository, str):
        raise TypeError(f"repository must be a str, got {type(repository).__name__}")
    if not re.fullmatch(r"(https|http|file|ssh)://[^\s\"'{}]+", repository):
        raise ValueError(f"repository must be an https://, file:// or ssh:// URL, "
                         f"got {repository!r}")
    return _CELL.format(repository=repository.rstrip("/"), ref=_check_ref("ref", ref),
                        wheel_glob=WHEEL_GLOB)


def pin(source: str, commit: str) -> str:
    """``source`` (an install cell, or a text containing one) with its default ref ``commit``.

    Raises ValueError if ``source`` holds no install cell."""
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    _check_ref("commit", commit)
    pinned, n = _REF.subn(lambda m: m.group(1) + commit + m.group(3), source, count=1)
    if not n:
        raise ValueError("source holds no install cell (no BOOK_COMMIT default to pin)")
    return pinned


def pin_notebook(nb: nbformat.NotebookNode, commit: str) -> nbformat.NotebookNode:
    """Pin the install cell (the first code cell that mentions Colab) of ``nb`` in place."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "google.colab" in cell.source:
            cell.source = pin(cell.source, commit)
            return nb
    raise ValueError("nb has no Colab install cell")


def stamp_sources(html_dir: Path | str, commit: str) -> list[Path]:
    """Pin the install cell of every chapter notebook (and ``.md`` source) under
    ``html_dir/_sources`` to ``commit``; returns the files rewritten."""
    _check_ref("commit", commit)
    sources = Path(html_dir) / "_sources"
    if not sources.is_dir():
        raise ValueError(f"html_dir has no _sources folder: {sources} (build the book first)")
    done = []
    for path in sorted(sources.rglob("*")):
        text_source = path.name.endswith((".md", ".md.txt"))  # Sphinx may add .txt
        if not (text_source or path.suffix == ".ipynb") or "google.colab" not in path.read_text():
            continue
        if text_source:
            path.write_text(pin(path.read_text(), commit))
        else:
            nb = nbformat.read(path, as_version=4)
            nbformat.write(pin_notebook(nb, commit), path)
        done.append(path)
    return done


def build_commit(root: Path | str, environ: dict | None = None) -> str | None:
    """The commit a book built from ``root`` pins: ``BOOK_COMMIT`` if set, else the checkout's
    ``HEAD`` (None outside a git checkout). Warns on stderr when the package's files differ
    from ``HEAD``: the wheel then has changes that the pinned commit lacks."""
    environ = os.environ if environ is None else environ
    if environ.get("BOOK_COMMIT"):
        return _check_ref("BOOK_COMMIT", environ["BOOK_COMMIT"].strip())
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        return None
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "pyproject.toml", "src"],
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        print("helpers.colab: the package has uncommitted changes; notebooks are pinned to "
              "HEAD, which lacks them (the wheel has them)", file=sys.stderr)
    return head.stdout.strip()


def copy_package(root: Path | str, dest: Path | str) -> Path:
    """Copy what the package is built from (``pyproject.toml`` and ``src/``) into ``dest``."""
    root, dest = Path(root), Path(dest)
    if not (root / "pyproject.toml").is_file():
        raise ValueError(f"root has no pyproject.toml: {root}")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(root / "src", dest / "src", ignore=_IGNORE, dirs_exist_ok=True)
    return dest


def build_wheel(root: Path | str, out_dir: Path | str, python: str = sys.executable) -> Path:
    """Build the package's wheel from ``root`` into ``out_dir`` with no network
    (``pip wheel --no-deps --no-build-isolation``, from a copy so that ``root`` gets no
    ``build/`` folder); returns the wheel's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy_package(root, tmp)
        subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", str(out_dir), tmp], check=True)
    wheels = sorted(out_dir.glob(WHEEL_GLOB), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise RuntimeError(f"pip wheel wrote no {WHEEL_GLOB} into {out_dir}")
    return wheels[-1]


def publish(html_dir: Path | str, root: Path | str = ".") -> None:
    """The ``make book`` step: the wheel into ``html_dir/wheel/`` (with an index page) and the
    downloadable notebooks pinned to :func:`build_commit`."""
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise ValueError(f"html_dir is not a folder: {html_dir} (build the book first)")
    wheel_dir = html_dir / "wheel"
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel = build_wheel(root, wheel_dir)
    name = html.escape(wheel.name)
    (wheel_dir / "index.html").write_text(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{name}</title></head>'
        f'<body><p>The helpers package this book was built with: <a href="{name}">{name}</a>. '
        f"Upload it to Colab beside a chapter's notebook; the notebook's first cell installs it."
        f"</p></body></html>\n")
    commit = build_commit(root)
    if commit is None:
        print("helpers.colab: not a git checkout and no BOOK_COMMIT: the downloadable notebooks "
              "keep the branch", file=sys.stderr)
        return
    stamped = stamp_sources(html_dir, commit)
    print(f"helpers.colab: {wheel.relative_to(html_dir)}; {len(stamped)} downloadable sources "
          f"pinned to {commit[:12]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m helpers.colab <built html folder, e.g. _build/html>")
    publish(sys.argv[1])
