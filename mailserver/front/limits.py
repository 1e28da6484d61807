"""The limits of one SMTP session at the edge, on top of aiosmtpd's SMTP.

A client may hold a connection only while it is admitted (mailserver/front/connections.py),
within an idle timeout per command and a deadline for the whole session, and may send a
bounded number of commands, recipients and errors. Past a limit it hears a 421 and the
connection is closed; only the 452 for one recipient too many leaves the session going
(RFC 5321 4.5.3.1.10: the client sends those recipients again in another transaction).

aiosmtpd provides the per-command budgets (``command_call_limit``: past one it answers
``421 4.7.0 <COMMAND> sent too many times`` and closes), a budget of five unknown commands
(its reply is turned into a 421 here), and one timer it restarts at each known command; the
rest is ours. A 421 ends the session at once: whatever the client pipelined behind the
command is never read.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import SMTP, syntax

from mailserver.front.connections import ConnectionGate, client_address
from tasks.settings import Settings

log = logging.getLogger(__name__)

TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
TOO_MANY_UNKNOWN = "421 4.7.0 Too many unrecognized commands, closing connection"
IDLE_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
SESSION_TIMEOUT = "421 4.4.2 Session timeout, closing connection"
# aiosmtpd's own words past its unknown-command budget: a 5xx that also closes.
AIOSMTPD_TOO_MANY_UNKNOWN = "502 5.5.1 Too many unrecognized commands, goodbye."

# The commands of a mail transaction: a client that keeps its connection for many messages
# (an MTA's connection cache) sends them once per message, the others once per session.
# XFORWARD comes before each MAIL from an MTA in front (mailserver/front/xforward.py).
TRANSACTION_COMMANDS = ("MAIL", "RCPT", "DATA", "RSET", "XFORWARD")


@dataclass(frozen=True)
class SessionLimits:
    """Each session's limits, from the settings."""

    max_recipients: int
    max_commands: int
    max_other_commands: int
    max_errors: int
    command_timeout_s: float
    session_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionLimits:
        return cls(
            max_recipients=settings.smtp_max_recipients,
            max_commands=settings.smtp_max_commands,
            max_other_commands=settings.smtp_max_other_commands,
            max_errors=settings.smtp_max_errors,
            command_timeout_s=settings.smtp_command_timeout_s,
            session_timeout_s=settings.smtp_session_timeout_s,
        )

    def call_limits(self) -> dict[str, int]:
        """aiosmtpd's ``command_call_limit``: per command name, ``*`` for every other name."""
        return {**dict.fromkeys(TRANSACTION_COMMANDS, self.max_commands),
                "*": self.max_other_commands}  # fmt: skip


def gate_for(settings: Settings) -> ConnectionGate:
    return ConnectionGate(settings.smtp_max_connections, settings.smtp_max_connections_per_client)


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP within the session limits. Built alone (tests), with the default
    settings' limits and a gate of its own."""

    def __init__(
        self,
        handler: Any,
        *,
        limits: SessionLimits | None = None,
        gate: ConnectionGate | None = None,
        **kwargs: Any,
    ) -> None:
        self._limits = limits or SessionLimits.from_settings(Settings())
        self._gate = gate or gate_for(Settings())
        super().__init__(
            handler,
            timeout=self._limits.command_timeout_s,
            command_call_limit=self._limits.call_limits(),
            **kwargs,
        )
        self._admitted: str | None = None  # the client address its gate counts
        self._refusal: str | None = None
        self._session_ends_at = math.inf
        self._timeout_reply = IDLE_TIMEOUT
        self._errors = 0
        self._abort_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # the connection itself, not the TLS layer put over it
            self._session_ends_at = self.loop.time() + self._limits.session_timeout_s
            client = client_address(transport.get_extra_info("peername"))
            self._refusal = self._gate.admit(client)
            self._admitted = None if self._refusal else client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted is not None:
            self._gate.release(self._admitted)
            self._admitted = None
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refusal:
            self._end_session(self._refusal)  # in place of the greeting
            return
        await super()._handle_client()

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if self.envelope and len(self.envelope.rcpt_tos) >= self._limits.max_recipients:
            await self.push(TOO_MANY_RECIPIENTS)
            return
        await super().smtp_RCPT(arg)

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        farewell = self._farewell(text)
        if farewell:
            self._end_session(farewell)
            return
        await super().push(status)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":
            self._errors = 0  # a message came whole: the client is not lost in errors
        # Our own work (the scan a pre-queue client waits for) is not the client idling:
        # the timer stops until the reply is on its way, then the client has a full period.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            if self.transport is not None:  # else the client left while we worked
                self._reset_timeout()

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd arms its one timer here, at the connection and at each known command:
        # it also keeps the session's deadline, whichever comes first. (Not through
        # aiosmtpd's own, which takes a wait of 0 for "the usual".)
        idle_s = duration or self._timeout_duration
        left_s = self._session_ends_at - self.loop.time()
        self._timeout_reply = SESSION_TIMEOUT if left_s <= idle_s else IDLE_TIMEOUT
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        self._timeout_handle = self.loop.call_later(max(min(idle_s, left_s), 0.0), self._timeout_cb)

    def _timeout_cb(self) -> None:
        self._end_session(self._timeout_reply)

    def _farewell(self, reply: str) -> str | None:
        """The 421 that ends the session instead of ``reply``, if it must end: ``reply`` is
        one, or aiosmtpd's farewell to unknown commands, or an error past the budget."""
        if reply.startswith("421"):
            return reply
        if reply == AIOSMTPD_TOO_MANY_UNKNOWN:
            return TOO_MANY_UNKNOWN
        if reply.startswith("5"):
            if self._errors >= self._limits.max_errors:
                return TOO_MANY_ERRORS
            self._errors += 1
        return None

    def _end_session(self, farewell: str) -> None:
        """Send the 421 and close. The session's task reads nothing more (aiosmtpd's own
        closes go on reading what was pipelined until the connection is lost)."""
        # uvloop's transports are no asyncio.Transport subclasses, but have their methods.
        transport = cast(asyncio.Transport | None, self.transport)
        if transport is not None and not transport.is_closing():
            log.info("%r %s", self.session and self.session.peer, farewell)
            transport.write(farewell.encode("utf-8") + b"\r\n")
            transport.close()
            # close() waits until the reply is sent: a client that reads nothing would
            # keep its connection (and its place at the gate) for ever.
            self._abort_handle = self.loop.call_later(self._timeout_duration, transport.abort)
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
