"""What a client may say in HELO/EHLO, MAIL and RCPT, checked before anything is taken.

A HELO name goes into our ``Received`` line, which SpamAssassin reads to find the client's
address: it must be a host name or an address literal, nothing that could pass for the
bracketed address of the real peer. Envelope addresses go into commands to the next hop and
into ``Return-Path``: no control characters ever, and beyond ASCII only under SMTPUTF8
(RFC 6531), in UTF-8.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address

from mailserver.front.fieldtext import has_controls

NOT_UTF8_ENVELOPE = "553 5.6.7 Non-ASCII address without SMTPUTF8 on MAIL FROM"
NOT_UTF8_BYTES = "553 5.6.7 Address is not valid UTF-8"
CONTROL_IN_ADDRESS = "553 5.1.3 Control characters in address"
# Host names are letters, digits and inner hyphens (RFC 1123); the underscore is taken too,
# as Postfix takes it, since Windows hosts often greet with one.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAX_NAME = 255


def helo_refusal(verb: str, name: str) -> str | None:
    """The 501 for a HELO/EHLO argument that is neither a host name nor an address
    literal; None when it is one."""
    if is_host_name(name) or literal_address(name) is not None:
        return None
    return f"501 5.5.2 Syntax: {verb} hostname"


def is_host_name(name: str) -> bool:
    """Dot-separated labels; the last one not all digits (a top-level domain never is), so a
    bare IPv4 address is no host name: an address is given as a literal, ``[192.0.2.1]``."""
    if not name or len(name) > _MAX_NAME or not name.isascii():
        return False
    labels = name.removesuffix(".").split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def literal_address(name: str) -> IPv4Address | IPv6Address | None:
    """The address of an address literal (RFC 5321 4.1.3), ``[192.0.2.1]`` or
    ``[IPv6:2001:db8::1]``; None for anything else."""
    if not (name.startswith("[") and name.endswith("]")):
        return None
    inner = name[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return IPv6Address(inner[5:])
        return IPv4Address(inner)
    except ValueError:
        return None


def received_helo(helo: str) -> str:
    """The HELO name as our ``Received`` line writes it: a host name as given, an address
    literal without its brackets (the first bracketed address of the line is always the
    peer's), anything else as ``unknown``."""
    if is_host_name(helo):
        return helo
    literal = literal_address(helo)
    if literal is None:
        return "unknown"
    return f"IPv6:{literal}" if literal.version == 6 else str(literal)


def peer_literal(peer_ip: str) -> str | None:
    """The peer's address as the inside of an address literal: an IPv4 client of a dual-stack
    socket as IPv4, IPv6 with its tag, as Postfix writes them; None when it is no address."""
    try:
        address = ip_address(peer_ip)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return f"IPv6:{address}" if address.version == 6 else str(address)


def address_refusal(address: str, smtputf8: bool) -> str | None:
    """The 553 for an envelope address we must not take; None when it may be taken.

    aiosmtpd decodes a command as UTF-8 and keeps bytes that are not as surrogates, so such
    an address cannot be encoded back to UTF-8."""
    if has_controls(address):
        return CONTROL_IN_ADDRESS
    if address.isascii():
        return None
    if not smtputf8:
        return NOT_UTF8_ENVELOPE
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return NOT_UTF8_BYTES
    return None
