"""An alert as every process raises it: one small record appended to a capped Redis stream.

``raise_alert`` never raises: an alert is never a reason for mail to fail. Only the facts
named in ``FACTS`` are kept, each cut short, so no message body or subject reaches an alert
whatever a caller passes: ids, names of viruses and parts, the envelope, pools and plugins."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline

from tasks.wire.keys import ALERTS_KEY

log = logging.getLogger(__name__)
KINDS = (
    "virus", "banned", "breaker-opened", "breaker-closed", "crash-group", "spool-alarm",
    "dead-letter",
)  # fmt: skip
FACTS = (
    "id", "virus", "part", "rule", "action", "sender", "recipients", "pool", "plugin",
    "failures", "exception", "signature", "crashdump", "reason",
)  # fmt: skip
# The stream is what the console lists and what the dispatcher reads; a few days of
# ordinary events, and a flood cannot grow it.
KEEP = 1000
FACT_MAX_CHARS = 200
RECIPIENTS_MAX = 10


@dataclass(frozen=True)
class Alert:
    """One event: its ``kind`` (one of KINDS), a line saying what happened, when (Unix
    time), its facts, and its id in the stream (empty before it is stored)."""

    kind: str
    summary: str
    at: float
    facts: dict[str, Any]
    id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "at": self.at, "facts": self.facts}


def raise_alert(client: Redis, kind: str, summary: str, **facts: Any) -> None:
    """Append an alert to the stream; a failure is logged, never raised."""
    try:
        append(client, kind, summary, **facts)
    except Exception as err:  # a broken alert must not break what raised it
        log.warning("alert %s not recorded: %s (%s)", kind, summary, err)


def append(target: Redis | Pipeline, kind: str, summary: str, **facts: Any) -> None:
    """Append on a client, or queue on a pipeline (the front writes its alerts with its
    other records); raises what Redis raises."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}")
    record = {
        "kind": kind,
        "summary": summary[:FACT_MAX_CHARS],
        "at": repr(time.time()),
        "facts": json.dumps(kept_facts(facts)),
    }
    target.xadd(ALERTS_KEY, record, maxlen=KEEP, approximate=True)


def kept_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The allowed facts, each cut short: never more than the envelope of a message."""
    kept: dict[str, Any] = {}
    for name in FACTS:
        value = facts.get(name)
        if value is None or value == "":
            continue
        if name == "recipients":
            kept[name] = [str(r)[:FACT_MAX_CHARS] for r in list(value)[:RECIPIENTS_MAX]]
        elif isinstance(value, int | float):
            kept[name] = value
        else:
            kept[name] = str(value)[:FACT_MAX_CHARS]
    return kept


def from_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Alert:
    """An alert as read back from the stream (XRANGE)."""
    text = {k.decode(): v.decode() for k, v in fields.items()}
    ident = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    facts = json.loads(text.get("facts") or "{}")
    return Alert(text.get("kind", ""), text.get("summary", ""), float(text.get("at", 0)),
                 facts, ident)  # fmt: skip


def latest(client: Redis, count: int = 50) -> list[Alert]:
    """The newest alerts first (the console)."""
    return [from_entry(i, f) for i, f in client.xrevrange(ALERTS_KEY, count=count)]
