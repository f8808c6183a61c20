"""Shared test settings.

* Unit tests never write into the real claims ledger.
* Tests that take the ``device`` fixture run on ``BOOK_TEST_DEVICE`` (default ``cpu``).
* When ``BOOK_EXEC_CACHE`` names a Jupyter Book execution cache, every chapter notebook that
  nbmake executes successfully is stored there, so the strict book build that follows renders
  those outputs instead of executing each chapter a second time (``make test`` does this).
  The cache key is a hash of the code cells, which the pair-sync test guarantees are the same
  in a chapter's ``.ipynb`` (run here) and its ``.md`` (built into the book).
"""

import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402


@pytest.fixture
def device():
    """The device the unit tests run on: ``BOOK_TEST_DEVICE`` (default ``cpu``), so that the
    same suite runs on a GPU (``make gpu-check`` sets it to ``cuda``)."""
    import torch

    name = os.environ.get("BOOK_TEST_DEVICE", "cpu").strip() or "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"BOOK_TEST_DEVICE={name} but no CUDA device is available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _isolated_ledger(request, tmp_path, monkeypatch):
    if request.node.path.suffix != ".ipynb":
        monkeypatch.setenv("BOOK_CLAIMS_DIR", str(tmp_path / "claims"))


def _store_in_execution_cache(nb, ipynb: Path, cache_dir: str, seconds: float) -> None:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    for cell in nb.cells:  # nbclient's timing metadata would change the cache key
        cell.metadata.pop("execution", None)
    bundle = CacheBundleIn(nb, str(ipynb.with_suffix(".md").resolve()),
                           data={"execution_seconds": seconds})
    for attempt in range(20):  # two pytest workers may write the SQLite index at once
        try:
            get_cache(cache_dir).cache_notebook_bundle(bundle, check_validity=False,
                                                       overwrite=True)
            return
        except Exception as err:  # sqlite "database is locked"
            if "locked" not in str(err) or attempt == 19:
                raise
            time.sleep(0.5)


def pytest_configure(config):
    from helpers.kernel_polling import poll_kernel_in_slices

    poll_kernel_in_slices()  # nbmake's kernel replies are never missed under load
    cache_dir = os.environ.get("BOOK_EXEC_CACHE")
    if not cache_dir:
        return
    from nbmake.nb_run import NotebookRun

    execute = NotebookRun.execute

    def execute_and_cache(self):
        start = time.perf_counter()
        result = execute(self)
        if result.error is None:
            _store_in_execution_cache(result.nb, Path(self.filename), cache_dir,
                                      time.perf_counter() - start)
        return result

    NotebookRun.execute = execute_and_cache
