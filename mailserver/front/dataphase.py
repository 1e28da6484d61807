"""Reading the DATA phase in large pieces, into a sink (the spool) as it arrives.

aiosmtpd reads DATA with one ``readuntil(CRLF)`` per line: a 100 KB base64 attachment is
some 1,300 awaits and joins, which made the DATA phase the largest part of the SMTP front's
CPU per message. Here the stream is searched for ``.CRLF`` and a match is the end of the
data only when a CRLF comes before it (or it opens the data): lines that merely end in a
dot cost one more search, not one per line. Only ``<CR><LF>.<CR><LF>`` ends the data: a
dot between bare line ends (``<LF>.<LF>``, ``<LF>.<CR><LF>``, ``<CR><LF>.<LF>``) is content,
and content with a bare CR or LF is refused whole (datachecks.py), so no second message
can hide in it for a server that reads line ends more loosely (SMTP smuggling).

Each piece is checked, its dot-stuffing undone (RFC 5321 4.5.2: a line's leading dot is
removed) and handed to the sink: the session holds a piece, never the message. A message
refused is still read to its end, so the next command is read as one, but none of it is
kept past the refusal.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from mailserver.front.datachecks import CRLF, DataChecks
from mailserver.front.dataclock import DataClock

DOT_CRLF = b".\r\n"
END = CRLF + DOT_CRLF  # the lone dot line with the line end before it
DATA_TIMED_OUT = "421 4.4.2 Timeout exceeded during DATA, closing connection"


class MessageSink(Protocol):
    """Where the message goes as it arrives (mailserver/front/staging.py)."""

    async def write(self, data: bytes) -> None: ...


async def read_data(
    reader: asyncio.StreamReader, sink: MessageSink, checks: DataChecks, clock: DataClock | None
) -> str:
    """Read up to and including the lone dot line; the refusal reply for a message that
    broke a rule, "" for one whole in ``sink``. TimeoutError when ``clock`` runs out."""
    tail = b""  # the data's last bytes: the terminator and the CRLF before it may span pieces
    line_start, after_cr = True, False
    while True:
        piece = await _next_piece(reader, clock)
        tail = (tail + piece[-len(END) :])[-len(END) :]
        ended = _ends_data(tail)
        content = piece[: -len(DOT_CRLF)] if ended else piece
        if not checks.feed(content):
            await sink.write(_unstuffed(content, line_start, after_cr))
            # Checked: a LF here ends a line (it has its CR), and a CR may end a piece.
            line_start, after_cr = content[-1:] == b"\n", content[-1:] == b"\r"
        if ended:
            return checks.refusal


async def _next_piece(reader: asyncio.StreamReader, clock: DataClock | None) -> bytes:
    if clock is None:
        return await _piece(reader)
    while True:
        try:
            async with asyncio.timeout_at(clock.expires_at()):
                return await _piece(reader)
        except TimeoutError:
            # A piece ends at a ".CRLF" or a full buffer; bytes may have come meanwhile
            # and moved the clock on. The wait is taken up again, the buffer untouched.
            if clock.expired():
                raise


async def _piece(reader: asyncio.StreamReader) -> bytes:
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


def _unstuffed(content: bytes, line_start: bool, after_cr: bool) -> bytes:
    """``content`` without the dot that opens each of its lines; ``line_start``: it opens
    a line, ``after_cr``: the piece before ended in the CR of a CRLF."""
    if line_start and content[:1] == b".":
        content = content[1:]
    elif after_cr and content[:2] == b"\n.":
        content = b"\n" + content[2:]
    # A dot is found at memory speed and base64 has none: most large pieces skip the rest.
    if b"." in content and b"\r\n." in content:
        content = content.replace(b"\r\n.", CRLF)
    return content
