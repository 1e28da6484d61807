"""The milter protocol, version 6 (Sendmail 8's, as Postfix speaks it): packets, the MTA's
commands and our replies.

A packet is a 4-byte big-endian length, then one command byte and its data (the length
counts both). Strings are NUL-terminated. The MTA opens with OPTNEG (version, the actions
it lets us take, the protocol steps it can leave out); we answer with the ones we want.
Everything here is pure except ``read_packet``; anything malformed is MilterProtocolError,
and the session closes the connection (the MTA then applies its ``milter_default_action``).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from tasks.errors import MilterProtocolError

VERSION = 6

# The MTA's commands (SMFIC_*).
OPTNEG, MACRO, CONNECT, HELO = b"O", b"D", b"C", b"H"
MAIL, RCPT, DATA, HEADER, EOH, BODY, EOB = b"M", b"R", b"T", b"L", b"N", b"B", b"E"
ABORT, QUIT, QUIT_NC, UNKNOWN = b"A", b"Q", b"K", b"U"

# Our replies (SMFIR_*).
CONTINUE, ACCEPT, REPLYCODE, PROGRESS = b"c", b"a", b"y", b"p"
ADDHEADER, INSHEADER, CHGHEADER, QUARANTINE = b"h", b"i", b"m", b"q"

# Actions we may take (SMFIF_*): add and change header fields, put a message on hold.
ADD_HEADERS, CHANGE_HEADERS, HOLD = 0x01, 0x10, 0x20
ACTIONS = ADD_HEADERS | CHANGE_HEADERS | HOLD

# Protocol steps (SMFIP_*): the events we need no reply to (NR_*), the ones we need not see
# at all, and header values with their leading space kept, so the message we scan is the
# one Postfix received, byte for byte.
NO_UNKNOWN, NO_DATA = 0x100, 0x200
NR_CONNECT, NR_HELO, NR_MAIL, NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
NR_DATA, NR_UNKNOWN, NR_EOH, NR_BODY, NR_HEADER = 0x10000, 0x20000, 0x40000, 0x80000, 0x80
HEADER_LEADING_SPACE = 0x100000
NO_REPLY = {
    CONNECT: NR_CONNECT, HELO: NR_HELO, MAIL: NR_MAIL, RCPT: NR_RCPT, DATA: NR_DATA,
    HEADER: NR_HEADER, EOH: NR_EOH, BODY: NR_BODY, UNKNOWN: NR_UNKNOWN,
}  # fmt: skip
STEPS = NO_UNKNOWN | NO_DATA | HEADER_LEADING_SPACE
for _flag in NO_REPLY.values():
    STEPS |= _flag

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Packet:
    command: bytes  # one byte
    data: bytes


@dataclass(frozen=True)
class Negotiated:
    """What both sides agreed on: the actions we may take, the protocol steps in force."""

    actions: int
    steps: int

    def replies_to(self, command: bytes) -> bool:
        flag = NO_REPLY.get(command)
        return flag is None or not self.steps & flag


@dataclass(frozen=True)
class Client:
    """The SMTP client as the MTA saw it (CONNECT)."""

    hostname: str
    address: str  # an IP address; empty for a Unix socket or an unknown family


async def read_packet(reader: asyncio.StreamReader, max_bytes: int) -> Packet | None:
    """The next packet, or None when the MTA closed the connection between packets."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise MilterProtocolError("connection closed inside a packet's length") from err
        return None
    (size,) = _LENGTH.unpack(head)
    if size < 1:
        raise MilterProtocolError("a packet without a command")
    if size > max_bytes:
        raise MilterProtocolError(f"a packet of {size} bytes, over the {max_bytes} allowed")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as err:
        raise MilterProtocolError("connection closed inside a packet") from err
    return Packet(body[:1], body[1:])


def packet(command: bytes, data: bytes = b"") -> bytes:
    return _LENGTH.pack(len(data) + 1) + command + data


def negotiate(data: bytes) -> tuple[Negotiated, bytes]:
    """Our terms for the MTA's OPTNEG, and the reply that states them."""
    if len(data) < 12:
        raise MilterProtocolError("OPTNEG shorter than its three numbers")
    version, actions, steps = struct.unpack(">III", data[:12])
    if version < VERSION:
        raise MilterProtocolError(
            f"the MTA offers milter protocol {version}; mailscan speaks {VERSION} "
            f"(Postfix: milter_protocol = {VERSION})"
        )
    agreed = Negotiated(actions & ACTIONS, steps & STEPS)
    return agreed, packet(OPTNEG, struct.pack(">III", VERSION, agreed.actions, agreed.steps))


def strings(data: bytes, count: int | None = None) -> list[bytes]:
    """The NUL-terminated strings of ``data`` (exactly ``count`` of them, if given)."""
    if not data.endswith(b"\0"):
        raise MilterProtocolError("a string without its NUL terminator")
    found = data[:-1].split(b"\0")
    if count is not None and len(found) != count:
        raise MilterProtocolError(f"{len(found)} strings where {count} belong")
    return found


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def macros(data: bytes) -> dict[str, str]:
    """SMFIC_MACRO: the command it is for, then name and value pairs (the command is not
    kept: a value is read where it is needed, whichever stage sent it)."""
    if not data:
        raise MilterProtocolError("MACRO without the command it is for")
    pairs = strings(data[1:]) if len(data) > 1 else []
    if len(pairs) % 2:
        raise MilterProtocolError("MACRO with a name and no value")
    return {text(pairs[i]): text(pairs[i + 1]) for i in range(0, len(pairs), 2)}


def client(data: bytes) -> Client:
    """SMFIC_CONNECT: host name, family ('4', '6', 'L' for a Unix socket, 'U' unknown),
    then for the first three a port and the address."""
    name_end = data.find(b"\0")
    if name_end < 0 or name_end + 1 >= len(data):
        raise MilterProtocolError("CONNECT without host name and family")
    hostname, family = text(data[:name_end]), data[name_end + 1 : name_end + 2]
    if family not in (b"4", b"6"):
        return Client(hostname, "")
    (address,) = strings(data[name_end + 4 :], 1)
    return Client(hostname, text(address))


def header(data: bytes) -> tuple[bytes, bytes]:
    """SMFIC_HEADER: the field's name and its value as sent (folded lines joined by LF)."""
    name, value = strings(data, 2)
    if not name:
        raise MilterProtocolError("HEADER without a name")
    return name, value


def reply_code(reply: str) -> bytes:
    # Sendmail reads the text as a format string and Postfix undoes that: a lone '%'
    # would be dropped, so it is doubled.
    return packet(REPLYCODE, reply.replace("%", "%%").encode("utf-8", "replace") + b"\0")


def insert_header(index: int, name: str, value: str) -> bytes:
    return packet(INSHEADER, struct.pack(">I", index) + _field(name, value))


def change_header(index: int, name: str, value: str) -> bytes:
    return packet(CHGHEADER, struct.pack(">I", index) + _field(name, value))


def add_header(name: str, value: str) -> bytes:
    return packet(ADDHEADER, _field(name, value))


def quarantine(reason: str) -> bytes:
    return packet(QUARANTINE, reason.encode("utf-8", "replace") + b"\0")


def _field(name: str, value: str) -> bytes:
    # Folded lines are joined by LF in the milter protocol, as the MTA sends them.
    value = value.replace("\r\n", "\n")
    return name.encode("ascii", "replace") + b"\0" + value.encode("utf-8", "replace") + b"\0"
