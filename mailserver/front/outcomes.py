"""A record of what happened to each message, for the console: the latest outcomes in a capped
Redis list and per-minute counters by verdict. ``OutcomeLog`` gathers them and writes them in
one pipelined round trip every quarter of a second, however much mail flows (a round trip per
message would cost more than the rest of the record). Recording never fails the mail flow: a
Redis error is logged and the records of that round are dropped (the mail itself is not
touched). The alerts the front raises (a virus, a banned attachment, a dead letter, a corrupt
spool entry: tasks/alerts/) go out in the same round trip.

The same round trip removes the stored bytes of every message that has left the spool: no job
needs them any more, and without it Redis would hold each message for the blob TTL (a day by
default), in memory and in its append-only file. A removal lost to a Redis error leaves the
bytes to that TTL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections import Counter
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Any, Protocol

import redis

from mailserver.front.spool import SpoolEntry
from tasks.alerts import events as alerts
from tasks.wire.blobs import head_of
from tasks.wire.blobs import key as blob_key
from tasks.wire.keys import OUTCOMES_KEY, OUTCOMES_MINUTE_KEY

log = logging.getLogger(__name__)
KEEP_LATEST = 1000
KEEP_MINUTES_S = 2 * 3600
VERDICTS = ("clean", "spam", "virus", "banned", "failed", "tempfail")
SUBJECT_MAX = 200
FLUSH_EVERY_S = 0.25
KEEP_DONE_BLOBS = 100_000


class Outcome(Protocol):
    action: str
    reason: str


def verdict_of(action: str, reason: str) -> str:
    """One word for the chart: clean, spam, virus, banned, failed (scan or next hop) or
    tempfail."""
    if action == "tempfail":
        return "tempfail"
    if reason.startswith("virus "):
        return "virus"
    if reason.startswith("banned "):
        return "banned"
    if reason == "clean":
        return "clean"
    if reason.startswith("spam") and "failed" not in reason:
        return "spam"
    return "failed"


class OutcomeLog:
    """``add`` from any thread; ``run`` writes what was added, until cancelled, then once more."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._items: list[str] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._done_blobs: list[str] = []
        self._alerts: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, entry: SpoolEntry, outcome: Outcome) -> None:
        item, minute_key, verdict = _item(entry, outcome)
        if verdict in ("virus", "banned"):
            self.alert(verdict, *_found(entry, outcome, verdict))
        with self._lock:
            self._items.append(item)
            if len(self._items) > KEEP_LATEST:  # only the latest are kept in Redis anyway
                del self._items[:-KEEP_LATEST]
            self._counts[minute_key, verdict] += 1

    def alert(self, kind: str, summary: str, facts: dict[str, Any]) -> None:
        """An alert for the administrator (tasks/alerts/events.py), sent with the records."""
        with self._lock:
            if len(self._alerts) < KEEP_LATEST:  # Redis away: a flood is not kept in memory
                self._alerts.append((kind, summary, facts))

    def blob_done(self, blob_id: str) -> None:
        """The message has left the spool for good: its stored bytes can go."""
        with self._lock:
            self._done_blobs.append(blob_key(blob_id))
            if len(self._done_blobs) > KEEP_DONE_BLOBS:  # Redis away: the TTL will do it
                del self._done_blobs[:-KEEP_DONE_BLOBS]

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                if not self.pending():
                    continue  # an idle front: no thread woken four times a second for nothing
                try:
                    await asyncio.to_thread(self.flush)
                except Exception:  # a bug here must not stop the recording for good
                    log.exception("outcomes not recorded for the console")
        finally:
            with contextlib.suppress(Exception):
                self.flush()  # at shutdown: what the last quarter second added

    def pending(self) -> bool:
        with self._lock:
            # counts only come with items
            return bool(self._items or self._done_blobs or self._alerts)

    def flush(self) -> None:
        with self._lock:
            items, counts, blobs = self._items, self._counts, self._done_blobs
            raised = self._alerts
            self._items, self._counts, self._done_blobs, self._alerts = [], Counter(), [], []
        if items or blobs or raised:
            _write(self._client, items, counts, blobs, raised)


def _item(entry: SpoolEntry, outcome: Outcome) -> tuple[str, str, str]:
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
    return json.dumps(item), OUTCOMES_MINUTE_KEY.format(minute=int(now // 60)), verdict


def _found(entry: SpoolEntry, outcome: Outcome, verdict: str) -> tuple[str, dict[str, Any]]:
    """The alert of a virus or banned attachment: the name or part, and the envelope."""
    found = outcome.reason.split(" ", 1)[1]  # "virus NAME", "banned PART (RULE)"
    envelope = entry.envelope
    facts = {"id": entry.id, "action": outcome.action, "sender": envelope.mail_from,
             "recipients": envelope.rcpt_tos}  # fmt: skip
    if verdict == "virus":
        facts["virus"] = found
    else:
        facts["part"], _, rule = found.rpartition(" (")
        facts["rule"] = rule.removesuffix(")")
    what = "virus" if verdict == "virus" else "banned attachment"
    summary = f"{what} {found} in {entry.id} from <{envelope.mail_from}>: {outcome.action}"
    return summary, facts


def _write(
    client: redis.Redis,
    items: list[str],
    counts: Counter[tuple[str, str]],
    blobs: list[str],
    raised: list[tuple[str, str, dict[str, Any]]],
) -> None:
    try:
        with client.pipeline(transaction=False) as pipe:
            for kind, summary, facts in raised:
                alerts.append(pipe, kind, summary, **facts)
            if items:
                # LPUSH of several pushes each in turn: the newest ends up first, as one by one.
                pipe.lpush(OUTCOMES_KEY, *items).ltrim(OUTCOMES_KEY, 0, KEEP_LATEST - 1)
            for (minute_key, verdict), count in counts.items():
                pipe.hincrby(minute_key, verdict, count).expire(minute_key, KEEP_MINUTES_S)
            if blobs:
                pipe.unlink(*blobs)  # freed by Redis in the background: a blob can be 25 MB
            pipe.execute()
    except (redis.RedisError, OSError) as err:
        log.warning(
            "%d outcomes not recorded for the console, %d alerts not raised, %d stored "
            "messages left to their TTL: %s",
            len(items),
            len(raised),
            len(blobs),
            err,
        )


# The Subject field with its folded lines, read straight from the header block: the email
# package's parser builds the whole header model for this one field.
_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")
MESSAGE_ID_MAX = 255
_SUBJECT = re.compile(rb"(?im)^subject[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")


def message_id_of(content: bytes) -> str:
    found = _MESSAGE_ID.search(head_of(content))
    if not found:
        return ""
    return re.sub(rb"\s+", b"", found.group(1)).decode("utf-8", "replace")[:MESSAGE_ID_MAX]


def subject_of(content: bytes) -> str:
    found = _SUBJECT.search(head_of(content))
    if not found:
        return ""
    raw = re.sub(rb"\r?\n(?=[ \t])", b"", found.group(1)).strip()  # unfolded
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text[:SUBJECT_MAX]
    try:
        return str(make_header(decode_header(text)))[:SUBJECT_MAX]
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return text[:SUBJECT_MAX]


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
