"""The fleet's state as the pools leave it in Redis and the front, the console and the
command line read it: whether a plugin's circuit breaker is open, each pool worker's latest
health probe, the records of a JSON hash, and the latency buckets of the scan metrics."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from tasks.wire.keys import BREAKER_OPEN_KEY, HEALTH_KEY

# Seconds. From a clamd cache hit (milliseconds) to a spamd scan of a large message.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def is_open(redis: Redis, plugin: str) -> bool:
    """Whether ``plugin``'s breaker is open: every pool worker skips it until it closes."""
    return bool(redis.exists(BREAKER_OPEN_KEY.format(plugin=plugin)))


def probes(client: Redis) -> dict[str, dict[str, Any]]:
    """The latest health probe of each pool worker, by worker name."""
    return json_records(client, HEALTH_KEY)


def json_records(client: Redis, key: str) -> dict[str, dict[str, Any]]:
    """The JSON records of a hash, by field; a record that does not parse is left out."""
    records = {}
    for name, raw in sorted(client.hgetall(key).items()):
        try:
            records[name.decode()] = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            continue
    return records
