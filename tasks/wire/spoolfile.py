"""A spool entry's file, as the pools read it: big messages reach them this way.

The SMTP front writes each message to its spool before it enqueues the scans
(mailserver/front/spool.py): one file, a JSON line with the envelope, then the message as the
client sent it. It is written under ``tmp/`` and renamed into ``queue/`` while the scans run,
and removed once the message has its outcome. For a message of at least
``MAILSCAN_SHARED_SPOOL_FROM_BYTES`` the pools read it from that file, through the spool
folder they share with the front, instead of from Redis: only the header lines the front
adds travel through Redis (tasks/wire/blobs.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tasks.errors import BlobMissing, SpoolUnreadable

STAGING, QUEUE = "tmp", "queue"
# A random name the front gives its spool folder once: a pool that reads the same name
# sees the front's spool, not merely a folder of the same path (tasks/health.py).
ID_FILE = "spool-id"
_ENTRY_ID = re.compile(r"[0-9a-f]{24}")


def is_entry_id(name: str) -> bool:
    return bool(_ENTRY_ID.fullmatch(name))


def spool_id(spool_dir: Path) -> str | None:
    """The name of the spool under ``spool_dir``, None where this process sees none."""
    try:
        return (spool_dir / ID_FILE).read_text().strip() or None
    except OSError:
        return None


def read_entry(path: Path) -> tuple[bytes, bytes]:
    """(the envelope's JSON line, the message) of a spool file, the message read in one
    piece: no second copy of a 25 MB message to split it off its envelope."""
    with open(path, "rb") as handle:
        return handle.readline().removesuffix(b"\n"), handle.read()


def read_after_envelope(path: Path, top: bytes) -> bytearray:
    """``top`` and then the message of a spool file, read into one buffer of their size: a
    25 MB message read alone and then joined to the front's header lines would be in memory
    twice."""
    with open(path, "rb") as handle:
        handle.readline()  # the envelope: a pool needs none
        size = os.fstat(handle.fileno()).st_size - handle.tell()
        buffer = bytearray(len(top) + size)
        buffer[: len(top)] = top
        read = handle.readinto(memoryview(buffer)[len(top) :])
    # A file that changed size since fstat is not the message the front referenced: the
    # reference's digest refuses it, so what was read is returned as it is.
    del buffer[len(top) + read :]
    return buffer


def read_message(spool_dir: Path, entry_id: str, top: bytes = b"") -> bytearray:
    """``top`` followed by the message of a spool entry, staged or settled; SpoolUnreadable
    when it is in neither folder (this process does not see the front's spool, or the
    message has its outcome), BlobMissing for a name that is not an entry id."""
    if not is_entry_id(entry_id):
        raise BlobMissing(f"not a spool entry id: {entry_id!r}")
    # Staged first: the front renames tmp/ -> queue/ only, so a miss in tmp/ followed by one
    # in queue/ means the entry is gone, not that the rename was passed by.
    for folder in (STAGING, QUEUE):
        try:
            return read_after_envelope(spool_dir / folder / entry_id, top)
        except FileNotFoundError:
            continue
        except OSError as err:  # there, and not for this process to read (its user, say)
            raise SpoolUnreadable(f"message {entry_id}: {err}. {_SHARE_IT}") from err
    if not (spool_dir / QUEUE).is_dir():
        raise SpoolUnreadable(
            f"message {entry_id}: the spool folder {spool_dir} is not here. {_SHARE_IT}"
        )
    # While the front waits for a verdict, its entry is in one of the two folders: found in
    # neither, this pool reads another spool than the front's, or the message has its
    # outcome already and nobody waits for this verdict.
    raise SpoolUnreadable(
        f"message {entry_id} is not, or no longer, in the spool at {spool_dir}. {_SHARE_IT}"
    )


_SHARE_IT = (
    "The pools read big messages from the SMTP front's spool: share its folder with them "
    "(read-only), or set MAILSCAN_SHARED_SPOOL_FROM_BYTES=0 for the front to send all "
    "through Redis"
)
