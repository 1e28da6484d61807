"""The SMTP front: translates the protocol into a spool entry and a scan, and back into a
reply code. Nothing here blocks the event loop; no exception text ever reaches a client."""

from __future__ import annotations

import asyncio
import logging
import time

from aiosmtpd.smtp import SMTP, Envelope, Session
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from mailserver.front.admission import BacklogGauge
from mailserver.front.pipeline import Pipeline
from mailserver.front.redrive import Redriver
from mailserver.front.spool import Envelope as SpoolEnvelope
from mailserver.front.spool import Spool, SpoolEntry, boot_id, new_id
from mailserver.front.staging import StagedMessage
from tasks.errors import SpoolWriteFailed

log = logging.getLogger(__name__)

SPOOL_FAILED = "451 4.3.0 Could not store the message, try again later"
BROKER_AWAY = "451 4.3.0 Scanner queue unavailable, try again later"
INTERNAL_ERROR = "451 4.3.0 Temporary server error, try again later"
BUSY = "451 4.3.2 Scanners busy, try again later"


class ScanHandler:
    """aiosmtpd handler: spool first, then scan (pre-queue) or hand to the redriver (post)."""

    def __init__(self, pipeline: Pipeline, spool: Spool, redriver: Redriver, post_queue: bool):
        self.pipeline, self.spool, self.redriver = pipeline, spool, redriver
        self.post_queue = post_queue
        self.backlog = BacklogGauge(pipeline.backlog)

    async def open_message(self, session: Session, envelope: Envelope) -> StagedMessage:
        """Where the message goes while its DATA arrives: its spool entry under ``tmp/``.
        Its id and ``received_at`` are those of the DATA command (Postfix's Received line
        also has the time the data started)."""
        spool_envelope = SpoolEnvelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            peer_ip=str(session.peer[0]) if session.peer else "",
            helo=session.host_name or "",
            received_at=time.time(),
            sender_waiting_boot="" if self.post_queue else boot_id(),
        )
        return StagedMessage(self.spool, new_id(), spool_envelope)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope, message: StagedMessage
    ) -> str:
        """The reply for a message whose data has ended whole into ``message``."""
        if not self.post_queue and await self._overloaded():
            await message.discard()
            return BUSY
        if not await message.close():  # the spool could not take it (logged)
            await message.discard()
            return SPOOL_FAILED
        if self.post_queue:
            return await self._queue(message)
        # Claimed before the file is listed: the redriver lists the spool on its own, and an
        # entry it saw before this session claimed it would be scanned and delivered twice.
        self.redriver.hold(message.id)
        try:
            # Made durable while it waits and is scanned; nothing is decided or confirmed before.
            settling = asyncio.ensure_future(asyncio.to_thread(self.spool.settle, message.id))
            return await self._scan_in_turn(message, settling)
        finally:
            self.redriver.release(message.id)

    async def _queue(self, message: StagedMessage) -> str:
        """Post-queue: 250 once the entry is durable; the redriver scans it."""
        try:
            await asyncio.to_thread(self.spool.settle, message.id)
        except OSError:
            return await self._refuse_unkept(message.id)
        self.redriver.submit(message.id, fresh=True)
        return f"250 2.0.0 Ok: queued as {message.id}"

    async def _scan_in_turn(self, message: StagedMessage, settling: asyncio.Future[None]) -> str:
        """Scanned once the memory budget lets the message in; BUSY if that takes longer than
        a scan deadline (the client must have its answer well within its own timeout)."""
        memory, deadline_s = self.pipeline.memory, self.pipeline.settings.scan_deadline_s
        async with memory.hold(message.size, wait_s=deadline_s) as let_in:
            if not let_in:
                log.warning("message %s: no memory for it in %.0f s; answering busy",
                            message.id, deadline_s)  # fmt: skip
                await _finished(settling)
                await asyncio.to_thread(self.spool.discard, message.id)
                return BUSY
            try:
                content = await message.content()
            except OSError:
                await _finished(settling)
                return await self._refuse_unkept(message.id)
            entry = SpoolEntry(message.id, message.envelope, content)
            return await self._scan_while_client_waits(entry, settling)

    async def _refuse_unkept(self, entry_id: str) -> str:
        """The spool could not keep the message: 451, and no entry left for the redriver
        (no 250: no entry either). Called while the failure is being handled."""
        log.exception("could not write the spool")
        await asyncio.to_thread(self.spool.discard, entry_id)
        return SPOOL_FAILED

    async def _overloaded(self) -> bool:
        """Refuse now, cheaply, rather than accept mail that would only miss its deadline:
        when the oldest waiting job has already used half of a scan deadline (the queue
        delay, whatever the pools' speed), or more jobs wait than the configured cap.
        Post-queue mail queues on disk instead."""
        try:
            waiting, oldest_s = await self.backlog.current()
        except RedisError:
            return False  # the scan itself will say the broker is away
        settings = self.pipeline.settings
        return oldest_s > settings.scan_deadline_s / 2 or waiting >= settings.max_queued_jobs

    async def _scan_while_client_waits(
        self, entry: SpoolEntry, settling: asyncio.Future[None]
    ) -> str:
        try:
            outcome = await self.pipeline.process(entry, client_waiting=True, settling=settling)
        except SpoolWriteFailed:
            return await self._refuse_unkept(entry.id)
        except (RedisError, OperationalError, OSError) as err:
            log.warning("message %s: broker unavailable (%s); answering 451", entry.id, err)
            await asyncio.to_thread(self.spool.finish, entry.id)
            return BROKER_AWAY
        if outcome.reply.startswith("250"):
            return f"{outcome.reply} as {entry.id}"  # the id finds it in logs and in Flower
        return outcome.reply

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session failed", exc_info=error)
        return INTERNAL_ERROR


async def _finished(settling: asyncio.Future[None]) -> None:
    """Wait for a settle no longer wanted: its entry is discarded after it, not during."""
    await asyncio.gather(settling, return_exceptions=True)
