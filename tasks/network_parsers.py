"""How the network settings' text becomes typed values: networks for allow-lists, domain
names for relay domains. Each parser raises ValueError with a sentence saying what is
accepted."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network, ip_network

from tasks.setting_parsers import optional_names

Network = IPv4Network | IPv6Network
# One label of a domain name: letters, digits and inner hyphens (RFC 1035 and 1123).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def networks(text: str) -> tuple[Network, ...]:
    """Comma-separated networks in CIDR notation or single addresses, IPv4 or IPv6."""
    found = []
    for item in optional_names(text):
        try:
            found.append(ip_network(item))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a network: give CIDR such as 192.0.2.0/24 (no host bits "
                "set) or a single address such as 192.0.2.7 or ::1"
            ) from None
    if not found:
        raise ValueError("must list at least one network or address")
    return tuple(found)


def networks_or_none(text: str) -> tuple[Network, ...]:
    """``networks``, or ``none`` for no network at all."""
    return () if text.strip().lower() == "none" else networks(text)


def domains(text: str) -> tuple[str, ...]:
    """Comma-separated domain names, lower-cased and in ASCII (IDNA); a leading dot stands
    for every subdomain of the name."""
    return tuple(_domain(item) for item in optional_names(text))


def _domain(item: str) -> str:
    dot, name = ("." if item.startswith(".") else ""), item.removeprefix(".").rstrip(".")
    try:
        name = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{item!r} is not a domain name (e.g. example.com, or .example.com)")
    return dot + name
