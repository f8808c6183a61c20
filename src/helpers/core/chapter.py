"""Start a chapter: read the configuration, seed everything, set threads and the figure style.

Introduced in the chapter "Implicit bias of gradient descent"; every chapter's second code
cell is ``cfg = helpers.start_chapter("<chapter-name>")``.
"""

from __future__ import annotations

import atexit
import os
import re

from helpers.core import ledger
from helpers.core.config import BookConfig, get_config
from helpers.core.plotting import use_book_style
from helpers.core.seeding import configure_threads, seed_everything

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def start_chapter(name: str, *, quiet: bool = False, threads: int = 1) -> BookConfig:
    """Begin chapter ``name`` (lower-case words joined by ``-``) and return its configuration.

    Seeds torch, NumPy and ``random`` from ``BOOK_SEED``; sets CPU threads (``OMP_NUM_THREADS``
    when set, else ``threads``: 1 for tiny models, more for a chapter whose products are large
    enough to split); applies the book's plotting style; and opens a fresh claims-ledger file
    for the chapter, so a re-run never mixes old records with new ones.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be lower-case words joined by '-', got {name!r}")
    cfg = get_config()
    seed_everything(cfg.seed)
    threads = configure_threads(preferred=threads)
    use_book_style()
    ledger.begin_chapter(name, cfg)
    peak_file = os.environ.get("BOOK_PEAK_MEMORY_FILE", "").strip()
    if peak_file:
        atexit.register(_write_peak_memory, peak_file)
    if not quiet:
        print(f"chapter {name}: mode={cfg.mode} seed={cfg.seed} device={cfg.device_name} "
              f"threads={threads}")
    return cfg


def _write_peak_memory(path: str) -> None:
    """Write the kernel's peak GPU memory in bytes (0 without CUDA) to ``path`` at exit."""
    import torch

    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else 0
    with open(path, "w") as out:
        out.write(f"{peak}\n")
