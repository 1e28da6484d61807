"""The MTA's end of the milter protocol, for the tests: a blocking client over a real
socket (TCP or Unix) that sends events as Postfix does and reads our replies."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mailserver.milter import codec

# What Postfix 3.x offers with milter_protocol = 6: every action, every protocol step.
POSTFIX_ACTIONS = 0x1FF
POSTFIX_STEPS = 0x1FFFFF


@dataclass
class Reply:
    command: bytes
    data: bytes

    @property
    def text(self) -> str:
        return self.data.rstrip(b"\0").decode(errors="replace")

    def header(self) -> tuple[int | None, str, str]:
        """(index or None, name, value) of a header action."""
        index = None
        data = self.data
        if self.command in (codec.INSHEADER, codec.CHGHEADER):
            (index,), data = struct.unpack(">I", data[:4]), data[4:]
        name, value = data.rstrip(b"\0").split(b"\0")
        return index, name.decode(), value.decode()


@dataclass
class EndReplies:
    """Everything the milter said at the end of a message."""

    progress: int = 0
    edits: list[Reply] = field(default_factory=list)
    final: Reply | None = None

    def headers(self) -> dict[str, str]:
        return {name: value for _, name, value in (e.header() for e in self.edits
                                                   if e.command != codec.QUARANTINE)}  # fmt: skip


class MilterClient:
    def __init__(self, where: tuple[str, int] | Path, timeout_s: float = 60.0) -> None:
        if isinstance(where, Path):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout_s)
            self.sock.connect(str(where))
        else:
            self.sock = socket.create_connection(where, timeout=timeout_s)
        self.steps = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MilterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(codec.packet(command, data))

    def read(self) -> Reply | None:
        """The next reply, or None when the milter closed the connection."""
        head = self._exactly(4)
        if head is None:
            return None
        (size,) = struct.unpack(">I", head)
        body = self._exactly(size)
        if body is None:
            return None
        return Reply(body[:1], body[1:])

    def negotiate(
        self, version: int = 6, actions: int = POSTFIX_ACTIONS, steps: int = POSTFIX_STEPS
    ) -> tuple[int, int, int]:
        self.send(codec.OPTNEG, struct.pack(">III", version, actions, steps))
        reply = self.read()
        assert reply is not None, "the milter closed the connection at OPTNEG"
        assert reply.command == codec.OPTNEG, reply
        agreed = struct.unpack(">III", reply.data[:12])
        self.steps = agreed[2]
        return agreed

    def event(self, command: bytes, data: bytes = b"") -> None:
        """Send an event; read its CONTINUE unless a no-reply step was agreed for it."""
        self.send(command, data)
        flag = codec.NO_REPLY.get(command)
        if flag is not None and not self.steps & flag:
            reply = self.read()
            assert reply is not None, f"the milter closed the connection after {command!r}"
            assert reply.command == codec.CONTINUE, reply

    def envelope(self, sender: str = "alice@example.test",
                 rcpts: tuple[str, ...] = ("bob@example.test",)) -> None:  # fmt: skip
        self.send(codec.MACRO, codec.CONNECT + b"j\0mx.example.test\0")
        self.event(codec.CONNECT, b"client.example.test\x004" + struct.pack(">H", 40000)
                   + b"127.0.0.5\0")  # fmt: skip
        self.event(codec.HELO, b"client.example.test\0")
        self.event(codec.MAIL, f"<{sender}>".encode() + b"\0")
        for rcpt in rcpts:
            self.event(codec.RCPT, f"<{rcpt}>".encode() + b"\0")

    def message(self, raw: bytes) -> None:
        """Header fields, end of headers and body, as Postfix sends them (folded lines
        joined by LF, the value with its leading space when that was agreed)."""
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        for field_ in _fields(head):
            name, _, value = field_.partition(b":")
            if not self.steps & codec.HEADER_LEADING_SPACE:
                value = value.removeprefix(b" ")
            self.event(codec.HEADER, name + b"\0" + value + b"\0")
        self.event(codec.EOH)
        crlf = body.replace(b"\n", b"\r\n")
        for start in range(0, len(crlf), 65535):
            self.event(codec.BODY, crlf[start : start + 65535])

    def end(self) -> EndReplies:
        self.send(codec.MACRO, codec.EOB + b"i\0ABC123\0")
        self.send(codec.EOB)
        replies = EndReplies()
        while True:
            reply = self.read()
            assert reply is not None, "the milter closed the connection instead of answering"
            if reply.command == codec.PROGRESS:
                replies.progress += 1
            elif reply.command in (codec.INSHEADER, codec.CHGHEADER, codec.ADDHEADER,
                                   codec.QUARANTINE):  # fmt: skip
                replies.edits.append(reply)
            else:
                replies.final = reply
                return replies

    def _exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                piece = self.sock.recv(size - len(data))
            except ConnectionResetError:
                return None
            if not piece:
                return None
            data += piece
        return data


def _fields(head: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        else:
            fields.append(line)
    return fields
