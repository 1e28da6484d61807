"""Two ends of SMTP for the spool-life tests: a next hop on loopback that takes, refuses or
is down on demand (aiosmtpd), and a client that writes its commands byte for byte."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str] = field(default_factory=list)

    @property
    def bounce(self) -> bool:
        """Sent with the empty sender, as a DSN is (aiosmtpd keeps its brackets)."""
        return self.mail_from in ("", "<>")


@dataclass
class NextHop:
    """The SMTP server behind a relay-mode front: keeps what it takes, and answers each
    recipient in ``refuse`` with its reply instead. It offers SMTPUTF8 only when told, at
    its start or by ``offer_smtputf8`` (closing the connections open, as a next hop started
    again would). ``sessions`` counts the sessions clients opened (by their EHLO or HELO);
    ``drop_after_message`` closes each connection right after its message's 250, as a next
    hop does whose idle timeout ends before the sender's next message."""

    port: int
    smtputf8: bool = False
    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    controller: Controller | None = None
    sessions: int = 0
    drop_after_message: bool = False
    vanish_at_data: bool = False  # keep the message, close the connection before the 250
    quits: int = 0
    _open: list = field(default_factory=list)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        return self._greeted(server, session, hostname, responses)

    async def handle_HELO(self, server, session, envelope, hostname):
        return self._greeted(server, session, hostname, [f"250 {server.hostname}"])[0]

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    def _greeted(self, server, session, hostname, responses):
        session.host_name = hostname  # a handler's EHLO hook must set it itself
        self.sessions += 1
        self._open = [t for t in self._open if not t.is_closing()] + [server.transport]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                list(envelope.mail_options),
            )
        )
        if self.vanish_at_data:
            server.transport.abort()
            return "250 OK"  # nobody reads it
        if self.drop_after_message:
            # Runs after the 250 is written: closing flushes it first.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK"

    def start(self) -> None:
        # aiosmtpd's Controller would offer SMTPUTF8 unless told not to.
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=self.smtputf8
        )
        self.controller.start()

    def offer_smtputf8(self, offered: bool) -> None:
        assert self.controller is not None
        self.smtputf8 = offered
        # The controller builds a server from these for every connection.
        self.controller.SMTP_kwargs["enable_SMTPUTF8"] = offered
        for transport in self._open:
            self.controller.loop.call_soon_threadsafe(transport.close)

    def __enter__(self) -> NextHop:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None

    def copies(self, rcpt: str, marker: bytes) -> int:
        return sum(
            rcpt in r.rcpt_tos and marker in r.content for r in self.received if not r.bounce
        )

    def dsns(self, marker: bytes) -> list[Received]:
        return [r for r in self.received if r.bounce and marker in r.content]


def raw_smtp(
    port_: int,
    mail_from: bytes,
    message: bytes,
    rcpts: tuple[bytes, ...] = (b"bob@example.test",),
    mail_params: bytes = b"",
) -> list[bytes]:
    """One SMTP transaction written byte for byte (smtplib refuses 8-bit commands); the
    server's replies, one per command. Every command must be taken."""
    commands = [b"EHLO client.example.test", b"MAIL FROM:<" + mail_from + b">" + mail_params,
                *(b"RCPT TO:<" + rcpt + b">" for rcpt in rcpts), b"DATA"]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port_), timeout=60) as sock:
        reader = sock.makefile("rb")
        replies = [_reply(reader)]
        for command in commands:
            sock.sendall(command + b"\r\n")
            replies.append(_reply(reader))
        sock.sendall(message + b"\r\n.\r\n")
        replies.append(_reply(reader))
        sock.sendall(b"QUIT\r\n")
    return replies


class RawSession:
    """One SMTP session written byte for byte, for what smtplib refuses to send: each
    command's reply as the server wrote it."""

    def __init__(self, port_: int, timeout_s: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port_), timeout=timeout_s)
        self.reader = self.sock.makefile("rb")
        self.greeting = _reply(self.reader)

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *_) -> None:
        self.reader.close()
        self.sock.close()

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return _reply(self.reader)

    def message(self, content: bytes) -> bytes:
        """DATA, then ``content`` (CRLF line ends, no line of a lone dot) once the server
        says 354: the reply to the data, or the refusal of DATA."""
        go_ahead = self.command(b"DATA")
        if not go_ahead.startswith(b"354"):
            return go_ahead
        self.sock.sendall(content + b"\r\n.\r\n")
        return _reply(self.reader)


def _reply(reader) -> bytes:
    lines = [reader.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(reader.readline())
    return b"".join(lines)
