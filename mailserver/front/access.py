"""Who may send mail through the SMTP front, for whom, and who may say who sent it.

The client's address is checked against ``MAILSCAN_SMTP_ALLOW_NETWORKS`` when it connects,
before the greeting; each recipient against ``MAILSCAN_RELAY_DOMAINS`` at RCPT. A front
that relays to a next hop never starts open: ``check_exposure`` refuses the settings that
would let anyone who reaches its port send mail through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from tasks.errors import ConfigError
from tasks.network_parsers import Network, networks
from tasks.settings import Settings, env_name

log = logging.getLogger(__name__)

LOOPBACK = networks("127.0.0.0/8,::1")
CLIENT_REFUSED = "554 5.7.1 Access denied: this client may not send mail here"
AFTER_REFUSAL = "503 5.7.1 Access denied: only QUIT is taken"
CLOSING = "421 4.7.0 Too many commands from a refused client, closing"
RELAY_DENIED = "554 5.7.1 Relay access denied"
# A refused client gets this many answers, or this long between two commands, before the
# connection is closed: it must not hold a connection open for the session's whole timeout.
REFUSED_COMMANDS = 10
REFUSED_IDLE_S = 10.0


@dataclass(frozen=True)
class AccessPolicy:
    """The networks that may connect, the recipient domains taken (empty: all), and the
    networks that may name their own client with XFORWARD (mailserver/front/xforward.py)."""

    networks: tuple[Network, ...] = LOOPBACK
    relay_domains: tuple[str, ...] = ()
    xforward_networks: tuple[Network, ...] = LOOPBACK

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        allowed = settings.smtp_allow_networks or LOOPBACK
        return cls(allowed, settings.relay_domains, settings.xforward_networks)

    def allows_client(self, peer: Any) -> bool:
        """``peer``: the socket's peer name, ``(host, port, ...)``. Anything that is not an
        address we can read (a Unix socket, nothing at all) is refused."""
        address = client_address(peer)
        return address is not None and any(address in network for network in self.networks)

    def allows_xforward(self, peer: Any) -> bool:
        address = client_address(peer)
        return address is not None and any(address in net for net in self.xforward_networks)

    def relays_to(self, recipient: str) -> bool:
        """``example.com`` in the list takes that domain alone, ``.example.com`` every
        subdomain of it; the comparison is on the ASCII (IDNA) form, case aside. The bare
        ``postmaster`` (RFC 5321 4.5.1) is always taken: it is this host's own."""
        if not self.relay_domains:
            return True
        _, at, domain = recipient.rpartition("@")
        if not at:
            return recipient.lower() == "postmaster"
        name = _ascii_domain(domain)
        return name is not None and any(_covers(listed, name) for listed in self.relay_domains)


def client_address(peer: Any) -> IPv4Address | IPv6Address | None:
    """The client's address; an IPv4 client of a dual-stack socket as IPv4."""
    try:
        address = ip_address(peer[0])
    except (TypeError, IndexError, ValueError):
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _covers(listed: str, name: str) -> bool:
    return name == listed or (listed.startswith(".") and name.endswith(listed))


def _ascii_domain(domain: str) -> str | None:
    try:
        return domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:  # an address literal, an empty label, no domain at all
        return None


async def refuse_session(
    reader: asyncio.StreamReader, push: Callable[[str], Awaitable[None]], peer: Any
) -> None:
    """A client outside the allowed networks: 554 instead of the greeting, then 503 to
    every command until QUIT (RFC 5321 3.1), within a few commands (then 421) and seconds.
    Nothing it sends reaches a command; the caller closes the connection."""
    log.info("refused SMTP client %s: not in %s", peer, env_name("smtp_allow_networks"))
    await push(CLIENT_REFUSED)
    for _ in range(REFUSED_COMMANDS):
        line = await _next_line(reader)
        if line is None:
            return
        if line.strip().upper() == b"QUIT":
            await push("221 2.0.0 Bye")
            return
        await push(AFTER_REFUSAL)
    await push(CLOSING)


async def _next_line(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\n"), REFUSED_IDLE_S)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None


def check_exposure(settings: Settings) -> None:
    """Refuse to start a relaying front that anyone could send mail through.

    Raises ConfigError: it listens on more than loopback with no allow-list of its own, or
    its allow-list takes in every address while any recipient domain is taken."""
    if settings.delivery != "relay":
        return
    allowed = settings.smtp_allow_networks
    if allowed is None and not _is_loopback(settings.smtp_host):
        raise ConfigError(
            f"{env_name('delivery')}=relay and {env_name('smtp_host')}={settings.smtp_host!r} "
            f"(not loopback): set {env_name('smtp_allow_networks')} to the networks that may "
            "send mail through this front"
        )
    takes_all = allowed is not None and any(network.prefixlen == 0 for network in allowed)
    if takes_all and not settings.relay_domains:
        raise ConfigError(
            f"{env_name('smtp_allow_networks')} takes in every address and "
            f"{env_name('relay_domains')} is unset: with {env_name('delivery')}=relay "
            "this front would be an open relay; set the recipient domains it takes"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:  # a name, or "" for every interface
        return False
