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
from typing import Any

import redis
from aiosmtpd.smtp import MISSING, SMTP

from mailserver.front.datachecks import DataChecks, DataRules
from mailserver.front.dataclock import DataClock
from mailserver.front.dataphase import DATA_TIMED_OUT, read_data
from mailserver.front.delivery import delivery_for
from mailserver.front.metrics import serve_metrics
from mailserver.front.pipeline import Pipeline
from mailserver.front.quarantine import Quarantine
from mailserver.front.redrive import Redriver
from mailserver.front.smtp import ScanHandler
from mailserver.front.spool import Spool
from mailserver.front.spoolreport import SpoolReporter
from mailserver.front.verdicts import VerdictWaiter
from tasks import redisauth
from tasks.celery import app
from tasks.errors import ConfigError
from tasks.redisauth import client_url, masked
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
    waiter = VerdictWaiter(client_url(settings), app.backend.decode_result)
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


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT. Spooled mail not yet finished stays for the next start."""
    pipeline, waiter = build_pipeline(settings, check_redis(settings))
    if cleared := pipeline.spool.clear_staging():
        log.warning("removed %d unconfirmed spool entries a stop left in tmp/", cleared)
    pipeline.handover.retries.drop_orphans(set(pipeline.spool.pending()))
    await waiter.start()
    try:
        await _serve_until_stopped(settings, pipeline)
    finally:
        if not await asyncio.to_thread(pipeline.spool.drain):
            log.warning("finished spool entries not all removed: the next start re-drives them")
        # On a failed start-up too: uvloop does not end a subscriber left to the loop's own
        # shutdown, and the process would hang instead of exiting with its one clear line.
        await waiter.close()


async def _serve_until_stopped(settings: Settings, pipeline: Pipeline) -> None:
    redriver = Redriver(pipeline.spool, pipeline, settings.redrive_interval_s)
    handler = ScanHandler(pipeline, pipeline.spool, redriver, settings.mode == "post-queue")
    server = await _listen(settings, handler)
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
        server.close()
        raise
    redrive = asyncio.create_task(redriver.run(reporter), name="redriver")
    recorder = asyncio.create_task(pipeline.outcomes.run(), name="outcomes")
    log.info(
        "SMTP front listening on %s:%s (%s)", settings.smtp_host, settings.smtp_port, settings.mode
    )
    try:
        await _until_stopped()
    finally:
        server.close()
        redrive.cancel()
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder  # writes what the last quarter second added


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


class LenientSMTP(SMTP):
    """aiosmtpd's SMTP with three changes.

    DATA is read in large pieces (mailserver/front/dataphase.py), not line by line, and
    streamed to the handler's sink as it arrives (``open_message``), checked on the way
    (``data_rules``) and timed by a clock that moves with the data (``data_received``).
    The handler then answers for the whole message: ``handle_DATA(server, session,
    envelope, message)``, aiosmtpd's hook with the sink as one more argument.

    Addresses are parsed as aiosmtpd does, a little cheaper (``_getaddr``).

    Its command table is built per connection from a short listing (``__dir__``).
    """

    # The stream's buffer: a command line longer than this is refused with 500 (aiosmtpd's
    # own limits on commands are far lower), and DATA arrives in pieces of about this size,
    # so a session's buffer holds twice this at most. Long lines in DATA are another bound.
    line_length_limit = 64 * 1024

    def __init__(self, handler: Any, *, data_rules: DataRules | None = None, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.data_rules = data_rules or DataRules()
        self._data_clock: DataClock | None = None

    def data_received(self, data: bytes) -> None:
        if self._data_clock is not None:
            self._data_clock.arrived(len(data))
        super().data_received(data)

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


async def _listen(settings: Settings, handler: ScanHandler) -> asyncio.Server:
    rules = DataRules.of(settings)

    def factory() -> SMTP:
        return LenientSMTP(
            handler,
            data_size_limit=settings.max_message_bytes,
            data_rules=rules,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            ident="mailscan ESMTP",
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
