"""The durable spool: a message is on disk before anyone is told 250.

One file per message: a JSON line with the envelope, then the raw bytes. It is written under
``tmp/``, fsynced, renamed into ``queue/`` and the folder fsynced, so after a crash an entry
is either whole or absent. The front writes it (``stage``) before it enqueues the scans and
makes it durable (``settle``) while they run; nothing is delivered or confirmed before.
Only the mailserver writes and removes entries; it removes them after the reply, in
batches (``finish_soon``), once the delivery is durable.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

from tasks.errors import SpoolEntryCorrupt
from tasks.wire.spoolfile import ID_FILE, QUEUE, STAGING, is_entry_id, read_entry, spool_id

log = logging.getLogger(__name__)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Envelope:
    """Who sent what to whom, as the SMTP session saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    peer_ip: str = ""
    helo: str = ""
    received_at: float = 0.0
    # The host's boot id while a sender waited for this entry's final answer (pre-queue);
    # empty for an entry answered 250 when it was committed (post-queue).
    sender_waiting_boot: str = ""
    # The client had started TLS (STARTTLS) before it sent the message.
    tls: bool = False
    # The client gave SMTPUTF8 on MAIL FROM: the next hop is told so (RFC 6531).
    smtputf8: bool = False
    # The client's name as the MTA in front verified it (XFORWARD NAME); empty: unknown.
    peer_name: str = ""


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    envelope: Envelope
    content: bytes


def boot_id() -> str:
    """This boot of the host, or "" where the system does not say: a spool entry made on the
    same boot knows every rename done since (nothing lost to a power cut)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def new_id() -> str:
    """Time-ordered and unique: milliseconds then randomness, all in [0-9a-f]."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


