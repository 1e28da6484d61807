"""What SpamAssassin is given of a message larger than its limit: the head of it, as spamc and
amavisd-new give theirs. The header block and the first parts carry what spam rules look
at; the cut falls where the rest still parses: after the last whole MIME part that fits, at
any depth, else at the end of a line inside a part. Every multipart open at the cut is then
closed with its closing delimiter, innermost first, so a parser finds nothing to mend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message as Headers
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
    boundary = _boundary(_headers(message[:body_at])) if 0 < body_at <= limit else None
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


def _boundary(headers: Headers) -> bytes | None:
    """The boundary of a multipart, as its Content-Type says (folded or quoted)."""
    if headers.get_content_maintype() != "multipart":
        return None
    boundary = headers.get_boundary()
    return boundary.encode("ascii", "replace") if boundary else None


def _headers(head: Message) -> Headers:
    return BytesHeaderParser(policy=compat32).parsebytes(head)


@dataclass(frozen=True)
class _Cut:
    """Where the message may be cut, what closes it there, and whether every part before
    the cut is whole (a cut before a delimiter line) or the last one is cut at a line end."""

    at: int
    closing: bytes
    whole: bool


def _cut_multipart(message: Message, boundary: bytes, body_at: int, limit: int) -> Message | None:
    """The message up to the last cut before a delimiter line that leaves room to close the
    multiparts open there; failing that (the first part alone is too large), up to the last
    line end inside a part that leaves that room. None when no cut fits."""
    eol = b"\r\n" if b"\r\n" in message[:body_at] else b"\n"
    best: dict[bool, _Cut] = {}
    for cut in _cuts(message, _Walk(boundary, eol), body_at, limit):
        if cut.at + len(cut.closing) <= limit:
            best[cut.whole] = cut
    chosen = best.get(True) or best.get(False)
    return None if chosen is None else message[: chosen.at] + chosen.closing


def _cuts(message: Message, walk: _Walk, body_at: int, limit: int) -> Iterator[_Cut]:
    """Each cut the lines starting before ``limit`` offer, in order, until the top-level
    multipart closes."""
    start = body_at
    while start < limit and walk.open:
        newline = message.find(b"\n", start)
        end = len(message) if newline < 0 else newline + 1
        cut = walk.read(message, start, end)
        if cut is not None:
            yield cut
        start = end


@dataclass
class _Open:
    """A multipart open where the walk is. Until its first delimiter line it has no part,
    and closing it there leaves a multipart a parser finds no start of."""

    boundary: bytes
    started: bool = False


class _Walk:
    """The multiparts open as the message is read line by line, and the cut each line
    offers: before a delimiter line, or after a line of a part's body."""

    def __init__(self, top: bytes, eol: bytes) -> None:
        self.open = [_Open(top)]
        self.eol = eol
        self.header_from: int | None = None  # where the part's header block started, in one
        self._opened()

    def read(self, message: Message, start: int, end: int) -> _Cut | None:
        """Take the line ``message[start:end]``; the cut it offers, if any."""
        if self.header_from is not None:
            body_follows = self._read_header(message, start, end)
            return _Cut(end, self.closing, False) if body_follows else None
        line = message[start:end]
        found = _delimiter(line, self.open)
        cuttable = all(multipart.started for multipart in self.open)
        if found is None:
            # A line without its line end is the last of a message: nothing to cut after.
            return _Cut(end, self.closing, False) if cuttable and line.endswith(b"\n") else None
        cut = _Cut(start, self.closing, True) if cuttable else None
        self._delimited(*found, end)
        return cut

    def _delimited(self, index: int, closes: bool, end: int) -> None:
        # A delimiter of an outer multipart ends the inner ones too, as parsers read it.
        del self.open[index + 1 :]
        if closes:
            del self.open[index]
        else:
            self.open[index].started = True
            self.header_from = end
        self._opened()

    def _read_header(self, message: Message, start: int, end: int) -> bool:
        """Take a line of a part's header block; True when it ends that of a leaf part,
        whose body follows."""
        if message[start:end] not in (b"\r\n", b"\n"):
            return False
        headers = _headers(message[self.header_from : end])
        self.header_from = None
        boundary = _boundary(headers)
        if boundary is not None:
            self.open.append(_Open(boundary))
            self._opened()
        elif headers.get_content_type() == "message/rfc822":
            self.header_from = end  # the enclosed message's own header block follows
        return self.header_from is None and boundary is None

    def _opened(self) -> None:
        # Innermost first: each closing delimiter ends its multipart inside the outer's part.
        self.closing = b"".join(
            b"--" + multipart.boundary + b"--" + self.eol for multipart in reversed(self.open)
        )


def _delimiter(line: Message, open_: list[_Open]) -> tuple[int, bool] | None:
    """Which open multipart ``line`` is a delimiter of (innermost first), and whether it is
    the closing one: ``--boundary``, ``--`` after it when closing, then only white space
    (RFC 2046); None for a line of content."""
    if not line.startswith(b"--"):
        return None
    bare = line.rstrip(b" \t\r\n")
    for index in range(len(open_) - 1, -1, -1):
        dash = b"--" + open_[index].boundary
        if bare in (dash, dash + b"--"):
            return index, bare != dash
    return None


def _line_end_before(message: Message, limit: int) -> int:
    """The end of the last whole line within ``limit`` bytes; ``limit`` when no line ends
    there (a cut mid-line beats sending more than the limit)."""
    newline = message.rfind(b"\n", 0, limit)
    return newline + 1 if newline >= 0 else limit
