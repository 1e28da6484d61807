"""Where a spool entry ends when no outcome can be reached for it, kept for an administrator:
``dead/`` (its life ran out, or the next hop refused it for good) and ``corrupt/`` (it
cannot be read). Each entry keeps its file as it was in the spool, beside it a JSON file
that says why. Both folders raise an alarm while they hold anything (mailscan status, the
metrics, the spool alarm of beat), and each move raises an alert for the administrator."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailserver.front.spool import fsync_dir
from tasks.wire.spoolfile import QUEUE, is_entry_id

log = logging.getLogger(__name__)
DEAD, CORRUPT = "dead", "corrupt"
# (kind, summary, facts): OutcomeLog.alert, which sends it with the front's other records.
AlertSink = Callable[[str, str, dict[str, Any]], None]


def _no_alert(kind: str, summary: str, facts: dict[str, Any]) -> None:
    return None


class DeadLetters:
    """Moves spool entries out of ``queue/`` into ``dead/`` or ``corrupt/``, with a record."""

    def __init__(self, spool_root: Path, alert: AlertSink = _no_alert) -> None:
        self.alert = alert
        self.queue = spool_root / QUEUE
        self.dead, self.corrupt = spool_root / DEAD, spool_root / CORRUPT
        for folder in (self.dead, self.corrupt):
            folder.mkdir(parents=True, exist_ok=True)

    def bury(self, entry_id: str, record: dict[str, Any]) -> None:
        """Move the entry to ``dead/``; ``record`` says why (reason, envelope, verdicts,
        attempts). Its record first: an entry in ``dead/`` always says why."""
        self._move(entry_id, self.dead, {"id": entry_id, "dead_at": time.time(), **record})
        log.error("spool alarm: message %s dead-lettered in %s: %s",
                  entry_id, self.dead, record.get("reason"))  # fmt: skip
        self._alert_dead(entry_id, record)

    def set_aside(self, entry_id: str, reason: str) -> None:
        """Move an entry that cannot be read to ``corrupt/``."""
        self._move(entry_id, self.corrupt, {"id": entry_id, "at": time.time(), "reason": reason})
        log.error("spool alarm: corrupt spool entry %s moved to %s: %s",
                  entry_id, self.corrupt, reason)  # fmt: skip
        summary = f"corrupt spool entry {entry_id} set aside: {reason}"
        self.alert("spool-alarm", summary, {"id": entry_id, "reason": reason})

    def _alert_dead(self, entry_id: str, record: dict[str, Any]) -> None:
        envelope, reason = record.get("envelope") or {}, record.get("reason")
        facts = {"id": entry_id, "reason": reason, "sender": envelope.get("mail_from"),
                 "recipients": envelope.get("rcpt_tos")}  # fmt: skip
        self.alert("dead-letter", f"message {entry_id} dead-lettered: {reason}", facts)

    def counts(self) -> dict[str, int]:
        """How many entries each folder holds (what the alarm is about)."""
        return {DEAD: _entries(self.dead), CORRUPT: _entries(self.corrupt)}

    def _move(self, entry_id: str, folder: Path, record: dict[str, Any]) -> None:
        path = folder / f"{entry_id}.json"
        staging = path.with_suffix(".tmp")
        with open(staging, "wb") as handle:
            handle.write(json.dumps(record, indent=2, default=str).encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, path)
        os.rename(self.queue / entry_id, folder / entry_id)
        fsync_dir(folder)
        fsync_dir(self.queue)


def _entries(folder: Path) -> int:
    try:
        return sum(1 for path in folder.iterdir() if is_entry_id(path.name))
    except OSError:
        return 0
