"""The admission check's view of the backlog: one Redis read serves every session for a
tenth of a second, and a failed read reaches the caller."""

from __future__ import annotations

import asyncio

import pytest

from mailserver.admission import BacklogGauge


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
