"""How many SMTP connections the front holds at once: in all, and from one client address.

One gate serves every connection of a listening front. The event loop runs the protocols'
callbacks one at a time, so the counts need no lock. A connection is counted from its
admission until it is lost; a refused one is never counted.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address, try again later"


class ConnectionGate:
    """Admits a connection while both counts are below their limits; ``admit`` gives the
    reply for a refused one, ``release`` ends an admitted one."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections, self.max_per_client = max_connections, max_per_client
        self._per_client: Counter[str] = Counter()
        self._total = 0

    def admit(self, client: str) -> str | None:
        """Count the connection and return None, or return the 421 that refuses it."""
        if self._total >= self.max_connections:
            return TOO_MANY_CONNECTIONS
        if self._per_client[client] >= self.max_per_client:
            return TOO_MANY_FROM_CLIENT
        self._per_client[client] += 1
        self._total += 1
        return None

    def release(self, client: str) -> None:
        self._total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]  # a client gone leaves nothing behind

    @property
    def total(self) -> int:
        return self._total

    def of(self, client: str) -> int:
        return self._per_client.get(client, 0)


def client_address(peername: object) -> str:
    """The address a connection is counted under: the peer's IP, an IPv4 client reaching
    an IPv6 socket under its IPv4 address (else it would count apart from itself)."""
    if not isinstance(peername, tuple) or not peername:
        return ""
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except ValueError:
        return str(peername[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)
