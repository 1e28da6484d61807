"""A circuit breaker per plugin, shared by every worker through Redis.

After ``breaker_failures`` connection failures within ``breaker_window_s`` the breaker opens
for ``breaker_cooldown_s``: workers skip the plugin (the failure policy applies) instead of
each waiting for its own timeout. One worker at a time probes the backend while it is open
and closes the breaker as soon as the backend answers; when the cooldown ends, the next
scan tries for real.

An opening is announced once as an alert (tasks/alerts/), and so is the closing that follows
it, whoever closes it: the probe here, or a health probe after the cooldown ran out.
"""

from __future__ import annotations

import logging
import math
import threading

from redis import Redis

from tasks.alerts.events import raise_alert
from tasks.errors import BackendProtocol, BackendUnavailable, MailscanError
from tasks.guards.base import Guard, JobContext, Reads, ScanContext
from tasks.plugins.base import Verdict
from tasks.wire.fleet import is_open
from tasks.wire.keys import (
    BREAKER_ALERTED_KEY,
    BREAKER_FAILURES_KEY,
    BREAKER_OPEN_KEY,
    BREAKER_PROBE_KEY,
)

log = logging.getLogger(__name__)
PROBE_EVERY_S = 2


class BreakerGuard(Guard):
    def plan_reads(self, job: JobContext, reads: Reads) -> None:
        for plugin in job.plugins:
            reads.add(
                f"breaker:{plugin.name}", "exists", BREAKER_OPEN_KEY.format(plugin=plugin.name)
            )

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        name, redis = scan.plugin.name, scan.job.redis
        if not scan.job.read(f"breaker:{name}", lambda: is_open(redis, name)):
            return None
        if redis.set(BREAKER_PROBE_KEY.format(plugin=name), 1, nx=True, ex=PROBE_EVERY_S):
            # Probe beside the scan, not in its way: a frozen backend would hold this message
            # for a whole timeout otherwise.
            threading.Thread(target=_probe, args=(scan,), daemon=True).start()
        return Verdict(engine=name, status="error", detail="circuit breaker open: backend down")

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        if not isinstance(error, BackendUnavailable | BackendProtocol):
            return
        settings, redis, name = scan.job.settings, scan.job.redis, scan.plugin.name
        failures_key = BREAKER_FAILURES_KEY.format(plugin=name)
        with redis.pipeline(transaction=False) as pipe:
            pipe.incr(failures_key).pexpire(failures_key, _ms(settings.breaker_window_s), nx=True)
            failures = pipe.execute()[0]
        if failures < settings.breaker_failures:
            return
        cooldown_ms = _ms(settings.breaker_cooldown_s)
        if redis.set(BREAKER_OPEN_KEY.format(plugin=name), 1, nx=True, px=cooldown_ms):
            log.error("breaker for %s opened after %d failures", name, failures)
            _announce_opening(redis, name, scan.job.pool, failures)


def _announce_opening(redis: Redis, name: str, pool: str, failures: int) -> None:
    # Once until it is closed: an open key that expired and opened again is one outage.
    if redis.set(BREAKER_ALERTED_KEY.format(plugin=name), 1, nx=True):
        summary = f"breaker for {name} opened after {failures} failures: its backend is down"
        raise_alert(redis, "breaker-opened", summary, plugin=name, pool=pool, failures=failures)


def _ms(seconds: float) -> int:
    # The settings allow fractions of a second. In whole seconds 0.5 s is an expiry of 0,
    # which Redis refuses (the cooldown) or takes as "delete now" (the failure count: the
    # breaker would never open).
    return max(1, math.ceil(seconds * 1000))


def _probe(scan: ScanContext) -> None:
    try:
        scan.plugin.health()
    except MailscanError:
        return
    close(scan.job.redis, scan.plugin.name)


def close(redis: Redis, plugin: str) -> None:
    """Close the breaker of ``plugin`` (also used by the health probes); the first to close
    an announced opening says so."""
    keys = (BREAKER_OPEN_KEY, BREAKER_FAILURES_KEY)
    with redis.pipeline(transaction=False) as pipe:
        pipe.delete(*(key.format(plugin=plugin) for key in keys))
        pipe.delete(BREAKER_ALERTED_KEY.format(plugin=plugin))
        announced = pipe.execute()[1]
    if announced:
        log.warning("breaker for %s closed: the backend answers again", plugin)
        summary = f"breaker for {plugin} closed: its backend answers again"
        raise_alert(redis, "breaker-closed", summary, plugin=plugin)
