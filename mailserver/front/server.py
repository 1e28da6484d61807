"""The mailserver process: the SMTP front, the verdict subscriber and the redriver on one
event loop. Start-up checks the configuration and Redis and fails with one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, cast

import redis
from aiosmtpd.smtp import MISSING, SMTP

from mailserver.front.access import AccessPolicy, check_exposure, refuse_session
from mailserver.front.dataphase import read_data
from mailserver.front.delivery import delivery_for
from mailserver.front.limits import LimitedSMTP, SessionLimits, gate_for
from mailserver.front.metrics import serve_metrics
from mailserver.front.pipeline import Pipeline
from mailserver.front.quarantine import Quarantine
from mailserver.front.redrive import Redriver
from mailserver.front.smtp import ScanHandler
from mailserver.front.spool import Spool
from mailserver.front.spoolreport import SpoolReporter
from mailserver.front.tls import StartTLS
from mailserver.front.verdicts import VerdictWaiter
from mailserver.front.xforward import HELO_FIRST, NOT_AUTHORIZED, ForwardingEnvelope
from mailserver.front.xforward import take as take_xforward
from mailserver.milter.server import listen_milter
from tasks import redisauth
from tasks.celery import app
from tasks.errors import ConfigError
from tasks.redisauth import masked
from tasks.settings import Settings

log = logging.getLogger(__name__)


def check_redis(settings: Settings) -> redis.Redis:
    client = redisauth.connect(settings, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as err:
        raise ConfigError(f"cannot reach Redis at {masked(settings.redis_url)}: {err}") from err
    return client


def build_pipeline(settings: Settings, client: redis.Redis) -> tuple[Pipeline, VerdictWaiter]:
    waiter = VerdictWaiter(redisauth.connect_async(settings), app.backend.decode_result)
    pipeline = Pipeline(
        settings,
        app,
        Spool(settings.spool_dir),
        client,
        waiter,
        delivery_for(settings),
        Quarantine(settings.quarantine_dir),
    )
    return pipeline, waiter


async def serve(settings: Settings, smtp: bool = True) -> None:
    """Run until SIGTERM or SIGINT. Spooled mail not yet finished stays for the next start.
    ``smtp``: the SMTP front listens; the milter front does unless ``MAILSCAN_MILTER=off``."""
    if not smtp and settings.milter is None:
        raise ConfigError("MAILSCAN_MILTER is off: the milter front has nothing to serve")
    check_exposure(settings)
    pipeline, waiter = build_pipeline(settings, check_redis(settings))
    if cleared := pipeline.spool.clear_staging():
        log.warning("removed %d unconfirmed spool entries a stop left in tmp/", cleared)
    pipeline.handover.retries.drop_orphans(set(pipeline.spool.pending()))
    await waiter.start()
    try:
        await _serve_until_stopped(settings, pipeline, smtp)
    finally:
        if not await asyncio.to_thread(pipeline.spool.drain):
            log.warning("finished spool entries not all removed: the next start re-drives them")
        # On a failed start-up too: uvloop does not end a subscriber left to the loop's own
        # shutdown, and the process would hang instead of exiting with its one clear line.
        await waiter.close()


async def _serve_until_stopped(settings: Settings, pipeline: Pipeline, smtp: bool) -> None:
    redriver = Redriver(pipeline.spool, pipeline, settings.redrive_interval_s)
    servers = await _listen_all(settings, pipeline, redriver, smtp)
    try:
        reporter = SpoolReporter(
            pipeline.redis,
            settings.hostname,
            settings.spool_alarm_age_s,
            pipeline.sharing,
            lambda: pipeline.waiter.alive,
            pipeline.handover.dead,
        )
        _serve_metrics(pipeline.redis, settings, reporter)
    except BaseException:
        for server in servers:
            server.close()
        raise
    redrive = asyncio.create_task(redriver.run(reporter), name="redriver")
    recorder = asyncio.create_task(pipeline.outcomes.run(), name="outcomes")
    message_log = asyncio.create_task(pipeline.messages.run(), name="messagelog")
    try:
        await _until_stopped()
    finally:
        for server in servers:
            server.close()
        redrive.cancel()
        recorder.cancel()
        message_log.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder  # writes what the last quarter second added
        with contextlib.suppress(asyncio.CancelledError):
            await message_log  # the journal's last lines, if the database is there


async def _listen_all(
    settings: Settings, pipeline: Pipeline, redriver: Redriver, smtp: bool
) -> list[asyncio.Server]:
    servers = []
    try:
        if smtp:
            post_queue, access = settings.mode == "post-queue", AccessPolicy.from_settings(settings)
            handler = ScanHandler(pipeline, pipeline.spool, redriver, post_queue, access)
            servers.append(await _listen(settings, handler))
            log.info("SMTP front listening on %s:%s (%s)", settings.smtp_host,
                     settings.smtp_port, settings.mode)  # fmt: skip
        if settings.milter is not None:
            servers.append(await listen_milter(settings.milter, pipeline, redriver))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def _serve_metrics(client: redis.Redis, settings: Settings, reporter: SpoolReporter) -> None:
    try:
        serve_metrics(client, settings, reporter, reporter.subscriber_alive)
    except OSError as err:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise ConfigError(f"cannot serve metrics on {where}: {err.strerror}") from err


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

    RFC 5321 limits a line to 1000 octets, but real mail carries longer ones and the MTAs
    in front of us pass them on: a content filter that refused them would bounce legitimate
    mail (seen in the SpamAssassin corpus). A generous bound still caps a command line; in
    DATA the message size limit caps memory.

    DATA is read in large pieces (mailserver/front/dataphase.py), not line by line.

    Addresses are parsed as aiosmtpd does, a little cheaper (``_getaddr``).

    Its command table is built per connection from a short listing (``__dir__``).

    An MTA in front may name its own client with XFORWARD (mailserver/front/xforward.py).
    """

    line_length_limit = 1024 * 1024

    def __init__(self, handler: Any, *, access: AccessPolicy | None = None, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.access = access

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
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            read = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection went away during DATA
            raise
        if read.too_big:
            self._set_post_data_state()
            await self.push("552 Error: Too much mail data")
            return
        assert self.envelope is not None
        self.envelope.content = self.envelope.original_content = read.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

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


async def _listen(settings: Settings, handler: ScanHandler) -> asyncio.Server:
    starttls = StartTLS.from_settings(settings)  # loaded once: a bad pair stops the start
    limits, gate = SessionLimits.from_settings(settings), gate_for(settings)

    def factory() -> SMTP:
        return starttls.guard(
            LenientSMTP(
                handler,
                access=handler.access,
                limits=limits,
                gate=gate,
                data_size_limit=settings.max_message_bytes,
                enable_SMTPUTF8=True,
                hostname=settings.hostname,
                ident="mailscan ESMTP",
                tls_context=starttls.context,
            )
        )

    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(factory, host=settings.smtp_host, port=settings.smtp_port)
    except OSError as err:
        where = f"{settings.smtp_host}:{settings.smtp_port}"
        # uvloop's strerror repeats the address: the errno's own text reads better.
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise ConfigError(f"cannot listen for SMTP on {where}: {reason}") from err


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
