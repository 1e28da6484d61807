"""Reading the DATA phase in large pieces instead of one line at a time.

aiosmtpd reads DATA with one ``readuntil(CRLF)`` per line: a 100 KB base64 attachment is
some 1,300 awaits and joins, which made the DATA phase the largest part of the SMTP front's
CPU per message. Here the stream is searched for ``.CRLF`` and a match is the end of the
data only when a CRLF comes before it (or it opens the data): lines that merely end in a
dot cost one more search, not one per line. Dot-stuffing is undone once over the whole
message (RFC 5321 4.5.2: a line's leading dot is removed).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

DOT_CRLF = b".\r\n"
CRLF = b"\r\n"
END = CRLF + DOT_CRLF  # the lone dot line with the line end before it


@dataclass
class DataRead:
    """The message as the client meant it, or ``too_big`` (its bytes were not kept)."""

    content: bytes
    too_big: bool = False


async def read_data(reader: asyncio.StreamReader, size_limit: int | None) -> DataRead:
    """Read up to and including the lone dot line. Over ``size_limit`` the rest is drained
    and dropped, so a client that sends too much costs time, not memory."""
    # BytesIO grows its buffer in place and hands it over as the message without a copy: a
    # 25 MB message is in memory once. Pieces kept in a list and joined at the end were
    # there twice while they were joined.
    kept = io.BytesIO()
    size = 0  # of the data read so far, the terminator included
    tail = b""  # its last bytes: the terminator and the CRLF before it may span pieces
    while True:
        piece = await _next_piece(reader)
        size += len(piece)
        tail = (tail + piece[-len(END) :])[-len(END) :]
        if _ends_data(tail):
            kept.write(memoryview(piece)[: -len(DOT_CRLF)])
            break
        if size_limit and size > size_limit:
            kept = io.BytesIO()  # too big whatever follows: keep nothing more
        else:
            kept.write(piece)
    if size_limit and size - len(DOT_CRLF) > size_limit:
        return DataRead(b"", too_big=True)
    return DataRead(_unstuff(kept.getvalue()))


async def _next_piece(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(DOT_CRLF)
    except asyncio.LimitOverrunError as overrun:
        # No terminator within the stream's buffer limit: take what is safe to take.
        return await reader.readexactly(overrun.consumed)


def _ends_data(tail: bytes) -> bool:
    """The data, ending in ``tail`` (its last bytes, up to five), ends with ``.CRLF`` alone
    on its line: the whole data, or after a CRLF (the CRLF that ended the DATA command line
    counts as the one before the first line)."""
    return tail == DOT_CRLF or tail.endswith(END)


def _unstuff(data: bytes) -> bytes:
    if data.startswith(b"."):
        data = data[1:]
    if b"\r\n." in data:  # base64 has no dot: most large messages skip this copy
        data = data.replace(b"\r\n.", CRLF)
    return data