class Spool:
    """Commit, list, read and finish spool entries under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / STAGING
        self.queue = root / QUEUE
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.queue.mkdir(parents=True, exist_ok=True)
        self.id = _named(root)
        self._remover = _Remover(self.queue)

    def commit(self, envelope: Envelope, content: bytes, entry_id: str = "") -> SpoolEntry:
        """Write the entry durably; ``entry_id`` is one made by ``new_id`` beforehand, by a
        caller that must claim the entry before it can be seen in ``queue/``."""
        entry = self.stage(envelope, content, entry_id)
        self.settle(entry.id)
        return entry

    def stage(self, envelope: Envelope, content: bytes, entry_id: str = "") -> SpoolEntry:
        """Write the entry under ``tmp/``: whole unless this raises (a full disk fails here),
        but neither durable nor listed until ``settle``, and never to be confirmed before."""
        entry = SpoolEntry(entry_id or new_id(), envelope, content)
        with self.open_staged(envelope, entry.id) as handle:
            handle.write(content)  # past the buffer's size, written as it is: no copy
        return entry

    def open_staged(self, envelope: Envelope, entry_id: str) -> BinaryIO:
        """``stage`` for a message that arrives in pieces (staging.py): the file under
        ``tmp/`` with its envelope line, open for the message to be appended."""
        header = json.dumps({**asdict(envelope), "rcpt_tos": list(envelope.rcpt_tos)})
        handle = open(self.tmp / entry_id, "wb")  # noqa: SIM115 - the caller closes it
        try:
            handle.write(header.encode() + b"\n")
        except BaseException:
            handle.close()
            raise
        return handle

    def read_staged(self, entry_id: str) -> bytes:
        """The message of an entry this front staged, settled by now or not."""
        try:
            return read_entry(self.tmp / entry_id)[1]
        except FileNotFoundError:  # renamed meanwhile: tmp/ -> queue/ is the only way
            return read_entry(self.queue / entry_id)[1]

    def settle(self, entry_id: str) -> None:
        """Make a staged entry durable and listed: its file fsynced, renamed into ``queue/``,
        the folder fsynced. After a crash the entry is either whole in ``queue/`` or absent."""
        staging = self.tmp / entry_id
        fd = os.open(staging, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(staging, self.queue / entry_id)
        fsync_dir(self.queue)

    def discard(self, entry_id: str) -> None:
        """Remove an entry nobody was told of: staged, or settled only in part."""
        for path in (self.tmp / entry_id, self.queue / entry_id):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                log.exception("could not remove the unconfirmed spool entry %s", path)

    def clear_staging(self) -> int:
        """Remove what a crash left in ``tmp/``: entries nobody was told 250 for. Only at
        start, before any session stages one."""
        left = [path for path in self.tmp.iterdir() if is_entry_id(path.name)]
        for path in left:
            path.unlink(missing_ok=True)
        return len(left)

    def pending(self) -> list[str]:
        """Ids of entries without a final outcome, oldest first."""
        leaving = self._remover.leaving()
        names = (p.name for p in self.queue.iterdir())
        return sorted(name for name in names if is_entry_id(name) and name not in leaving)

    def load(self, entry_id: str) -> SpoolEntry:
        if not is_entry_id(entry_id):
            raise ValueError(f"not a spool id: {entry_id!r}")
        if self._remover.is_leaving(entry_id):
            # Finished: whoever listed it before must not drive it again.
            raise FileNotFoundError(f"spool entry {entry_id} is finished")
        try:
            header, content = read_entry(self.queue / entry_id)
        except PermissionError as err:
            raise SpoolEntryCorrupt(f"spool entry {entry_id} cannot be read: {err}") from err
        return SpoolEntry(entry_id, _envelope(entry_id, header), content)

    def size(self, entry_id: str) -> int:
        """The bytes of a settled entry's file: its message, and its envelope line."""
        return (self.queue / entry_id).stat().st_size

    def finish(self, entry_id: str) -> None:
        """The message has its final outcome (delivered, quarantined, refused): forget it."""
        (self.queue / entry_id).unlink(missing_ok=True)
        fsync_dir(self.queue)

    def finish_soon(self, entry_id: str, sync_first: Path | None = None) -> None:
        """``finish``, off the caller's path: the entry is gone for ``pending`` and ``load``
        at once, its file with the next batch, whose removals share one folder fsync.

        For a message already delivered durably, so its reply need not wait for a folder
        fsync, which is slow beside busy scanners. An entry a crash leaves behind is
        re-driven as one whose removal was lost would be: found delivered in the Maildir,
        sent again by a relay. ``sync_first``: a folder whose fsync makes the delivery
        durable (a Maildir's new/), done before the removal."""
        self._remover.add(entry_id, sync_first)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait for the removals asked for so far; False if they did not end in time."""
        return self._remover.drain(timeout_s)

    @staticmethod
    def age_s(entry_id: str) -> float:
        """How long ago the entry was spooled, read from its id (no disk access)."""
        return time.time() - spooled_at(entry_id)


_ENVELOPE_FIELDS = tuple(field.name for field in fields(Envelope))


def _envelope(entry_id: str, header: bytes) -> Envelope:
    try:
        fields = json.loads(header)
        fields["rcpt_tos"] = tuple(fields["rcpt_tos"])
        # Fields a later release added are left out, so a downgrade still delivers its spool.
        envelope = Envelope(**{key: fields[key] for key in _ENVELOPE_FIELDS if key in fields})
    except (ValueError, KeyError, TypeError) as err:  # UnicodeDecodeError is a ValueError
        raise SpoolEntryCorrupt(f"spool entry {entry_id} has no readable envelope: {err}") from err
    if (
        not envelope.rcpt_tos
        or not isinstance(envelope.mail_from, str)
        or not all(isinstance(rcpt, str) for rcpt in envelope.rcpt_tos)
    ):
        raise SpoolEntryCorrupt(f"spool entry {entry_id} has an envelope of the wrong shape")
    return envelope


def spooled_at(entry_id: str) -> float:
    """The wall clock when the entry's id was made, at the DATA command: ``new_id`` starts
    it with the milliseconds."""
    return int(entry_id[:12], 16) / 1000


def _named(root: Path) -> str:
    """The spool's name (``spool_id``), given the first time the folder is used."""
    existing = spool_id(root)
    if existing:
        return existing
    staged = root / f"{ID_FILE}.{secrets.token_hex(4)}"
    staged.write_text(secrets.token_hex(8) + "\n")
    try:
        os.link(staged, root / ID_FILE)  # whole or absent; of two fronts at once, one wins
    except FileExistsError:
        pass
    finally:
        staged.unlink()
    return spool_id(root) or ""


def fsync_dir(folder: Path) -> None:
    """Make a rename or removal in ``folder`` durable (POSIX asks for the folder's fsync)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Remover:
    """Removes finished entries on a thread of its own, in batches: what arrives while one
    batch is being removed forms the next (a group commit of the folder's fsync)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._changed = threading.Condition()
        self._waiting: list[tuple[str, Path | None]] = []
        self._leaving: set[str] = set()  # asked for and not yet durably removed
        self._thread: threading.Thread | None = None

    def add(self, entry_id: str, sync_first: Path | None) -> None:
        with self._changed:
            self._waiting.append((entry_id, sync_first))
            self._leaving.add(entry_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spool-remover", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def leaving(self) -> set[str]:
        with self._changed:
            return set(self._leaving)

    def is_leaving(self, entry_id: str) -> bool:
        with self._changed:
            return entry_id in self._leaving

    def drain(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._leaving, timeout_s)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                batch, self._waiting = self._waiting, []
            self._remove(batch)
            with self._changed:
                self._leaving.difference_update(entry_id for entry_id, _ in batch)
                self._changed.notify_all()

    def _remove(self, batch: list[tuple[str, Path | None]]) -> None:
        try:
            for folder in dict.fromkeys(f for _, f in batch if f is not None):
                fsync_dir(folder)  # the deliveries durable before their entries go
            for entry_id, _ in batch:
                (self.folder / entry_id).unlink(missing_ok=True)
            fsync_dir(self.folder)
        except OSError:
            # The entries stay, are listed again and re-driven: delivered ones are found so.
            log.exception("could not remove %d finished spool entries", len(batch))
