"""What a failed delivery leaves beside its spool entry, so the next attempt needs no rescan:
the decision and the verdicts it came from, the recipients still waiting, those done, and
when to try again. A small JSON file under ``retry/``, written only when a delivery fails
(never on the way of a clean message), removed with the entry."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mailserver.front.policy import Decision
from mailserver.front.spool import fsync_dir
from tasks.wire.verdicts import ByPool, from_records, to_records

log = logging.getLogger(__name__)
RETRY = "retry"
# The waits double from MAILSCAN_DELIVERY_RETRY_S up to this: an hour, as MTAs do, so a
# next hop back after a long outage gets its mail within the hour.
LONGEST_WAIT_S = 3600.0


@dataclass(frozen=True)
class Attempts:
    """A spool entry's delivery so far. ``failed``: recipient -> why it never will be."""

    decision: Decision
    verdicts: ByPool
    waiting: tuple[str, ...]
    delivered: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""
    dsn: tuple[str, ...] = ()  # what became of each DSN sent for it

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def after(
        self, done: list[str], failed: dict[str, str], error: str, now: float, first_wait_s: float
    ) -> Attempts:
        """This record after one more attempt: ``done`` have the message, ``failed`` never
        will, the others wait for the next attempt, which is due after the backoff."""
        attempts = self.attempts + 1
        wait_s = min(first_wait_s * 2 ** (attempts - 1), max(first_wait_s, LONGEST_WAIT_S))
        gone = set(done) | set(failed)
        return replace(
            self,
            waiting=tuple(r for r in self.waiting if r not in gone),
            delivered=(*self.delivered, *done),
            failed={**self.failed, **failed},
            attempts=attempts,
            next_at=now + wait_s,
            last_error=error,
        )

    def to_json(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["decision"] = asdict(self.decision)
        record["verdicts"] = to_records(self.verdicts)  # as the pools stored them
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Attempts:
        """ValueError (or KeyError, TypeError) for a record that is none."""
        kept = {**record, "decision": Decision.from_record(record["decision"])}
        kept["verdicts"] = from_records(record["verdicts"])
        for name in ("waiting", "delivered", "dsn"):
            kept[name] = tuple(record.get(name, ()))
        return cls(**kept)


class RetryStore:
    """``<spool>/retry/<id>.json`` per entry whose delivery failed and is to be tried again."""

    def __init__(self, spool_root: Path) -> None:
        self.folder = spool_root / RETRY
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, entry_id: str) -> Attempts | None:
        """The record, or None for an entry never delivered in vain (or whose record cannot
        be read: it is then scanned and delivered again, as after a crash)."""
        try:
            return Attempts.from_json(json.loads(self._path(entry_id).read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("message %s: its delivery record is unreadable, scanned again: %s",
                        entry_id, err)  # fmt: skip
            return None

    def put(self, entry_id: str, attempts: Attempts) -> None:
        """Durable on return: a record lost in a crash would send the message again to the
        recipients that have it."""
        path = self._path(entry_id)
        staging = path.with_suffix(".tmp")
        with open(staging, "wb") as handle:
            handle.write(json.dumps(attempts.to_json()).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, path)
        fsync_dir(self.folder)

    def remove(self, entry_id: str) -> None:
        self._path(entry_id).unlink(missing_ok=True)

    def drop_orphans(self, pending: set[str]) -> None:
        """Remove the records of entries that are gone: a stop between an entry's removal
        and its record's leaves one behind."""
        for path in self.folder.glob("*.json"):
            if path.stem not in pending:
                path.unlink(missing_ok=True)

    def _path(self, entry_id: str) -> Path:
        return self.folder / f"{entry_id}.json"
