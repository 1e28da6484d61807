"""The mailserver process: the SMTP front, the verdict subscriber and the redriver on one
event loop. Start-up checks the configuration and Redis and fails with one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

import redis
from aiosmtpd.smtp import SMTP

from mailserver.front.access import AccessPolicy, check_exposure
from mailserver.front.datachecks import DataRules
from mailserver.front.delivery import delivery_for
from mailserver.front.limits import SessionLimits, gate_for
from mailserver.front.metrics import serve_metrics
from mailserver.front.pipeline import Pipeline
from mailserver.front.quarantine import Quarantine
from mailserver.front.redrive import Redriver
from mailserver.front.smtp import ScanHandler
from mailserver.front.smtpsession import LenientSMTP
from mailserver.front.spool import Spool
from mailserver.front.spoolreport import SpoolReporter
from mailserver.front.tls import StartTLS
from mailserver.front.verdicts import VerdictWaiter
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
    pipeline.policies.write_state(error="")  # says to `mailscan reload` whom to signal
    try:
        await _serve_until_stopped(settings, pipeline, smtp)
    finally:
        pipeline.policies.forget_state()
        if not await asyncio.to_thread(pipeline.spool.drain):
            log.warning("finished spool entries not all removed: the next start re-drives them")
        await asyncio.to_thread(pipeline.handover.delivery.close)
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
        await _until_stopped(pipeline.policies.reload)
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


async def _listen(settings: Settings, handler: ScanHandler) -> asyncio.Server:
    rules = DataRules.of(settings)
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
                data_rules=rules,
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


async def _until_stopped(reload: Callable[[], bool]) -> None:
    """Until SIGTERM or SIGINT; SIGHUP reloads the policy file meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
