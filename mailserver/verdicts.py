"""Waiting for verdicts without polling: one shared Redis subscriber for every SMTP session.

Celery's Redis result backend stores each result under ``celery-task-meta-<id>`` and publishes
it on a channel of the same name. We subscribe to the pattern once and register a future per
job *before the job is enqueued* (``expect``): its result cannot be published before we
listen, so no read of the key is needed on the way (two Redis round trips per message
saved). After a lost connection every waiting key is read again, since messages published
meanwhile are gone, and a job that seems to miss its deadline gets one last read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from celery import states
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tasks.constants import RESULT_KEY_PREFIX

log = logging.getLogger(__name__)
RECONNECT_DELAY_S = 0.5
CANCEL_AGAIN_S = 0.1


class VerdictWaiter:
    """``expect(task_id)`` before the job is enqueued, then ``await wait(task_id, timeout_s)``
    returns the result meta of the finished job."""

    def __init__(self, redis_url: str, decode: Callable[[bytes], dict[str, Any]]) -> None:
        self._redis = aioredis.Redis.from_url(redis_url)
        self._decode = decode
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="verdict-reader")

    async def close(self) -> None:
        reader = self._reader
        # Cancelled while it connects, redis-py's subscriber can swallow the cancellation
        # and go on to wait for messages forever (seen under uvloop): cancel until it ends.
        while reader and not reader.done():
            reader.cancel()
            await asyncio.wait({reader}, timeout=CANCEL_AGAIN_S)
        if reader and not reader.cancelled() and reader.exception():
            log.warning("verdict subscriber ended with %r", reader.exception())
        await self._redis.aclose()

    def expect(self, task_id: str) -> None:
        """Listen for the job's result from now on: call before enqueueing the job."""
        self._futures[task_id] = asyncio.get_running_loop().create_future()

    def forget(self, task_id: str) -> None:
        """Stop listening (the job was never enqueued, or its waiter gave up)."""
        self._futures.pop(task_id, None)

    async def wait(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        """The result of a job ``expect`` was called for; TimeoutError when it has no final
        state within ``timeout_s``."""
        future = self._futures[task_id]
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            await self._check_stored(task_id)  # a publish we may have missed
            if future.done():
                return future.result()
            raise
        finally:
            self.forget(task_id)

    async def _check_stored(self, task_id: str) -> None:
        stored = await self._redis.get(RESULT_KEY_PREFIX + task_id)
        if stored is not None:
            self._resolve(task_id, stored)

    def _resolve(self, task_id: str, payload: bytes) -> None:
        future = self._futures.get(task_id)
        if future is None or future.done():
            return
        meta = self._decode(payload)
        if meta.get("status") in states.READY_STATES:
            future.set_result(meta)

    async def _read_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                log.warning("verdict subscriber lost Redis (%s); reconnecting", err)
                await asyncio.sleep(RECONNECT_DELAY_S)

    async def _listen(self) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.psubscribe(RESULT_KEY_PREFIX + "*")
            for task_id in list(self._futures):
                await self._check_stored(task_id)
            async for message in pubsub.listen():
                if message["type"] == "pmessage":
                    channel = message["channel"].decode()
                    self._resolve(channel.removeprefix(RESULT_KEY_PREFIX), message["data"])
