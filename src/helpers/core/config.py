"""The book's run-time settings, read from the environment in exactly one place.

* ``BOOK_MODE``: ``quick`` (default; every notebook well under 60 s on 2 CPU cores) or
  ``full`` (paper-scale sizes, meant for a GPU).
* ``BOOK_SEED``: an integer (default 0) from which every random seed is derived.
* ``BOOK_DEVICE``: a torch device string (default ``cuda`` when available, else ``cpu``).

Bad values raise ``ValueError`` naming the variable. This file imports nothing from the
package and only imports torch when a device is asked for, so ``python src/helpers/config.py``
checks the environment before anything is installed (the Makefile does this first).

Introduced in the chapter "Implicit bias of gradient descent"; used by every chapter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

MODES = ("quick", "full")
T = TypeVar("T")


@dataclass(frozen=True)
class BookConfig:
    """Settings of one run of the book.

    Attributes:
        mode: ``"quick"`` or ``"full"``.
        seed: the base random seed (``BOOK_SEED``).
        device_name: the torch device string (``BOOK_DEVICE``), validated.
    """

    mode: str
    seed: int
    device_name: str

    @property
    def device(self) -> Any:
        """The configured ``torch.device``."""
        import torch

        return torch.device(self.device_name)

    @property
    def quick(self) -> bool:
        """True in quick mode."""
        return self.mode == "quick"

    def pick(self, *, quick: T, full: T) -> T:
        """``quick`` or ``full`` according to the mode: ``cfg.pick(quick=200, full=5000)``."""
        return quick if self.mode == "quick" else full


def read_mode(environ: Mapping[str, str] | None = None) -> str:
    """``BOOK_MODE`` from ``environ`` (default ``os.environ``), validated; default ``quick``."""
    env = os.environ if environ is None else environ
    mode = env.get("BOOK_MODE", "quick").strip().lower() or "quick"
    if mode not in MODES:
        raise ValueError(f"BOOK_MODE must be one of {MODES}, got {env.get('BOOK_MODE')!r}")
    return mode


def read_seed(environ: Mapping[str, str] | None = None) -> int:
    """``BOOK_SEED`` from ``environ``, validated as a non-negative integer; default 0."""
    env = os.environ if environ is None else environ
    raw = env.get("BOOK_SEED", "0").strip() or "0"
    try:
        seed = int(raw)
    except ValueError:
        raise ValueError(f"BOOK_SEED must be an integer, got {raw!r}") from None
    if seed < 0 or seed >= 2**32:
        raise ValueError(f"BOOK_SEED must lie in [0, 2**32), got {seed}")
    return seed


def read_device(environ: Mapping[str, str] | None = None) -> str:
    """``BOOK_DEVICE`` from ``environ``: default ``cuda`` if available else ``cpu``.

    Raises:
        ValueError: naming ``BOOK_DEVICE`` when the string is not a torch device or the device
            is not available on this machine.
    """
    import torch

    env = os.environ if environ is None else environ
    raw = env.get("BOOK_DEVICE", "").strip()
    if not raw:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(raw)
    except RuntimeError as err:
        raise ValueError(f"BOOK_DEVICE is not a torch device: {raw!r} ({err})") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }.get(device.type, False)
    if device.type == "cuda" and available and device.index is not None:
        available = device.index < torch.cuda.device_count()
    if not available:
        raise ValueError(f"BOOK_DEVICE={raw!r} is not available on this machine")
    return str(device)


def get_config(environ: Mapping[str, str] | None = None) -> BookConfig:
    """Read and validate ``BOOK_MODE``, ``BOOK_SEED`` and ``BOOK_DEVICE``."""
    return BookConfig(read_mode(environ), read_seed(environ), read_device(environ))


def check_environment(environ: Mapping[str, str] | None = None) -> str:
    """Validate the variables that need no torch (mode, seed); also the device if torch imports.

    Returns a one-line summary; raises ``ValueError`` naming the bad variable.
    """
    mode, seed = read_mode(environ), read_seed(environ)
    try:
        device = read_device(environ)
    except ImportError:
        device = "(not checked: torch not installed yet)"
    return f"BOOK_MODE={mode} BOOK_SEED={seed} BOOK_DEVICE={device}"


if __name__ == "__main__":
    try:
        print(check_environment())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
