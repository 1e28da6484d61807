"""Waiting for verdicts without polling: one shared Redis subscriber for every SMTP session.

Celery's Redis result backend stores each result under ``celery-task-meta-<id>`` and publishes
it on a channel of the same name. We subscribe to the pattern once and register a future per
job *before the job is enqueued* (``expect``): its result cannot be published before we
listen, so no read of the key is needed on the way (two Redis round trips per message
saved). After a lost connection (Redis restarted, or a failover to another primary) the
subscription is made again and every waiting key is read again, since messages published
meanwhile are gone, and a job that seems to miss its deadline gets one last read. Jobs
still without a result then are handed to ``resend`` (mailserver/front/resend.py): a pool
may have lost them with its own connection.

Without the subscriber every message would wait its whole deadline, so nothing ends it but
``close``: an unexpected failure is logged with its traceback and the subscriber starts
again after a short backoff; a payload it cannot decode fails that one job. ``alive`` says
whether it is subscribed (the metrics endpoint and the front's report show it).
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

from tasks.wire.keys import RESULT_KEY_PREFIX
from tasks.wire.verdicts import PoolVerdict

log = logging.getLogger(__name__)
RECONNECT_DELAY_S = 0.5
# A subscriber that keeps failing retries at this pace, so as not to flood the log.
RECONNECT_DELAY_MAX_S = 5.0
CANCEL_AGAIN_S = 0.1


class VerdictWaiter:
    """``expect(task_id)`` before the job is enqueued, then ``await wait(task_id, timeout_s)``
    returns the result meta of the finished job."""

    def __init__(self, client: aioredis.Redis, decode: Callable[[bytes], dict[str, Any]]) -> None:
        # From tasks/redisauth.connect_async: under Sentinel, each new subscription asks the
        # sentinels for the primary, so the one after a failover is made on the new one.
        self._redis = client
        self._decode = decode
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = False
        self._lost_once = False
        # Called on a thread with the jobs still waiting after a lost connection.
        self.resend: Callable[[list[str]], int] | None = None

    @property
    def alive(self) -> bool:
        """Whether published verdicts reach their waiters now."""
        return self._subscribed and self._reader is not None and not self._reader.done()

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
        meta = self._decoded(task_id, payload)
        if meta.get("status") in states.READY_STATES:
            future.set_result(meta)

    def _decoded(self, task_id: str, payload: bytes) -> dict[str, Any]:
        """The result meta, or a failure of the job when the payload is none: its waiter
        hears at once, instead of at its deadline, and the subscriber goes on."""
        try:
            meta = self._decode(payload)
        except Exception as err:  # whatever the serializer raises
            meta = err
        if isinstance(meta, dict):
            return meta
        log.error("verdict of job %s cannot be decoded: %r", task_id, meta)
        return {"status": states.FAILURE, "result": f"verdict cannot be decoded: {meta!r}"}

    async def _read_forever(self) -> None:
        failed_in_a_row = 0
        while True:
            try:
                await self._listen()
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                log.warning("verdict subscriber lost Redis (%s); reconnecting", err)
            except Exception:
                log.exception("verdict subscriber failed; starting it again")
            failed_in_a_row = 0 if self._subscribed else failed_in_a_row + 1
            self._subscribed, self._lost_once = False, True
            await asyncio.sleep(_backoff_s(failed_in_a_row))

    async def _listen(self) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.psubscribe(RESULT_KEY_PREFIX + "*")
            self._subscribed = True
            for task_id in list(self._futures):
                await self._check_stored(task_id)
            await self._resend_waiting()
            async for message in pubsub.listen():
                if message["type"] == "pmessage":
                    # A channel name is anyone's bytes: one that is no job's id matches none.
                    channel = message["channel"].decode(errors="replace")
                    self._resolve(channel.removeprefix(RESULT_KEY_PREFIX), message["data"])

    async def _resend_waiting(self) -> None:
        waiting = [task_id for task_id, future in self._futures.items() if not future.done()]
        if self._lost_once and waiting and self.resend is not None:
            await asyncio.to_thread(self.resend, waiting)


def _backoff_s(failed_in_a_row: int) -> float:
    """Soon after a subscription ends; less and less often while subscribing fails."""
    return min(RECONNECT_DELAY_S * 2 ** max(0, failed_in_a_row - 1), RECONNECT_DELAY_MAX_S)


def verdict_of(task_id: str, result: Any) -> PoolVerdict | None:
    """The job's stored result, decoded once here: the rest of the front reads a
    PoolVerdict. One that is no verdict counts as none (the failure policy decides)."""
    try:
        return PoolVerdict.from_record(result)
    except ValueError as err:
        log.error("scan job %s stored no verdict: %s", task_id, err)
        return None
