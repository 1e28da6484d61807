"""What became of each crashdump: its decision state, the remembered choice per signature, and
the audit log of every decision and upload with who made it.

States: ``new`` (no entry yet), ``queued`` (send chosen, upload pending), ``sent``,
``saved`` (no endpoint: written to a file for the administrator), ``declined``,
``send failed``. The console, ``mailscan assist`` and the ops worker's upload task share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from redis import Redis

from tasks.wire.keys import ASSIST_AUDIT_KEY, ASSIST_CHOICE_KEY, ASSIST_STATE_KEY

STATES = ("new", "queued", "sent", "saved", "declined", "send failed")
CHOICES = ("ask", "always", "never")
AUDIT_KEEP = 2000


def claim(client: Redis, ids: Iterable[str], state: str, by: str, **detail: Any) -> list[str]:
    """Give ``state`` to every id still without a decision; return the ids claimed. Two
    consoles answering at once never both send the same crashdump."""
    ids = list(ids)
    entry = _entry(state, by, detail)
    with client.pipeline(transaction=False) as pipe:
        for dump_id in ids:
            pipe.hsetnx(ASSIST_STATE_KEY, dump_id, entry)
        won = pipe.execute()
    return [dump_id for dump_id, ok in zip(ids, won, strict=True) if ok]


def settle(client: Redis, ids: Iterable[str], state: str, by: str, **detail: Any) -> None:
    """Record how a decision ended (sent, saved, send failed), replacing the earlier state."""
    entry = _entry(state, by, detail)
    mapping = dict.fromkeys(ids, entry)
    if mapping:
        client.hset(ASSIST_STATE_KEY, mapping=mapping)


def states(client: Redis, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The decision of each id; ``{"state": "new"}`` for those without one."""
    found = client.hmget(ASSIST_STATE_KEY, ids) if ids else []
    return {i: json.loads(s) if s else {"state": "new"} for i, s in zip(ids, found, strict=True)}


def remembered(client: Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(ASSIST_CHOICE_KEY).items()}


def remember(client: Redis, signature: str, choice: str, by: str) -> None:
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {', '.join(CHOICES)}")
    if choice == "ask":
        client.hdel(ASSIST_CHOICE_KEY, signature)
    else:
        client.hset(ASSIST_CHOICE_KEY, signature, choice)
    audit(client, "remember", by, signature=signature, choice=choice)


def audit(client: Redis, action: str, by: str, **detail: Any) -> None:
    entry = json.dumps({"at": time.time(), "action": action, "by": by, **detail})
    with client.pipeline(transaction=False) as pipe:
        pipe.lpush(ASSIST_AUDIT_KEY, entry).ltrim(ASSIST_AUDIT_KEY, 0, AUDIT_KEEP - 1).execute()


def audit_log(client: Redis, limit: int = 200) -> list[dict[str, Any]]:
    return [json.loads(e) for e in client.lrange(ASSIST_AUDIT_KEY, 0, limit - 1)]


def _entry(state: str, by: str, detail: dict[str, Any]) -> str:
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    return json.dumps({"state": state, "by": by, "at": time.time(), **detail})
