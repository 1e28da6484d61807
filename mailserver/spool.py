"""The durable spool: a message is on disk before anyone is told 250.

One file per message: a JSON line with the envelope, then the raw bytes. It is written under
``tmp/``, fsynced, renamed into ``queue/`` and the folder fsynced, so after a crash an entry
is either whole or absent. Only the mailserver writes and removes entries.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Envelope:
    """Who sent what to whom, as the SMTP session saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer_ip: str = ""
    helo: str = ""
    received_at: float = 0.0


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    envelope: Envelope
    content: bytes


def new_id() -> str:
    """Time-ordered and unique: milliseconds then randomness, all in [0-9a-f]."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


class Spool:
    """Commit, list, read and finish spool entries under one folder."""

    def __init__(self, root: Path) -> None:
        self.tmp = root / "tmp"
        self.queue = root / "queue"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.queue.mkdir(parents=True, exist_ok=True)

    def commit(self, envelope: Envelope, content: bytes, entry_id: str = "") -> SpoolEntry:
        """Write the entry durably; ``entry_id`` is one made by ``new_id`` beforehand, by a
        caller that must claim the entry before it can be seen in ``queue/``."""
        entry = SpoolEntry(entry_id or new_id(), envelope, content)
        header = json.dumps({**asdict(envelope), "rcpt_tos": list(envelope.rcpt_tos)})
        staging = self.tmp / entry.id
        with open(staging, "wb") as handle:
            handle.write(header.encode() + b"\n")
            handle.write(content)  # past the buffer's size, written as it is: no copy
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, self.queue / entry.id)
        fsync_dir(self.queue)
        return entry

    def pending(self) -> list[str]:
        """Ids of entries without a final outcome, oldest first."""
        return sorted(p.name for p in self.queue.iterdir() if _is_id(p.name))

    def load(self, entry_id: str) -> SpoolEntry:
        if not _is_id(entry_id):
            raise ValueError(f"not a spool id: {entry_id!r}")
        raw = (self.queue / entry_id).read_bytes()
        header, _, content = raw.partition(b"\n")
        fields = json.loads(header)
        fields["rcpt_tos"] = tuple(fields["rcpt_tos"])
        return SpoolEntry(entry_id, Envelope(**fields), content)

    def finish(self, entry_id: str) -> None:
        """The message has its final outcome (delivered, quarantined, refused): forget it."""
        (self.queue / entry_id).unlink(missing_ok=True)
        fsync_dir(self.queue)

    @staticmethod
    def age_s(entry_id: str) -> float:
        """How long ago the entry was spooled, read from its id (no disk access)."""
        return time.time() - int(entry_id[:12], 16) / 1000


def _is_id(name: str) -> bool:
    return len(name) == 24 and all(c in "0123456789abcdef" for c in name)


def fsync_dir(folder: Path) -> None:
    """Make a rename or removal in ``folder`` durable (POSIX asks for the folder's fsync)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
