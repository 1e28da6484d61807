"""The dispatcher, run by beat on the ops worker every ``MAILSCAN_ALERT_SEND_EVERY_S``: reads
the alerts raised since its cursor, passes them through each kind's rate limit, and sends
the notices that come out (and the digests of windows that ended) to every channel.

Everything it knows lives in Redis, so any ops worker can run it and a restart loses
nothing: the cursor, the windows and the notices still to send (the outbox) are written in
one transaction, before anything is sent. A send that fails stays in the outbox and is tried
again on later runs, waiting twice as long each time, then dropped with an error line. A
lock keeps two runs from sending the same notice."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from redis import Redis

from tasks.alerts import channels
from tasks.alerts.events import from_entry
from tasks.alerts.ratelimit import Notice, RateLimiter, Window
from tasks.errors import AlertNotSent
from tasks.settings import Settings
from tasks.wire.keys import (
    ALERTS_CURSOR_KEY,
    ALERTS_KEY,
    ALERTS_LOCK_KEY,
    ALERTS_OUTBOX_KEY,
    ALERTS_WINDOWS_KEY,
)

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
LONGEST_WAIT_S = 900.0
READ_BATCH = 500
# Longer than a run can take with both channels timing out on every notice it holds.
LOCK_S = 300
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


def run(client: Redis, settings: Settings, now: float | None = None) -> dict[str, int]:
    """One run; how many alerts it read and notices it sent, and how many sends failed."""
    wanted = channels.configured(settings)
    if not wanted:
        return {"read": 0, "sent": 0, "failed": 0}
    token = uuid.uuid4().hex
    if not client.set(ALERTS_LOCK_KEY, token, nx=True, ex=LOCK_S):
        return {"read": 0, "sent": 0, "failed": 0}  # another run is at it
    try:
        now = time.time() if now is None else now
        read = queue_notices(client, settings, wanted, now)
        sent, failed = send_due(client, settings, now)
        return {"read": read, "sent": sent, "failed": failed}
    finally:
        client.eval(_RELEASE, 1, ALERTS_LOCK_KEY, token)


def queue_notices(client: Redis, settings: Settings, wanted: tuple[str, ...], now: float) -> int:
    """Read on from the cursor; the notices go to the outbox, one delivery per channel."""
    cursor = (client.get(ALERTS_CURSOR_KEY) or b"0-0").decode()
    entries = client.xrange(ALERTS_KEY, min=f"({cursor}", max="+", count=READ_BATCH)
    stored = client.hgetall(ALERTS_WINDOWS_KEY)
    windows = {k.decode(): Window.from_json(json.loads(v)) for k, v in stored.items()}
    limiter = RateLimiter(settings.alert_every_s, windows)
    notices = limiter.close_windows(now)
    for entry_id, fields in entries:
        notice = limiter.admit(from_entry(entry_id, fields), now)
        if notice is not None:
            notices.append(notice)
    deliveries = {
        f"{now:.6f}:{n:04d}:{channel}": json.dumps(_delivery(channel, notice, now))
        for n, notice in enumerate(notices)
        for channel in wanted
    }
    with client.pipeline(transaction=True) as pipe:
        if entries:
            pipe.set(ALERTS_CURSOR_KEY, entries[-1][0])
        pipe.delete(ALERTS_WINDOWS_KEY)
        if limiter.windows:
            mapping = {k: json.dumps(w.to_json()) for k, w in limiter.windows.items()}
            pipe.hset(ALERTS_WINDOWS_KEY, mapping=mapping)
        if deliveries:
            pipe.hset(ALERTS_OUTBOX_KEY, mapping=deliveries)
        pipe.execute()
    return len(entries)


def _delivery(channel: str, notice: Notice, now: float) -> dict[str, Any]:
    return {"channel": channel, "notice": notice.to_json(), "attempts": 0, "next_at": now}


def send_due(client: Redis, settings: Settings, now: float) -> tuple[int, int]:
    """Send what is due, oldest first; a channel that fails waits for the next run."""
    sent, failed, down = 0, 0, set()
    for key, raw in sorted(client.hgetall(ALERTS_OUTBOX_KEY).items()):
        delivery = json.loads(raw)
        channel = delivery["channel"]
        if delivery["next_at"] > now or channel in down:
            continue
        notice = Notice.from_json(delivery["notice"])
        try:
            channels.send(channel, notice, settings)
        except AlertNotSent as err:
            down.add(channel)
            failed += 1
            _failed(client, key, delivery, str(err), now, settings.alert_send_every_s)
            continue
        client.hdel(ALERTS_OUTBOX_KEY, key)
        log.info("alert sent by %s: %s", channel, notice.subject)
        sent += 1
    return sent, failed


def _failed(
    client: Redis, key: bytes, delivery: dict[str, Any], why: str, now: float, period_s: float
) -> None:
    attempts = delivery["attempts"] + 1
    subject = delivery["notice"]["subject"]
    if attempts >= MAX_ATTEMPTS:
        client.hdel(ALERTS_OUTBOX_KEY, key)
        log.error("alert dropped after %d attempts by %s: %s (%s)",
                  attempts, delivery["channel"], subject, why)  # fmt: skip
        return
    wait_s = retry_wait_s(attempts, period_s)
    delivery.update(attempts=attempts, next_at=now + wait_s)
    client.hset(ALERTS_OUTBOX_KEY, key, json.dumps(delivery))
    log.warning("alert not sent by %s (attempt %d, again in %.0f s): %s (%s)",
                delivery["channel"], attempts, wait_s, subject, why)  # fmt: skip


def retry_wait_s(attempts: int, period_s: float) -> float:
    """Twice as long after each failure, from one dispatcher period, up to 15 minutes."""
    return min(period_s * 2 ** (attempts - 1), LONGEST_WAIT_S)
