"""The periodic maintenance tasks. They run on the ops worker (queue "ops"), each small:
queue snapshots, crashdump retention, the spool alarm, the backlog autoscaler, and the
alerts' dispatcher."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from beat import autoscaler
from tasks import redisauth
from tasks.alerts import dispatch
from tasks.celery import app
from tasks.settings import Settings, current_settings
from tasks.wire.keys import (
    ALARMS_KEY,
    ASSIST_STATE_KEY,
    CRASHDUMP_INDEX,
    CRASHDUMP_KEY,
    METRICS_SCANS_KEY,
    POOLS,
    QUEUES,
    SPOOL_REPORT_KEY,
    STATS_KEY,
)

log = logging.getLogger(__name__)
STATS_KEEP = 24 * 60  # a day of one-minute snapshots


def _redis(settings: Settings) -> redis.Redis:
    return redisauth.connect(settings, socket_timeout=10)


@app.task(name="beat.tasks.queue_stats")
def queue_stats() -> dict[str, Any]:
    """Snapshot depth and work done per queue, for the console's charts and for scaling."""
    settings = current_settings()
    client = _redis(settings)
    scans = {k.decode(): int(v) for k, v in client.hgetall(METRICS_SCANS_KEY).items()}
    snapshot = {"ts": time.time()}
    with client.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            done = sum(n for key, n in scans.items() if key.startswith(f"{queue}|"))
            entry = {**snapshot, "depth": client.llen(queue), "scans_done": done}
            pipe.lpush(STATS_KEY.format(queue=queue), json.dumps(entry))
            pipe.ltrim(STATS_KEY.format(queue=queue), 0, STATS_KEEP - 1)
            snapshot[queue] = entry
        pipe.execute()
    return snapshot


@app.task(name="beat.tasks.crashdump_retention")
def crashdump_retention() -> int:
    """Forget crashdumps older than the age limit and beyond the count limit (oldest first).
    Groups keep their counts: the history of a failure outlives its records."""
    settings = current_settings()
    client = _redis(settings)
    cutoff = time.time() - settings.crashdump_max_age_days * 86400
    old = client.zrangebyscore(CRASHDUMP_INDEX, "-inf", cutoff)
    surplus = client.zcard(CRASHDUMP_INDEX) - len(old) - settings.crashdump_max_count
    if surplus > 0:
        old += client.zrange(CRASHDUMP_INDEX, len(old), len(old) + surplus - 1)
    if old:
        ids = [i.decode() for i in old]
        client.delete(*[CRASHDUMP_KEY.format(id=i) for i in ids])
        client.zrem(CRASHDUMP_INDEX, *ids)
        client.hdel(ASSIST_STATE_KEY, *ids)  # their decisions go with them
        log.info("crashdump retention removed %d records", len(ids))
    return len(old)


@app.task(name="beat.tasks.check_spools")
def check_spools() -> list[str]:
    """Alarm when a mailserver's spool holds a message older than the limit without an
    outcome, or when a mailserver stopped reporting at all."""
    settings = current_settings()
    client = _redis(settings)
    alarms = []
    for host, raw in client.hgetall(SPOOL_REPORT_KEY).items():
        report = json.loads(raw)
        found = [
            _spool_alarm(host.decode(), report, settings),
            _dead_letters(host.decode(), report),
        ]
        for alarm in filter(None, found):
            alarms.append(alarm)
            log.error("spool alarm: %s", alarm)
    client.delete(ALARMS_KEY)
    if alarms:
        client.hset(ALARMS_KEY, mapping={f"spool:{i}": a for i, a in enumerate(alarms)})
    return alarms


def _spool_alarm(host: str, report: dict[str, Any], settings: Settings) -> str | None:
    silent_s = time.time() - report["at"]
    if silent_s > max(5 * settings.redrive_interval_s, 300):
        return f"{host}: no spool report for {silent_s:.0f} s"
    if report["oldest_age_s"] > settings.spool_alarm_age_s:
        return (
            f"{host}: {report['count']} message(s) spooled, the oldest for "
            f"{report['oldest_age_s']:.0f} s without an outcome"
        )
    return None


def _dead_letters(host: str, report: dict[str, Any]) -> str | None:
    """A front's spool holds entries no outcome was reached for: an administrator must look."""
    dead, corrupt = report.get("dead", 0), report.get("corrupt", 0)
    if not dead and not corrupt:
        return None
    return f"{host}: {dead} dead-lettered and {corrupt} corrupt spool entries to look at"


@app.task(name="beat.tasks.send_alerts")
def send_alerts() -> dict[str, int]:
    """Send the alerts raised since the last run (tasks/alerts/dispatch.py)."""
    settings = current_settings()
    client = _redis(settings)
    try:
        return dispatch.run(client, settings)
    finally:
        client.close()


@app.task(name="beat.tasks.autoscale")
def autoscale() -> dict[str, Any]:
    """The backlog autoscaler: off unless MAILSCAN_BACKLOG_AUTOSCALER=yes."""
    settings = current_settings()
    if not settings.backlog_autoscaler:
        return {"enabled": False}
    client = _redis(settings)
    return {pool: autoscaler.step(app, client, pool, settings) for pool in POOLS}


@app.task(name="beat.tasks.message_log_retention")
def message_log_retention() -> int:
    """Forget the message log's outcomes older than ``MAILSCAN_MESSAGE_LOG_DAYS``."""
    # Here, not at the top: the scan pools import this module too, and need no database.
    from mailserver.messagelog.store import MessageStore

    settings = current_settings()
    store = MessageStore.from_settings(settings)
    try:
        gone = store.prune(time.time() - settings.message_log_days * 86400)
    finally:
        store.close()
    if gone:
        log.info("message log retention removed %d outcomes", gone)
    return gone
