"""The front's durable queue of outcomes on their way to the database: an append-only file.

``append`` writes one JSON line to ``current.jsonl`` (the page cache, no fsync: a process
that dies keeps what it wrote; the reply waits for no disk). ``seal`` renames that file
to ``sealed-<time>.jsonl`` so appends go on in a new one while the sealed ones are written
to the database; ``done`` removes a sealed file once the database has all of it. A crash
between the database's commit and ``done`` sends the file again: the records' ids keep
each outcome once."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from mailserver.messagelog.record import MessageRecord

log = logging.getLogger(__name__)
CURRENT = "current.jsonl"
SEALED_GLOB = "sealed-*.jsonl"


class Journal:
    """Safe to append to from any thread of one process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._written = False

    def append(self, record: MessageRecord) -> None:
        line = (json.dumps(record.to_json()) + "\n").encode()
        with self._lock:
            if self._fd is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._fd = os.open(self.folder / CURRENT, flags, 0o600)
            os.write(self._fd, line)
            self._written = True

    def pending(self) -> bool:
        """Anything appended since the last seal, or sealed and not done."""
        with self._lock:
            if self._written:
                return True
        return any(self.folder.glob(SEALED_GLOB))

    def seal(self) -> list[Path]:
        """Every sealed file, oldest first, the current one sealed first if it has lines."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            current = self.folder / CURRENT
            if current.exists() and current.stat().st_size:
                os.rename(current, self.folder / f"sealed-{time.time_ns():020d}.jsonl")
            self._written = False
        return sorted(self.folder.glob(SEALED_GLOB))

    @staticmethod
    def read(path: Path) -> list[MessageRecord]:
        """The records of a sealed file; a line cut short by a crash is skipped, logged."""
        records = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                records.append(MessageRecord.from_json(json.loads(line)))
            except (ValueError, TypeError) as err:
                log.warning("message log: line %d of %s is no record, skipped: %s",
                            number, path.name, err)  # fmt: skip
        return records

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)
