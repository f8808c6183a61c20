"""Random seeds and CPU threads, set in one call.

Introduced in the chapter "Implicit bias of gradient descent"; used by every chapter through
:func:`helpers.core.chapter.start_chapter`. Helpers never reseed globally: they take ``seed=`` or
``generator=`` and build their own ``torch.Generator``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch

from helpers.core.progress import progress

_T = TypeVar("_T")
_R = TypeVar("_R")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed`` (no global state)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def default_threads(preferred: int = 1) -> int:
    """The number of torch CPU threads a chapter uses: ``OMP_NUM_THREADS`` when set, else
    ``preferred`` (at most the number of CPUs).

    ``preferred`` is 1 for almost every chapter, because the book's models are tiny: each
    operation is too small to split, and waking a sleeping second thread
    (``OMP_WAIT_POLICY=PASSIVE``) for it costs more than the split saves. A chapter whose
    matrix products are large enough to split asks for more. The *Performance* appendix shows
    the benchmark's one-thread and two-thread loops side by side.
    """
    if isinstance(preferred, bool) or not isinstance(preferred, int):
        raise TypeError(f"preferred must be an int, got {type(preferred).__name__}")
    if preferred < 1:
        raise ValueError(f"preferred must be at least 1, got {preferred}")
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else min(preferred, os.cpu_count() or 1)


def configure_threads(n_threads: int | None = None, *, preferred: int = 1) -> int:
    """Set torch's intra-op CPU threads to ``n_threads`` and return the number used.

    ``n_threads`` defaults to :func:`default_threads` with ``preferred`` (``OMP_NUM_THREADS``
    when set, else ``preferred``).
    """
    if n_threads is None:
        n_threads = default_threads(preferred)
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise TypeError(f"n_threads must be an int, got {type(n_threads).__name__}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    torch.set_num_threads(n_threads)
    return n_threads


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run the block with one intra-op CPU thread, then restore the previous count.

    For training loops whose every operation is tiny (tensors of a few hundred kB, one small
    model): a second thread costs more to wake than it saves, and made such loops up to 1.5–2×
    slower on two cores (compositional approximation, greedy layerwise training). Device
    tensors (CUDA) are unaffected.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_in_threads(fn: Callable[[_T], _R], items: Iterable[_T], *, workers: int | None = None,
                   desc: str | None = None) -> list[_R]:
    """``[fn(item) for item in items]``, computed in up to ``workers`` Python threads, each
    with one intra-op CPU thread; results in the order of ``items``.

    ``workers`` defaults to torch's current intra-op thread count, so under
    ``OMP_NUM_THREADS=1`` (tests, seed sweeps running chapters side by side) the items run one
    after another in the calling thread. For independent pieces of work made of small
    operations: each core runs its own operations back to back, instead of every operation
    being split over the cores. The results are those of the plain loop as long as ``fn`` draws
    its random numbers from its own generators, not from torch's global one, which the threads
    share: build models seeded through it (``helpers.MLP(seed=…)``, ``BatchedMLP``) before,
    not inside, ``fn``. With ``desc``, a progress bar counts the finished items.
    """
    items = list(items)
    threads = torch.get_num_threads()
    if workers is None:
        workers = threads
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, got {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers, len(items))
    if workers <= 1:
        return [fn(item) for item in progress(items, desc=desc or "", total=len(items))]

    def one_thread(item: _T) -> _R:
        torch.set_num_threads(1)
        return fn(item)

    try:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one_thread, item) for item in items]
            for _ in progress(as_completed(futures), desc=desc or "", total=len(futures)):
                pass
            return [f.result() for f in futures]
    finally:
        torch.set_num_threads(threads)  # the workers' setting reaches the shared BLAS pool
