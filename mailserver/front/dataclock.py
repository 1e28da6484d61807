"""The DATA phase's clock: it moves with the data, so a slow sender that keeps sending
finishes, and one that stalls or only trickles is cut off.

As Postfix's ``smtpd_min_data_rate``: the phase starts with ``idle_timeout_s`` of credit;
time spent uses it up, and every byte received adds ``1 / min_rate_bytes_per_s`` seconds,
never more than ``idle_timeout_s`` in all. A sender that goes silent has that long; one
sending at the minimum rate or faster never runs out, whatever the message's size; one
slower runs out in proportion. The credit is moved on by ``arrived``, which the SMTP
protocol calls for each read from the socket (a piece of the DATA reader may span many).
"""

from __future__ import annotations

import asyncio

from mailserver.front.datachecks import DataRules


class DataClock:
    """When the DATA phase runs out of time (``expires_at``, on the event loop's clock)."""

    def __init__(self, rules: DataRules, loop: asyncio.AbstractEventLoop) -> None:
        self.idle_s, self.rate = rules.idle_timeout_s, rules.min_rate_bytes_per_s
        self.loop = loop
        self._at = loop.time()
        self._credit_s = self.idle_s

    def arrived(self, size: int) -> None:
        now = self.loop.time()
        credit = self._credit_s - (now - self._at) + size / self.rate
        self._credit_s, self._at = min(self.idle_s, credit), now

    def expires_at(self) -> float:
        return self._at + self._credit_s

    def expired(self) -> bool:
        return self.loop.time() >= self.expires_at()
