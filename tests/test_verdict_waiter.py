"""The front's verdict subscriber ends when told to, even when the Redis client swallows a
cancellation (it does, under uvloop, when cancelled while it connects)."""

from __future__ import annotations

import asyncio
import contextlib

from mailserver.verdicts import VerdictWaiter


async def _deaf_to_the_first_cancel(ended: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)  # the cancellation lost inside the client
    try:
        await asyncio.sleep(3600)  # and on to wait for messages, as the subscriber does
    finally:
        ended.set()


def test_close_ends_a_subscriber_that_swallowed_a_cancellation():
    async def run() -> bool:
        waiter = VerdictWaiter("redis://127.0.0.1:1/0", lambda raw: {})  # never connected
        ended = asyncio.Event()
        waiter._reader = asyncio.create_task(_deaf_to_the_first_cancel(ended))
        await asyncio.sleep(0)
        closing = asyncio.create_task(waiter.close())
        # Not wait_for: its own cancellation at the timeout would end the subscriber for us.
        done, _ = await asyncio.wait({closing}, timeout=5)
        for task in (closing, waiter._reader):
            task.cancel()  # only if the test fails: let asyncio.run end
        return closing in done and ended.is_set()

    assert asyncio.run(run())
