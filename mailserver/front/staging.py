"""A message written into the spool's ``tmp/`` while its DATA arrives.

A session holds one buffer of at most ``FLUSH_BYTES``: each time it fills, it is written to
the entry's file off the event loop, so 200 clients sending 25 MB each cost the front 200
buffers, not 5 GB. A message that never fills the buffer (most mail) is written in one go
when its data ends and kept in memory for its scan; a bigger one is read back from the
file when the memory budget lets it in (mailserver/front/membudget.py). The file is a
spool entry like any other (spool.py): the envelope line, then the message; it is neither
durable nor listed until ``Spool.settle``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, BinaryIO

from mailserver.front.spool import Envelope, Spool

log = logging.getLogger(__name__)

# Writes this size make a 25 MB message a hundred writes; the buffer is the session's memory.
FLUSH_BYTES = 256 * 1024
# Enough of the message's start for the message log's Message-ID and subject when the
# message is refused before it is read back whole.
HEAD_BYTES = 64 * 1024


class StagedMessage:
    """The message of one DATA phase, on its way into ``tmp/<id>``. ``failed``: the spool
    could not take it (the session answers 451 and nothing stays)."""

    def __init__(self, spool: Spool, entry_id: str, envelope: Envelope) -> None:
        self.spool, self.id, self.envelope = spool, entry_id, envelope
        self.size = 0
        self.failed = False
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._kept: bytes | None = None
        self._writing: asyncio.Future[None] | None = None
        self.head = b""  # the first piece, kept for the message log (Message-ID, subject)

    async def write(self, data: bytes) -> None:
        if self.failed:
            return  # drained to its end, answered 451
        self._buffer += data
        self.size += len(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def close(self) -> bool:
        """The data has ended: the whole message into the file. False if the spool failed."""
        if self.failed:
            return False
        if self._file is None:  # it fits the buffer: one write, and kept for the scan
            self._kept = bytes(self._buffer)
            self._buffer = bytearray()
            await self._guarded(self.spool.stage, self.envelope, self._kept, self.id)
        else:
            await self._flush()
            if not self.failed:
                await self._guarded(self._file.close)
        return not self.failed

    async def content(self) -> bytes:
        """The message: kept, or read back from its file (staged or settled by now)."""
        if self._kept is not None:
            return self._kept
        return await asyncio.to_thread(self.spool.read_staged, self.id)

    async def discard(self) -> None:
        """Nobody was told 250: the file goes, whatever state it is in."""
        self.failed, self._buffer, self._kept = True, bytearray(), None
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        await asyncio.to_thread(self._remove)

    async def _flush(self) -> None:
        chunk, self._buffer = self._buffer, bytearray()
        await self._guarded(self._append, chunk)

    def _append(self, chunk: bytearray) -> None:
        if self._file is None:
            self._file = self.spool.open_staged(self.envelope, self.id)
        self._file.write(chunk)

    async def _guarded(self, write: Callable[..., Any], *args: Any) -> None:
        # Shielded: a session cancelled mid-write (its client went away) leaves the write to
        # finish on its thread, and ``discard`` waits for it before the file goes.
        self._writing = asyncio.ensure_future(asyncio.to_thread(write, *args))
        try:
            await asyncio.shield(self._writing)
        except OSError:
            # Logged once; the rest of the data is drained, and the session answers 451.
            log.exception("could not write the message into the spool")
            self.failed = True

    def _remove(self) -> None:
        if self._file is not None:
            self._file.close()
        self.spool.discard(self.id)
