"""A record of what happened to each message, for the console: the latest outcomes in a capped
Redis list and per-minute counters by verdict. Recording is one pipelined round trip and never
fails the mail flow: a Redis error is logged and the message goes on."""

from __future__ import annotations

import json
import logging
import time
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any, Protocol

import redis

from mailserver.spool import SpoolEntry
from tasks.constants import OUTCOMES_KEY, OUTCOMES_MINUTE_KEY

log = logging.getLogger(__name__)
KEEP_LATEST = 1000
KEEP_MINUTES_S = 2 * 3600
VERDICTS = ("clean", "spam", "virus", "failed", "tempfail")
SUBJECT_MAX = 200


class Outcome(Protocol):
    action: str
    reason: str


def verdict_of(action: str, reason: str) -> str:
    """One word for the chart: clean, spam, virus, failed (scan or next hop) or tempfail."""
    if action == "tempfail":
        return "tempfail"
    if reason.startswith("virus "):
        return "virus"
    if reason == "clean":
        return "clean"
    if reason.startswith("spam") and "failed" not in reason:
        return "spam"
    return "failed"


def record(client: redis.Redis, entry: SpoolEntry, outcome: Outcome) -> None:
    now = time.time()
    verdict = verdict_of(outcome.action, outcome.reason)
    item = {
        "at": now,
        "id": entry.id,
        "action": outcome.action,
        "reason": outcome.reason,
        "verdict": verdict,
        "from": entry.envelope.mail_from,
        "to": list(entry.envelope.rcpt_tos),
        "subject": subject_of(entry.content),
    }
    minute = OUTCOMES_MINUTE_KEY.format(minute=int(now // 60))
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(OUTCOMES_KEY, json.dumps(item)).ltrim(OUTCOMES_KEY, 0, KEEP_LATEST - 1)
            pipe.hincrby(minute, verdict, 1).expire(minute, KEEP_MINUTES_S)
            pipe.execute()
    except (redis.RedisError, OSError) as err:
        log.warning("outcome of %s not recorded for the console: %s", entry.id, err)


def subject_of(content: bytes) -> str:
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    raw = BytesHeaderParser().parsebytes(head).get("Subject", "")
    try:
        return str(make_header(decode_header(str(raw))))[:SUBJECT_MAX]
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return str(raw)[:SUBJECT_MAX]


def latest(client: redis.Redis, count: int = 50) -> list[dict[str, Any]]:
    return [json.loads(item) for item in client.lrange(OUTCOMES_KEY, 0, count - 1)]


def per_minute(client: redis.Redis, minutes: int = 60) -> list[tuple[int, dict[str, int]]]:
    """(minute, counts by verdict) for the last ``minutes`` minutes, oldest first."""
    now_minute = int(time.time() // 60)
    span = range(now_minute - minutes + 1, now_minute + 1)
    with client.pipeline(transaction=False) as pipe:
        for minute in span:
            pipe.hgetall(OUTCOMES_MINUTE_KEY.format(minute=minute))
        found = pipe.execute()
    return [
        (minute, {k.decode(): int(v) for k, v in counts.items()})
        for minute, counts in zip(span, found, strict=True)
    ]
