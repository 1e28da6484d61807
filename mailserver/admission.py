"""The pools' backlog as the SMTP front's admission check sees it: read from Redis at most
once per ``max_age_s``, however many sessions ask, since at hundreds of messages a second a
round trip per message would cost more than the check is worth. A backlog grows by the
arrival rate, so a tenth of a second old is as good as new for a limit counted in seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Backlog = tuple[int, float]  # jobs waiting in the busier queue, age of its oldest job (s)
MAX_AGE_S = 0.1


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
