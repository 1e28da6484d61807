"""What SpamAssassin is given of a message larger than its limit: the head of it, as spamc and
amavisd-new give theirs. The header block and the first parts carry what spam rules look
at; the cut falls where the rest still parses: after the last whole MIME part that fits
(the multipart then closed with its closing delimiter), else at the end of a line."""

from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import compat32

from tasks.wire.blobs import Message

# The end of the header block: the first empty line.
_HEAD_END = re.compile(rb"\r?\n\r?\n")


def truncate(message: Message, limit: int) -> Message:
    """``message`` if it fits in ``limit`` bytes, else its head, never longer than ``limit``."""
    if len(message) <= limit:
        return message
    body_at = _body_start(message)
    boundary = _boundary(message[:body_at]) if 0 < body_at <= limit else None
    if boundary is not None:
        cut = _cut_multipart(message, boundary, body_at, limit)
        if cut is not None:
            return cut
    return message[: _line_end_before(message, limit)]


def _body_start(message: Message) -> int:
    """Where the body starts; 0 for a message that is all header (or has none)."""
    if message.startswith((b"\r\n", b"\n")):
        return 0
    found = _HEAD_END.search(message)
    return found.end() if found else 0


def _boundary(head: Message) -> bytes | None:
    """The boundary of a top-level multipart, as its Content-Type says (folded or quoted)."""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    if parsed.get_content_maintype() != "multipart":
        return None
    boundary = parsed.get_boundary()
    return boundary.encode("ascii", "replace") if boundary else None


def _cut_multipart(message: Message, boundary: bytes, body_at: int, limit: int) -> Message | None:
    """The parts before the last delimiter line that leaves room to close the multipart, then
    its closing delimiter; failing that (the first part alone is too large), the first part
    cut at a line end and closed. None when not even that fits."""
    eol = b"\r\n" if b"\r\n" in message[:body_at] else b"\n"
    closing = b"--" + boundary + b"--" + eol
    room = limit - len(closing)
    starts = _delimiter_lines(message, boundary, body_at, room)
    if len(starts) >= 2:  # the first delimiter opens the first part: nothing whole before it
        return message[: starts[-1]] + closing
    if starts:
        line_end = _line_end_before(message, room)
        if line_end > starts[0]:
            return message[:line_end] + closing
    return None


def _delimiter_lines(message: Message, boundary: bytes, body_at: int, room: int) -> list[int]:
    """Where each delimiter line of ``boundary`` starts, up to ``room``: a line that starts
    with ``--boundary`` (a delimiter may have trailing text and white space, RFC 2046)."""
    delimiter = re.compile(rb"^--" + re.escape(boundary), re.MULTILINE)
    return [found.start() for found in delimiter.finditer(message, body_at, room)]


def _line_end_before(message: Message, limit: int) -> int:
    """The end of the last whole line within ``limit`` bytes; ``limit`` when no line ends
    there (a cut mid-line beats sending more than the limit)."""
    newline = message.rfind(b"\n", 0, limit)
    return newline + 1 if newline >= 0 else limit
