"""Kernel replies that are never missed: the notebook runners wait for messages in short slices.

``jupyter_client``'s asynchronous channel waits for a kernel message with one ``zmq.asyncio``
poll lasting the whole timeout (for a cell, the cell's timeout). That poll is woken by an
edge-triggered file descriptor, and under load the wake-up can be lost although the message is
already queued (reported upstream as nbclient#312 and jupyter_client#436): the kernel sits idle
having answered, the client waits until the cell times out, and the run fails or stalls for
minutes. :func:`poll_kernel_in_slices` replaces that wait by a loop of a non-blocking check of
the socket (a plain ``zmq`` poll with timeout 0, which sees a queued message whatever happened to
the wake-up) and a wait of at most ``slice_s`` seconds, until the original timeout. A message is
then seen at most ``slice_s`` late, and the timeout means what it meant.

Every runner of notebooks in this project installs it: the seed sweep and the GPU check
(:mod:`helpers.seeds`), the benchmark (:mod:`helpers.bench`), the tests' notebook run
(``tests/conftest.py``) and the book build (``_ext/book_pages.py``).
"""

from __future__ import annotations

import time
from queue import Empty


def sliced_get_msg(original, slice_s: float):
    """The async ``get_msg(self, timeout=None)`` ``original``, waiting in slices of ``slice_s``."""

    async def get_msg(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return await original(self, timeout=0)  # a queued message, wake-up or not
            except Empty:
                pass
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Empty
            try:
                return await original(self, timeout=slice_s if left is None else min(slice_s, left))
            except Empty:
                continue

    get_msg.sliced = True
    return get_msg


def poll_kernel_in_slices(slice_s: float = 1.0) -> None:
    """Make every asynchronous kernel-client channel wait in slices of ``slice_s`` seconds.

    Patches ``jupyter_client.channels.AsyncZMQSocketChannel.get_msg`` once per process (a
    second call does nothing).
    """
    if isinstance(slice_s, bool) or not isinstance(slice_s, int | float):
        raise TypeError(f"slice_s must be a number of seconds, got {type(slice_s).__name__}")
    if not slice_s > 0:
        raise ValueError(f"slice_s must be positive, got {slice_s}")
    from jupyter_client.channels import AsyncZMQSocketChannel

    if getattr(AsyncZMQSocketChannel.get_msg, "sliced", False):
        return
    AsyncZMQSocketChannel.get_msg = sliced_get_msg(AsyncZMQSocketChannel.get_msg, slice_s)
