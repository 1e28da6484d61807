"""An SMTP client on a raw socket for the edge tests: it writes exactly what it is given,
reads each reply with a deadline, and connects from the loopback address it is given
(127.0.0.0/8 is all local), so that one test plays several client addresses."""

from __future__ import annotations

import smtplib
import socket
import time
from types import TracebackType


class EdgeClient:
    """One connection to an SMTP server; ``reply`` raises TimeoutError past its deadline
    and EOFError when the server has closed."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), 10, (source, 0))
        self._buffer = b""

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def command(self, line: str, timeout_s: float = 10.0) -> str:
        self.send(line + "\r\n")
        return self.reply(timeout_s)

    def reply(self, timeout_s: float = 10.0) -> str:
        """The next whole reply, the lines of a multi-line one joined by newlines."""
        deadline = time.monotonic() + timeout_s
        lines = [self._line(deadline)]
        while lines[-1][3:4] == "-":
            lines.append(self._line(deadline))
        return "\n".join(lines)

    def rest(self, timeout_s: float = 10.0) -> bytes:
        """Whatever the server still sends, up to its closing the connection."""
        deadline = time.monotonic() + timeout_s
        rest, self._buffer = self._buffer, b""
        while chunk := self._receive(deadline):
            rest += chunk
        return rest

    def _line(self, deadline: float) -> str:
        while b"\r\n" not in self._buffer:
            chunk = self._receive(deadline)
            if not chunk:
                raise EOFError(f"closed by the server; unanswered: {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line.decode()

    def _receive(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply in time")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""


def greeted(port: int, source: str) -> EdgeClient | None:
    """A connection the server greeted with 220, or None when it refused it."""
    client = EdgeClient(port, source)
    try:
        if client.reply().startswith("220 "):
            return client
    except EOFError:
        pass
    client.close()
    return None


def deliver(port: int, source: str, marker: str) -> tuple[int, str]:
    """A whole message over smtplib from ``source``: the reply to its DATA, or the refusal
    of the connection."""
    message = f"Subject: {marker}\r\nFrom: alice@example.test\r\n\r\n{marker}\r\n"
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0))
    except smtplib.SMTPConnectError as refused:
        return refused.smtp_code, refused.smtp_error.decode()
    with client:
        client.ehlo("client.example.test")
        client.mail("alice@example.test")
        client.rcpt("bob@example.test")
        code, text = client.data(message.encode())
        return code, text.decode()
