"""XFORWARD: an MTA in front of us (Postfix's ``content_filter``) says who its client was.

Behind Postfix every message comes from Postfix itself, on loopback: our ``Received`` line
would name it, and SpamAssassin would see a chain of trusted hops with no client at all.
With XFORWARD (Postfix's XFORWARD_README) Postfix sends the original client's name,
address, protocol and HELO before each MAIL; they take the place of the peer's in what we
write and scan, as amavisd-new does. Only clients in ``MAILSCAN_XFORWARD_NETWORKS`` are
offered the command and may use it: anyone else could make their mail look as if it came
from anywhere.

The attributes hold for one mail transaction; values are xtext (RFC 3461 4) and
``[UNAVAILABLE]`` or ``[TEMPUNAVAIL]`` stand for "not known".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_address

from aiosmtpd.smtp import Envelope

ATTRIBUTES = ("NAME", "ADDR", "PROTO", "HELO", "SOURCE")
EHLO_LINE = "250-XFORWARD " + " ".join(ATTRIBUTES)
OK = "250 2.0.0 Ok"
NOT_AUTHORIZED = "550 5.7.0 Error: insufficient authorization"
HELO_FIRST = "503 5.5.1 Error: send HELO/EHLO first"
IN_TRANSACTION = "503 5.5.1 Error: MAIL transaction in progress"
SYNTAX = "501 5.5.4 Syntax: XFORWARD attribute=value..."
BAD_NAME = "501 5.5.4 Bad XFORWARD attribute name"
BAD_ADDRESS = "501 5.5.4 Bad XFORWARD address syntax"
UNKNOWN_VALUES = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
# A value is one attribute's; no SMTP client sends a longer one.
VALUE_MAX = 255
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")


@dataclass
class Forwarded:
    """What the MTA in front told of its client; None where it did not say or did not
    know."""

    values: dict[str, str] = field(default_factory=dict)

    def update(self, read: dict[str, str | None]) -> None:
        """A later XFORWARD adds to the earlier ones; "not known" forgets what was said."""
        for name, value in read.items():
            if value is None:
                self.values.pop(name, None)
            else:
                self.values[name] = value

    @property
    def addr(self) -> str | None:
        return self.values.get("ADDR")

    @property
    def helo(self) -> str | None:
        return self.values.get("HELO")

    @property
    def name(self) -> str | None:
        return self.values.get("NAME")


@dataclass(frozen=True)
class Client:
    """The client a message is written and scanned as coming from."""

    address: str
    helo: str
    name: str = ""


def client_of(peer_address: str, helo: str, forwarded: Forwarded | None) -> Client:
    """The peer, unless XFORWARD named another client: then that one, wholly (none of the
    MTA's own HELO is taken for its client's)."""
    if forwarded is None or not forwarded.values:
        return Client(peer_address, helo)
    return Client(forwarded.addr or peer_address, forwarded.helo or "", forwarded.name or "")


class ForwardingEnvelope(Envelope):
    """aiosmtpd's envelope with what XFORWARD said: made new at each transaction's end,
    RSET and HELO, so the attributes last one transaction, as XFORWARD's do."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded = Forwarded()


def take(envelope: ForwardingEnvelope, arg: str) -> str:
    """Read one XFORWARD command's ``ATTR=value`` pairs into ``envelope``; the reply. The
    caller has checked that the client may send it."""
    if envelope.mail_from is not None:
        return IN_TRANSACTION
    pairs = [pair.partition("=") for pair in arg.split()]
    if not pairs or any(not sep for _, sep, _ in pairs):
        return SYNTAX
    read: dict[str, str | None] = {}
    for name, _, raw in pairs:
        name = name.upper()
        if name not in ATTRIBUTES:
            return BAD_NAME
        read[name] = _value(raw)
        if name == "ADDR" and read[name] is not None:
            read[name] = address(read[name] or "")
            if read[name] is None:
                return BAD_ADDRESS
    envelope.forwarded.update(read)
    return OK


def address(value: str) -> str | None:
    """The address an ADDR value names (``IPv6:`` before an IPv6 one, as Postfix writes
    it), written plainly; None when it names none."""
    plain = value[5:] if value[:5].lower() == "ipv6:" else value
    try:
        return str(ip_address(plain))
    except ValueError:
        return None


def _value(raw: str) -> str | None:
    """The xtext-decoded value; None for "not known", or for one no client would send."""
    if raw in UNKNOWN_VALUES or len(raw) > VALUE_MAX * 3:
        return None
    value = _XTEXT_HEX.sub(lambda hexed: chr(int(hexed.group(1), 16)), raw)
    if not value or len(value) > VALUE_MAX or not value.isprintable():
        return None
    return value
