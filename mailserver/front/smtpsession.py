"""The SMTP session: aiosmtpd's SMTP protocol class as the front runs it, within the
session limits, refusing clients outside the allow-list, taking XFORWARD from an MTA in
front, and reading DATA in pieces into the spool."""

from __future__ import annotations

import contextlib
import functools
import re
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, cast

from aiosmtpd.smtp import MISSING

from mailserver.front.access import AccessPolicy, refuse_session
from mailserver.front.datachecks import DataChecks, DataRules
from mailserver.front.dataclock import DataClock
from mailserver.front.dataphase import DATA_TIMED_OUT, read_data
from mailserver.front.limits import LimitedSMTP
from mailserver.front.xforward import HELO_FIRST, NOT_AUTHORIZED, ForwardingEnvelope
from mailserver.front.xforward import take as take_xforward

# <dot-atom@dot-atom> with a host name for the domain, then the parameters; the parser skips
# blanks and comments after ">", so a comment there is left to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(
    rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*((?:[^ \t(].*)?)",
    re.DOTALL,
)


class LenientSMTP(LimitedSMTP):
    """aiosmtpd's SMTP within the session limits (mailserver/front/limits.py), with six
    changes.

    A client outside the allowed networks (``access``) is refused before the greeting.

    DATA is read in large pieces (mailserver/front/dataphase.py), not line by line, and
    streamed to the handler's sink as it arrives (``open_message``), checked on the way
    (``data_rules``) and timed by a clock that moves with the data (``data_received``).
    The handler then answers for the whole message: ``handle_DATA(server, session,
    envelope, message)``, aiosmtpd's hook with the sink as one more argument.

    Addresses are parsed as aiosmtpd does, a little cheaper (``_getaddr``).

    Its command table is built per connection from a short listing (``__dir__``).

    An MTA in front may name its own client with XFORWARD (mailserver/front/xforward.py).
    """

    # The stream's buffer: a command line longer than this is refused with 500 (aiosmtpd's
    # own limits on commands are far lower), and DATA arrives in pieces of about this size,
    # so a session's buffer holds twice this at most. Long lines in DATA are another bound.
    line_length_limit = 64 * 1024

    def __init__(
        self,
        handler: Any,
        *,
        access: AccessPolicy | None = None,
        data_rules: DataRules | None = None,
        **kwargs: Any,
    ):
        super().__init__(handler, **kwargs)
        self.access = access
        self.data_rules = data_rules or DataRules()
        self._data_clock: DataClock | None = None

    def data_received(self, data: bytes) -> None:
        if self._data_clock is not None:
            self._data_clock.arrived(len(data))
        super().data_received(data)

    async def _handle_client(self) -> None:
        assert self.session is not None
        if self.access is None or self.access.allows_client(self.session.peer):
            await super()._handle_client()
            return
        try:
            with contextlib.suppress(ConnectionError):  # the client left first
                await refuse_session(self._reader, self.push, self.session.peer)
        finally:
            if self.transport is not None:
                self.transport.close()

    async def smtp_XFORWARD(self, arg: str) -> None:
        assert self.session is not None
        assert self.envelope is not None
        if self.access is None or not self.access.allows_xforward(self.session.peer):
            await self.push(NOT_AUTHORIZED)
        elif not self.session.host_name:
            await self.push(HELO_FIRST)
        else:
            await self.push(take_xforward(cast(ForwardingEnvelope, self.envelope), arg or ""))

    def _create_envelope(self) -> ForwardingEnvelope:
        return ForwardingEnvelope()

    async def smtp_DATA(self, arg: str) -> None:
        if await self._refuse_data(arg):
            return
        assert self.session is not None
        assert self.envelope is not None
        message = await self.event_handler.open_message(self.session, self.envelope)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # aiosmtpd's timer since the last command waits until the reply: the data clock
        # keeps the DATA phase's time, and the handler its own deadlines after it.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            status = await self._read_message(message)
            if not status:  # the handler's answer for the whole message (aiosmtpd's hook)
                status = await self._call_handler_hook("DATA", message)
        except Exception:
            self._reset_timeout()  # aiosmtpd answers it (handle_exception); the session goes on
            raise
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
        self._reset_timeout()  # not for a connection gone: its timer would find no transport
        if status == DATA_TIMED_OUT and self.transport is not None:
            self.transport.close()

    async def _read_message(self, message: Any) -> str:
        """The DATA into ``message``: the refusal to answer, "" for a whole message. What a
        refusal kept is discarded."""
        self._data_clock = DataClock(self.data_rules, self.loop)
        checks = DataChecks(self.data_rules, self.data_size_limit)
        try:
            refusal = await read_data(self._reader, message, checks, self._data_clock)
        except TimeoutError:
            refusal = DATA_TIMED_OUT
        except BaseException:  # the connection went away during DATA
            await message.discard()
            raise
        finally:
            self._data_clock = None
        if refusal:
            await message.discard()
        return refusal

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ finds its command and AUTH methods by listing dir(self), with a
        # getattr of every name, for each connection: a large share of a session. Only those
        # names are looked for there, so only those are listed (once per class).
        return _method_names(type(self))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own parsing, without the typing Protocol class it defines on every call
        # (a class created for each MAIL and RCPT). A plain <local@domain> is matched by a
        # pattern, far cheaper than the email package's parser; anything else goes to it.
        if not arg:
            return "", ""
        plain = _PLAIN_ADDRESS.fullmatch(arg)
        if plain:
            addr, rest = plain.groups()
        else:
            try:
                parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
                address, rest = parse(arg)
            except HeaderParseError:
                return None, None
            addr = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    async def _refuse_data(self, arg: str) -> bool:
        """The checks aiosmtpd makes before it accepts DATA, with its replies."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return True
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return True
        if arg:
            await self.push("501 Syntax: DATA")
            return True
        return False


@functools.cache
def _method_names(cls: type) -> list[str]:
    return [name for name in dir(cls) if name.startswith(("smtp_", "auth_"))]
