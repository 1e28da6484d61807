"""The admission check's view of the backlog: one Redis read serves every session for a
tenth of a second, a failed read reaches the caller, and only scan jobs give it an age."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from mailserver.admission import BacklogGauge, oldest_scan_wait_s
from tasks.jobids import job_ids, parse_job_id


class CountingRead:
    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = 0, fail

    def __call__(self) -> tuple[int, float]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("Redis is away")
        return self.calls, 0.5


def test_sessions_at_once_share_one_read_and_a_stale_reading_is_read_again():
    read = CountingRead()

    async def run() -> tuple[list, tuple]:
        gauge = BacklogGauge(read, max_age_s=0.05)
        together = await asyncio.gather(*(gauge.current() for _ in range(50)))
        await asyncio.sleep(0.1)
        return together, await gauge.current()

    together, later = asyncio.run(run())
    assert set(together) == {(1, 0.5)}
    assert later == (2, 0.5)
    assert read.calls == 2


def test_a_failed_read_is_raised_and_the_next_call_tries_again():
    read = CountingRead(fail=True)

    async def run() -> None:
        gauge = BacklogGauge(read)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await gauge.current()

    asyncio.run(run())
    assert read.calls == 2


def _queued(task_id: str) -> bytes:
    """A job as kombu's Redis transport keeps it on a queue (the parts the check reads)."""
    return json.dumps({"body": "", "headers": {"id": task_id, "task": "t"}}).encode()


def test_a_probe_or_foreign_job_at_the_tail_neither_ages_the_backlog_nor_hides_it():
    scan_job = job_ids(f"{time.time_ns():024x}")["av"]
    now = parse_job_id(scan_job).enqueued_at + 5.0
    probe, foreign = _queued(str(uuid.uuid4())), _queued("operator.check")
    # Newest first, as LRANGE returns a queue's tail: the last entry waits longest.
    assert oldest_scan_wait_s([probe, foreign], now) == 0.0
    assert oldest_scan_wait_s([_queued(scan_job), foreign, probe], now) == pytest.approx(5.0)
    assert oldest_scan_wait_s([b"not json", _queued(scan_job), b"[]"], now) == pytest.approx(5.0)
