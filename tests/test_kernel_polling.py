"""The sliced wait for kernel messages: a message whose wake-up was lost is still seen."""

import asyncio
import time
from queue import Empty

import pytest

from helpers.kernel_polling import poll_kernel_in_slices, sliced_get_msg


class LostWakeUp:
    """A channel whose blocking wait never sees a message that arrived while nobody waited:
    only a non-blocking check (timeout 0) finds it, like an edge-triggered poll that missed
    its edge."""

    def __init__(self, arrives_after: float):
        self.arrives = time.monotonic() + arrives_after
        self.blocking_waits = 0

    async def get_msg(self, timeout=None):
        if timeout == 0:
            if time.monotonic() >= self.arrives:
                return {"msg": "reply"}
            raise Empty
        self.blocking_waits += 1
        await asyncio.sleep(timeout if timeout is not None else 3600)
        raise Empty


def test_a_message_whose_wake_up_was_lost_is_seen_one_slice_late():
    channel = LostWakeUp(arrives_after=0.05)
    get_msg = sliced_get_msg(LostWakeUp.get_msg, slice_s=0.02)
    start = time.monotonic()
    assert asyncio.run(get_msg(channel, timeout=5)) == {"msg": "reply"}
    assert time.monotonic() - start < 1.0
    assert channel.blocking_waits >= 2


def test_the_timeout_still_raises_empty_on_time():
    channel = LostWakeUp(arrives_after=3600)
    get_msg = sliced_get_msg(LostWakeUp.get_msg, slice_s=0.02)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get_msg(channel, timeout=0.1))
    assert 0.09 < time.monotonic() - start < 1.0
    with pytest.raises(Empty):  # timeout 0 is one non-blocking check
        asyncio.run(get_msg(channel, timeout=0))
    assert channel.blocking_waits >= 1


def test_the_patch_is_installed_once_and_checks_its_argument():
    from jupyter_client.channels import AsyncZMQSocketChannel

    poll_kernel_in_slices()
    patched = AsyncZMQSocketChannel.get_msg
    poll_kernel_in_slices()
    assert AsyncZMQSocketChannel.get_msg is patched and patched.sliced
    with pytest.raises(ValueError, match="slice_s"):
        poll_kernel_in_slices(0)
    with pytest.raises(TypeError, match="slice_s"):
        poll_kernel_in_slices("1")
