"""Progress bars for loops longer than a few seconds (tqdm.auto: a widget in notebooks).

Introduced in the chapter "Implicit bias of gradient descent".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar that disappears when done (set ``BOOK_PROGRESS=0`` to hide)."""
    disable = os.environ.get("BOOK_PROGRESS", "1") == "0"
    return iter(tqdm(iterable, desc=desc, total=total, leave=False, disable=disable))
