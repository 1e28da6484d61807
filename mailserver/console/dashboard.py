"""What the dashboard shows: pools and workers, circuit breakers, messages per minute and the
latest outcomes. Everything that blocks runs off the event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from kombu.exceptions import OperationalError

from mailserver.cli.status import collect
from mailserver.console import charts
from mailserver.front import outcomes
from tasks.errors import MailscanError
from tasks.settings import Settings
from tasks.wire.fleet import is_open
from tasks.wire.keys import ALARMS_KEY, POOLS

STATUS_FRESH_S = 5.0
# Celery's inspect waits one second for every worker's answer; past this the page shows the
# last answer it had (or none) instead of keeping the administrator waiting.
STATUS_TIMEOUT_S = 4.0
_FAILURES = (MailscanError, redis.RedisError, OperationalError, OSError, TimeoutError)


class PoolStatus:
    """``mailserver.cli.status.collect`` behind a short cache: at most one inspect call at a
    time, however many pages and event streams ask."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._running: asyncio.Future[dict[str, Any]] | None = None

    async def get(self) -> dict[str, Any]:
        if self._value is not None and time.monotonic() - self._at < STATUS_FRESH_S:
            return self._value
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(collect, self.settings))
        try:
            value = await asyncio.wait_for(asyncio.shield(self._running), STATUS_TIMEOUT_S)
        except _FAILURES as err:
            return self._value or {"error": f"no status: {err or 'workers did not answer'}"}
        self._value, self._at = value, time.monotonic()
        return value


def breakers(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    return [
        {"pool": pool, "plugin": name, "open": is_open(client, name)}
        for pool in POOLS
        for name in settings.pools[pool].plugins
    ]


def alarms(client: redis.Redis) -> list[str]:
    """What beat's checks found an administrator must look at (a stuck spool, dead letters,
    a front that stopped reporting), as beat last wrote it."""
    return sorted(value.decode(errors="replace") for value in client.hvals(ALARMS_KEY))


def traffic(client: redis.Redis) -> dict[str, Any]:
    minutes = outcomes.per_minute(client, 60)
    return {
        "chart": charts.minute_chart(minutes),
        "verdicts": charts.verdict_rows(minutes),
        "latest": outcomes.latest(client, 25),
    }


async def live(client: redis.Redis, settings: Settings, status: PoolStatus) -> dict[str, Any]:
    """Everything the live part of the dashboard needs, in one go."""
    pools = await status.get()
    found = await asyncio.to_thread(traffic, client)
    found["breakers"] = await asyncio.to_thread(breakers, client, settings)
    found["alarms"] = await asyncio.to_thread(alarms, client)
    found["status"] = pools
    return found
