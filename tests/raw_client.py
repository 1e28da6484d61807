"""An SMTP client that writes the bytes it is given and nothing else, for the edge tests:
smtplib fixes line ends and dot-stuffs, and would never send what a hostile client sends."""

from __future__ import annotations

import select
import socket


class RawClient:
    """One connection to a front; ``replies`` holds every reply it read, in order."""

    def __init__(self, port: int, timeout_s: float = 60.0, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout_s, (source, 0))
        self._lines = self.sock.makefile("rb")
        self.replies: list[bytes] = []
        self.reply()  # the greeting

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._lines.close()
        self.sock.close()

    def reply(self) -> bytes:
        """The next reply, its lines joined; b"" once the server has closed the connection."""
        lines = [self._lines.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self._lines.readline())
        reply = b"".join(lines)
        self.replies.append(reply)
        return reply

    def answered_within(self, wait_s: float) -> bool:
        """Whether the server says something (or hangs up) within ``wait_s``."""
        return bool(select.select([self.sock], [], [], wait_s)[0])

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def start_data(self, rcpt: bytes = b"bob@example.test") -> None:
        """EHLO, MAIL, RCPT and DATA, each answered as a well-behaved client expects."""
        assert self.command(b"EHLO client.example.test").startswith(b"250")
        assert self.command(b"MAIL FROM:<alice@example.test>").startswith(b"250")
        assert self.command(b"RCPT TO:<" + rcpt + b">").startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")

    def send(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)
