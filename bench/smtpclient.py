"""A minimal asyncio SMTP client for the load generator: one connection per message, EHLO,
MAIL (with BODY=8BITMIME for 8-bit content), RCPT, DATA, QUIT. Thousands of sessions can be
open at once on one event loop, which the fixed-arrival-rate mode needs under overload."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass

SENDER, RECIPIENT = "bench@example.test", "inbox@example.test"
CLIENT_NAME = "bench.example.test"
QUEUE_ID = re.compile(r"\b[0-9a-f]{16,}\b")
LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class Reply:
    code: int  # 0: no reply at all (refused, reset, timed out)
    text: str
    stage: str  # where the session ended: connect, ehlo, mail, rcpt, data, dot
    latency_s: float  # from connect to that reply

    @property
    def outcome(self) -> str:
        if self.code == 250:
            return "250"
        if 400 <= self.code < 600:
            return f"{self.code // 100}xx"
        return "error" if self.code == 0 else "other"

    @property
    def short(self) -> str:
        """The reply without its queue id, so that equal replies count together."""
        return QUEUE_ID.sub("<id>", f"{self.code} {self.text}" if self.code else self.text)[:70]


class Refused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


async def send(host: str, port: int, message: bytes, timeout_s: float) -> Reply:
    """Send ``message`` (CRLF line ends) in one session and return the reply that ended it."""
    started, stage = time.perf_counter(), ["connect"]
    try:
        code, text = await asyncio.wait_for(_session(host, port, message, stage), timeout_s)
    except Refused as refused:
        code, text = refused.code, refused.text
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as err:
        code, text = 0, f"{type(err).__name__}: {err}"
    return Reply(code, text, stage[0], time.perf_counter() - started)


async def _session(host: str, port: int, message: bytes, stage: list[str]) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
    try:
        await _expect(reader, 220)
        stage[0] = "ehlo"
        extensions = await _command(reader, writer, f"EHLO {CLIENT_NAME}", 250)
        stage[0] = "mail"
        body = " BODY=8BITMIME" if "8BITMIME" in extensions and _eight_bit(message) else ""
        await _command(reader, writer, f"MAIL FROM:<{SENDER}>{body}", 250)
        stage[0] = "rcpt"
        await _command(reader, writer, f"RCPT TO:<{RECIPIENT}>", 250)
        stage[0] = "data"
        await _command(reader, writer, "DATA", 354)
        stage[0] = "dot"
        writer.write(dot_stuffed(message) + b".\r\n")
        await writer.drain()
        code, text = await _reply(reader)
        writer.write(b"QUIT\r\n")
        return code, text
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, want: int
) -> str:
    writer.write(line.encode() + b"\r\n")
    return await _expect(reader, want)


async def _expect(reader: asyncio.StreamReader, want: int) -> str:
    code, text = await _reply(reader)
    if code != want:
        raise Refused(code, text)
    return text


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One reply, multi-line ones joined; (code, text)."""
    lines = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise asyncio.IncompleteReadError(b"", None)
        line = raw.decode(errors="replace").rstrip("\r\n")
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            return int(line[:3]), "\n".join(lines)


def _eight_bit(message: bytes) -> bool:
    return not message.isascii()


def dot_stuffed(message: bytes) -> bytes:
    data = message if message.endswith(b"\r\n") else message + b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data
