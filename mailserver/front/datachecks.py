"""What the DATA phase refuses, checked piece by piece as the message streams in.

Each check is a scan in C over the piece (``bytes.count``, ``rfind``, ``find``), never a
Python loop over its lines: a 25 MB message costs a few passes at memory speed. The pieces
are cut anywhere, so every check carries what it needs across a cut (an open line's length,
a CR that a LF may follow, the last bytes of the header section).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.settings import Settings

CRLF = b"\r\n"
BLANK_LINE = b"\r\n\r\n"
NOT_LINE_ENDS = bytes(byte for byte in range(256) if byte not in b"\r\n")

BARE_NEWLINE = "550 5.6.0 Message refused: bare CR or LF"
TOO_BIG = "552 5.3.4 Message too big for this system"


@dataclass(frozen=True)
class DataRules:
    """The bounds of one DATA phase (tasks/settings/schema/front.py explains each default)."""

    max_line_bytes: int = 1024 * 1024
    max_header_bytes: int = 512 * 1024
    idle_timeout_s: float = 300.0
    min_rate_bytes_per_s: int = 500

    @classmethod
    def of(cls, settings: Settings) -> DataRules:
        return cls(
            settings.smtp_max_line_bytes,
            settings.smtp_max_header_bytes,
            settings.smtp_data_idle_timeout_s,
            settings.smtp_data_min_rate_bytes_per_s,
        )


class DataChecks:
    """Feed it the message as it arrives (dot-stuffed, as on the wire, without the final
    ``.CRLF``); ``refusal`` is the reply for the first rule it broke, "" while none."""

    def __init__(self, rules: DataRules, max_message_bytes: int | None) -> None:
        self.rules, self.max_message_bytes = rules, max_message_bytes
        self.refusal = ""
        self.size = 0
        self._open_line = 0  # bytes of the line not yet ended
        self._cr_waiting = False  # the last piece ended in a CR, which a LF may follow
        # The header section ends at the first empty line; the CRLF that ended the DATA
        # command stands before the first line, so data that opens with CRLF has none.
        self._head_tail: bytes | None = CRLF

    def feed(self, piece: bytes) -> str:
        if self.refusal:
            return self.refusal
        self.size += len(piece)
        if self.max_message_bytes and self.size > self.max_message_bytes:
            self.refusal = TOO_BIG
        elif self._bare_newline(piece):
            self.refusal = BARE_NEWLINE
        elif self._line_too_long(piece):
            self.refusal = (
                f"552 5.3.4 Message refused: a line is longer than "
                f"{self.rules.max_line_bytes} bytes"
            )
        elif self._header_too_big(piece):
            self.refusal = (
                f"552 5.3.4 Message refused: header section larger than "
                f"{self.rules.max_header_bytes} bytes"
            )
        return self.refusal

    def _bare_newline(self, piece: bytes) -> bool:
        """Whether a CR or LF stands alone: every LF has a CR before it, and every CR a LF
        after it (SMTP smuggling hides a second message behind ``<LF>.<LF>``, which some
        servers take for the end of the data). The piece's line ends alone, in order, are a
        few bytes in a hundred, and must be CRLF pairs."""
        if not piece:
            return False
        ends = piece.translate(None, NOT_LINE_ENDS)
        if self._cr_waiting:
            ends = b"\r" + ends
        self._cr_waiting = piece[-1:] == b"\r"  # its LF may open the next piece
        if self._cr_waiting:
            ends = ends[:-1]
        return ends.count(CRLF) * 2 != len(ends)

    def _line_too_long(self, piece: bytes) -> bool:
        """Whether a line, its CRLF included, is longer than the bound. Each ``rfind``
        looks as far as the line open at its start may still reach, and jumps to the last
        line end there: a few searches per bound's worth of bytes, whatever the lines."""
        limit, size = self.rules.max_line_bytes, len(piece)
        start, room = 0, limit - self._open_line
        while size - start > room:
            end = piece.rfind(b"\n", start, start + room)
            if end < 0:
                return True
            start, room = end + 1, limit
        last = piece.rfind(b"\n", start)
        self._open_line = size - last - 1 if last >= 0 else limit - room + size - start
        return False

    def _header_too_big(self, piece: bytes) -> bool:
        """Whether the header section, up to its empty line, is larger than the bound.
        Searched only until that line: a body costs nothing here."""
        if self._head_tail is None:
            return False
        seen = self._head_tail + piece
        at = seen.find(BLANK_LINE)
        if at < 0:
            self._head_tail = seen[-len(BLANK_LINE) + 1 :]
            return self.size > self.rules.max_header_bytes
        header_bytes = self.size - len(piece) - len(self._head_tail) + at
        self._head_tail = None
        return header_bytes > self.rules.max_header_bytes
