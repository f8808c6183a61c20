"""The Colab path, emulated with no network: a chapter's own notebook, run from its first cell.

Colab has torch, numpy, scipy, ... preinstalled and lacks this book's package. The emulation is
a fresh virtual environment whose ``.pth`` file shows it this checkout's installed packages
(through a folder of links that leaves this package out), as Colab's preinstalled packages are
seen, plus a stand-in ``google.colab`` module imported at start-up. The chapter's first cell
then installs the package with pip restricted to ``--no-index``: from a ``git+file://``
snapshot of the working tree (uncommitted changes included) at the commit that
:func:`helpers.colab.pin` writes, the way the built book pins it, and in a second case from the
wheel that ``make book`` publishes, uploaded beside the notebook.
"""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import colab

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTER = ROOT / "book/optimisation/square_loss.ipynb"  # the fastest chapter (about 15 s)


def _git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=book",
                           "-c", "user.email=book@localhost", "-c", "commit.gpgsign=false",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


def _colab_like_env(tmp: Path) -> Path:
    """A venv that sees this checkout's packages except the book's, and has ``google.colab``
    imported at start-up; returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(tmp / "venv")  # pip: the base's
    python = tmp / "venv/bin/python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    preinstalled = tmp / "preinstalled"  # the base's site-packages, this package left out
    preinstalled.mkdir()
    ours = ("executable_dl_theory_helpers", "__editable__", "helpers")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(ours):
            (preinstalled / entry.name).symlink_to(entry)
    (site / "colab_preinstalled.pth").write_text(f"{preinstalled}\n")
    (site / "google/colab").mkdir(parents=True)
    (site / "google/colab/__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
    (site / "zz_colab_runtime.pth").write_text("import google.colab\n")
    kernel = tmp / "kernels/colab"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab emulation", "language": "python"}))
    return python


def _kernel_env(tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({"PIP_NO_INDEX": "1", "PIP_CACHE_DIR": str(tmp / "pip-cache"),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "BOOK_REPOSITORY": f"file://{tmp}/nowhere", **extra})
    env["PIP_NO_BUILD_ISOLATION"] = "0"  # pip reads this one inverted: 0 = no isolation
    return env


def _run(nb, tmp: Path, env: dict):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
    km = AsyncKernelManager(kernel_name="colab", kernel_spec_manager=specs)
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp)}}
                   ).execute(env=env)
    return nb


PROBE = """\
import importlib.util, sys
assert "google.colab" in sys.modules, "the stand-in google.colab is not imported"
assert importlib.util.find_spec("helpers") is None, "helpers importable before the install cell"
"""
CHECK = """\
import helpers, torch
print(helpers.__file__, torch.__file__, sep="\\n")
assert helpers.__file__.startswith(sys.prefix), helpers.__file__
assert "preinstalled" in torch.__file__, "pip installed a second torch: " + torch.__file__
"""


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture
def colab_env(tmp_path):
    python = _colab_like_env(tmp_path)
    missing = subprocess.run([python, "-c", "import importlib.metadata as m; "
                              f"m.version({colab.DISTRIBUTION!r})"], capture_output=True)
    assert missing.returncode, "the emulated environment already has the book's package"
    return tmp_path


def test_chapter_runs_in_colab_from_a_git_commit(colab_env):
    repo = colab_env / "repo"
    colab.copy_package(ROOT, repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "snapshot of the working tree")
    commit = _git(repo, "rev-parse", "HEAD")
    nb = colab.pin_notebook(nbformat.read(CHAPTER, as_version=4), commit)  # as make book does
    install = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert f'"BOOK_COMMIT", "{commit}"' in nb.cells[install].source
    nb.cells.insert(install + 1, nbformat.v4.new_code_cell(CHECK))
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))
    env = _kernel_env(colab_env, BOOK_REPOSITORY=f"file://{repo}",
                      BOOK_CLAIMS_DIR=str(colab_env / "claims"))
    _run(nb, colab_env, env)
    assert "preinstalled" in _text(nb)
    assert list((colab_env / "claims").glob("*.json")), "the chapter wrote no claim records"


def test_install_cell_prefers_an_uploaded_wheel(colab_env):
    wheel = colab.build_wheel(ROOT, colab_env / "dist")
    (colab_env / wheel.name).symlink_to(wheel)  # uploaded beside the notebook
    chapter = nbformat.read(CHAPTER, as_version=4)
    install = next(c for c in chapter.cells if "%pip" in c.source)
    start = next(c for c in chapter.cells if "start_chapter(" in c.source)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE), install,
                                         nbformat.v4.new_code_cell(CHECK), start])
    # BOOK_REPOSITORY names no repository: the cell must not need one.
    _run(nb, colab_env, _kernel_env(colab_env, BOOK_CLAIMS_DIR=str(colab_env / "claims")))
    assert "preinstalled" in _text(nb)


def test_install_cell_pins_and_rejects_bad_input(tmp_path):
    cell = colab.install_cell("https://github.com/o/r", "main")
    assert 'f"git+{repo}@{commit}"' in cell and '"BOOK_COMMIT", "main"' in cell
    assert '"BOOK_COMMIT", "0123abc"' in colab.pin(cell, "0123abc")
    with pytest.raises(ValueError, match="commit"):
        colab.pin(cell, "main; rm -rf")
    with pytest.raises(TypeError, match="commit"):
        colab.pin(cell, 7)
    with pytest.raises(ValueError, match="source"):
        colab.pin("print(1)", "main")
    with pytest.raises(ValueError, match="repository"):
        colab.install_cell("github.com/o/r", "main")
    with pytest.raises(ValueError, match="html_dir"):
        colab.stamp_sources(tmp_path, "main")
    assert colab.build_commit(ROOT, {"BOOK_COMMIT": "v1.0"}) == "v1.0"


def test_stamp_sources_pins_the_downloadable_notebooks(tmp_path):
    src = tmp_path / "_sources/book/optimisation"
    src.mkdir(parents=True)
    nbformat.write(nbformat.read(CHAPTER, as_version=4), src / CHAPTER.name)
    (src / "square_loss.md.txt").write_text(CHAPTER.with_suffix(".md").read_text())
    (tmp_path / "_sources/intro.md").write_text("# No install cell here\n")
    done = colab.stamp_sources(tmp_path, "c0ffee")
    assert sorted(p.name for p in done) == ["square_loss.ipynb", "square_loss.md.txt"]
    nb = nbformat.read(src / CHAPTER.name, as_version=4)
    assert '"BOOK_COMMIT", "c0ffee"' in nb.cells[1].source + nb.cells[2].source
    assert '"BOOK_COMMIT", "c0ffee"' in (src / "square_loss.md.txt").read_text()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
