"""The Prometheus endpoint, served by each mailserver on MAILSCAN_METRICS_HOST:PORT.

Numbers that belong to the whole fleet (queue depth, scans and latency per plugin, breakers,
crashdumps) are read from Redis at scrape time, so any one endpoint tells the same story;
numbers that belong to this mailserver (messages by outcome, its spool, whether its verdict
subscriber is up) are its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from redis import Redis, RedisError

from mailserver.front.spoolreport import SpoolReporter
from tasks.settings import Settings
from tasks.wire.fleet import LATENCY_BUCKETS_S, is_open
from tasks.wire.keys import (
    ALARMS_KEY,
    CRASHDUMP_INDEX,
    CRASHGROUP_INDEX,
    CRASHGROUP_KEY,
    METRICS_LATENCY_KEY,
    METRICS_SCANS_KEY,
    QUEUES,
)

REGISTRY = CollectorRegistry()
MESSAGES = Counter(
    "mailscan_messages", "Messages by final outcome at this mailserver", ["action"],
    registry=REGISTRY,
)  # fmt: skip


class FleetCollector:
    """Reads the shared numbers from Redis when Prometheus scrapes."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        spool: SpoolReporter,
        subscriber_alive: Callable[[], bool],
    ) -> None:
        self.redis, self.settings, self.spool = redis, settings, spool
        self.subscriber_alive = subscriber_alive

    def collect(self) -> Iterator[Metric]:
        yield from self._spool()
        yield GaugeMetricFamily("mailscan_verdict_subscriber_up", "1 while this mailserver's "
                                "verdict subscriber is subscribed",
                                value=int(self.subscriber_alive()))  # fmt: skip
        try:
            yield from self._queues()
            yield from self._scans()
            yield from self._latency()
            yield from self._breakers()
            yield from self._crashdumps()
            yield from self._alarms()
        except RedisError:
            yield GaugeMetricFamily("mailscan_redis_up", "Redis answered this scrape", value=0)
        else:
            yield GaugeMetricFamily("mailscan_redis_up", "Redis answered this scrape", value=1)

    def _spool(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("mailscan_spool_messages", "Messages in this spool without an "
                                "outcome", value=self.spool.latest["count"])  # fmt: skip
        yield GaugeMetricFamily("mailscan_spool_oldest_age_seconds", "Age of the oldest spooled "
                                "message", value=self.spool.latest["oldest_age_s"])  # fmt: skip
        yield GaugeMetricFamily("mailscan_spool_dead_letters", "Messages in the spool's "
                                "dead-letter folder (an alarm while above 0)",
                                value=self.spool.latest.get("dead", 0))  # fmt: skip
        yield GaugeMetricFamily("mailscan_spool_corrupt_entries", "Unreadable spool entries set "
                                "aside (an alarm while above 0)",
                                value=self.spool.latest.get("corrupt", 0))  # fmt: skip

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("mailscan_queue_depth", "Jobs waiting", labels=["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], self.redis.llen(queue))
        yield depth

    def _scans(self) -> Iterator[Metric]:
        scans = CounterMetricFamily(
            "mailscan_scans",
            "Scans by pool, plugin and status",
            labels=["pool", "plugin", "status"],
        )
        for key, count in self.redis.hgetall(METRICS_SCANS_KEY).items():
            scans.add_metric(key.decode().split("|"), int(count))
        yield scans

    def _latency(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            "mailscan_scan_duration_seconds", "Scan time per plugin", labels=["plugin"]
        )
        for plugin in self._plugins():
            fields = _decoded(self.redis.hgetall(METRICS_LATENCY_KEY.format(plugin=plugin)))
            if fields:
                histogram.add_metric([plugin], _cumulative(fields), float(fields.get("sum", 0)))
        yield histogram

    def _breakers(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("mailscan_breaker_open", "1 while a plugin's breaker is open",
                                  labels=["plugin"])  # fmt: skip
        for plugin in self._plugins():
            gauge.add_metric([plugin], int(is_open(self.redis, plugin)))
        yield gauge

    def _crashdumps(self) -> Iterator[Metric]:
        by_kind: dict[str, int] = {}
        for signature in self.redis.zrange(CRASHGROUP_INDEX, 0, -1):
            group = _decoded(
                self.redis.hgetall(CRASHGROUP_KEY.format(signature=signature.decode()))
            )
            by_kind[group.get("kind", "?")] = by_kind.get(group.get("kind", "?"), 0) + int(
                group.get("count", 0)
            )
        failures = CounterMetricFamily("mailscan_failures", "Plugin failures by kind",
                                       labels=["kind"])  # fmt: skip
        for kind, count in sorted(by_kind.items()):
            failures.add_metric([kind], count)
        yield failures
        yield GaugeMetricFamily("mailscan_crashdumps_stored", "Crashdump records kept",
                                value=self.redis.zcard(CRASHDUMP_INDEX))  # fmt: skip

    def _alarms(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("mailscan_alarms", "Alarms raised by the periodic checks",
                                value=self.redis.hlen(ALARMS_KEY))  # fmt: skip

    def _plugins(self) -> list[str]:
        pools = self.settings.pools.values()
        return sorted({name for own in pools for name in (*own.plugins, *own.backup_plugins)})


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _cumulative(fields: dict[str, str]) -> list[tuple[str, float]]:
    running, buckets = 0, []
    for bound in (*map(str, LATENCY_BUCKETS_S), "+Inf"):
        running += int(fields.get(bound, 0))
        buckets.append((bound, running))
    return buckets


def serve_metrics(
    redis: Redis, settings: Settings, spool: SpoolReporter, subscriber_alive: Callable[[], bool]
) -> None:
    REGISTRY.register(FleetCollector(redis, settings, spool, subscriber_alive))
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=REGISTRY)
