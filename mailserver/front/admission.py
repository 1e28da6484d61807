"""The pools' backlog as the SMTP front's admission check sees it: read from Redis at most
once per ``max_age_s``, however many sessions ask, since at hundreds of messages a second a
round trip per message would cost more than the check is worth. A backlog grows by the
arrival rate, so a tenth of a second old is as good as new for a limit counted in seconds.

The age is that of the oldest waiting *scan* job, read from its id (tasks/wire/jobids.py). Beat's
health probes and any job sent through Celery wait in the same queues with ids that tell no
time; they are skipped, and a few entries from the tail are read so that one of them waiting
there does not hide the scan jobs behind it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable

from redis import Redis

from tasks.wire.jobids import parse_job_id
from tasks.wire.keys import POOLS

Backlog = tuple[int, float]  # jobs waiting in the busier queue, age of its oldest scan job (s)
MAX_AGE_S = 0.1
# Entries read from each queue's tail. Beat sends one probe per pool per period, so between
# two probes scan jobs arrive unless mail barely flows, and then the depth is small anyway.
TAIL_ENTRIES = 8


def read_backlog(redis: Redis) -> Backlog:
    """Jobs waiting in the busier pool's queue, and how long its oldest scan job has waited
    (one Redis round trip)."""
    with redis.pipeline(transaction=False) as pipe:
        for pool in POOLS:
            pipe.llen(pool).lrange(pool, -TAIL_ENTRIES, -1)  # kombu pushes left, workers pop right
        answers = pipe.execute()
    depths, tails = answers[0::2], answers[1::2]
    now = time.time()
    return max(depths), max(oldest_scan_wait_s(tail, now) for tail in tails)


def oldest_scan_wait_s(envelopes: Iterable[bytes], now: float) -> float:
    """How long the oldest scan job among these queued jobs has waited; 0 when none is a
    scan job."""
    stamps = [at for at in map(_enqueued_at, envelopes) if at is not None]
    return max(0.0, now - min(stamps)) if stamps else 0.0


def _enqueued_at(envelope: bytes) -> float | None:
    try:
        task_id = json.loads(envelope)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None  # not a Celery job as kombu stores one: nothing to say of its age
    job = parse_job_id(task_id) if isinstance(task_id, str) else None
    return job.enqueued_at if job else None


class BacklogGauge:
    def __init__(self, read: Callable[[], Backlog], max_age_s: float = MAX_AGE_S) -> None:
        self._read, self._max_age_s = read, max_age_s
        self._value: Backlog = (0, 0.0)
        self._read_at = -float("inf")
        self._reading: asyncio.Task[Backlog] | None = None

    async def current(self) -> Backlog:
        """The latest reading; Redis errors reach the caller."""
        if time.monotonic() - self._read_at <= self._max_age_s:
            return self._value
        if self._reading is None:
            self._reading = asyncio.create_task(self._refresh())
        reading = self._reading
        try:
            return await asyncio.shield(reading)
        finally:
            if reading.done():
                self._reading = None

    async def _refresh(self) -> Backlog:
        value = await asyncio.to_thread(self._read)
        self._value, self._read_at = value, time.monotonic()
        return value
