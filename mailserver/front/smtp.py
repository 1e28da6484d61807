"""The SMTP front: translates the protocol into a spool entry and a scan, and back into a
reply code. Nothing here blocks the event loop; no exception text ever reaches a client."""

from __future__ import annotations

import asyncio
import logging
import time

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from mailserver.front import xforward
from mailserver.front.access import RELAY_DENIED, AccessPolicy
from mailserver.front.admission import BacklogGauge
from mailserver.front.envelopecheck import address_refusal, helo_refusal
from mailserver.front.outcomerecord import Steps, refusal_record
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
# Why each answer before a verdict was given, as the message log says it.
_REFUSAL_REASONS = {
    BUSY: "scan jobs waited too long: refused before spooling",
    SPOOL_FAILED: "the spool could not keep the message",
    BROKER_AWAY: "the scanner queue (Redis) was unavailable",
}


class ScanHandler:
    """aiosmtpd handler: spool first, then scan (pre-queue) or hand to the redriver (post).

    HELO, EHLO, MAIL and RCPT are checked first (envelopecheck.py, access.py): what is
    refused there never reaches the spool."""

    def __init__(
        self,
        pipeline: Pipeline,
        spool: Spool,
        redriver: Redriver,
        post_queue: bool,
        access: AccessPolicy | None = None,
    ):
        self.pipeline, self.spool, self.redriver = pipeline, spool, redriver
        self.post_queue = post_queue
        self.access = access or AccessPolicy()
        self.backlog = BacklogGauge(pipeline.backlog)

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        refusal = helo_refusal("HELO", hostname)
        session.host_name = None if refusal else hostname  # refused: no greeting holds
        return refusal or f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, replies: list[str]
    ) -> list[str]:
        refusal = helo_refusal("EHLO", hostname)
        session.host_name = None if refusal else hostname
        if refusal:
            return [refusal]
        if self.access.allows_xforward(session.peer):  # before aiosmtpd's last line
            return [*replies[:-1], xforward.EHLO_LINE, replies[-1]]
        return replies

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # aiosmtpd has read the SMTPUTF8 parameter into the envelope before this hook.
        refusal = address_refusal(address, envelope.smtp_utf8)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = address_refusal(address, envelope.smtp_utf8)
        if refusal:
            return refusal
        if not self.access.relays_to(address):
            return RELAY_DENIED
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def open_message(self, session: Session, envelope: Envelope) -> StagedMessage:
        """Where the message goes while its DATA arrives: its spool entry under ``tmp/``.
        Its id and ``received_at`` are those of the DATA command (Postfix's Received line
        also has the time the data started)."""
        spool_envelope = _spool_envelope(session, envelope, self.post_queue)
        return StagedMessage(self.spool, new_id(), spool_envelope)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope, message: StagedMessage
    ) -> str:
        """The reply for a message whose data has ended whole into ``message``."""
        steps, started = Steps(), time.monotonic()
        if not self.post_queue and await self._overloaded():
            await message.discard()
            return await self._refused(message, BUSY, steps)
        if not await message.close():  # the spool could not take it (logged)
            await message.discard()
            return await self._refused(message, SPOOL_FAILED, steps)
        if self.post_queue:
            return await self._queue(message, steps)
        # Claimed before the file is listed: the redriver lists the spool on its own, and an
        # entry it saw before this session claimed it would be scanned and delivered twice.
        self.redriver.hold(message.id)
        try:
            # Made durable while it waits and is scanned; nothing is decided or confirmed before.
            settling = asyncio.ensure_future(
                asyncio.to_thread(self._settle, message.id, steps, started)
            )
            return await self._scan_in_turn(message, settling, steps)
        finally:
            self.redriver.release(message.id)

    def _settle(self, entry_id: str, steps: Steps, started: float) -> None:
        self.spool.settle(entry_id)
        steps.took("spool", started)

    async def _refused(
        self, message: StagedMessage, reply: str, steps: Steps, entry: SpoolEntry | None = None
    ) -> str:
        """A 451 before any verdict is a final outcome too: the message log has it."""
        entry = entry or SpoolEntry(message.id, message.envelope, message.head)
        record = refusal_record(entry, reply, _REFUSAL_REASONS[reply], steps, message.size)
        await asyncio.to_thread(self.pipeline.messages.record, record)
        return reply

    async def _queue(self, message: StagedMessage, steps: Steps) -> str:
        """Post-queue: 250 once the entry is durable; the redriver scans it."""
        try:
            await asyncio.to_thread(self.spool.settle, message.id)
        except OSError:
            await self._refuse_unkept(message.id)
            return await self._refused(message, SPOOL_FAILED, steps)
        self.redriver.submit(message.id, fresh=True)
        return f"250 2.0.0 Ok: queued as {message.id}"

    async def _scan_in_turn(
        self, message: StagedMessage, settling: asyncio.Future[None], steps: Steps
    ) -> str:
        """Scanned once the memory budget lets the message in; BUSY if that takes longer than
        a scan deadline (the client must have its answer well within its own timeout)."""
        memory, deadline_s = self.pipeline.memory, self.pipeline.settings.scan_deadline_s
        async with memory.hold(message.size, wait_s=deadline_s) as let_in:
            if not let_in:
                log.warning("message %s: no memory for it in %.0f s; answering busy",
                            message.id, deadline_s)  # fmt: skip
                await _finished(settling)
                await asyncio.to_thread(self.spool.discard, message.id)
                return await self._refused(message, BUSY, steps)
            try:
                content = await message.content()
            except OSError:
                await _finished(settling)
                await self._refuse_unkept(message.id)
                return await self._refused(message, SPOOL_FAILED, steps)
            entry = SpoolEntry(message.id, message.envelope, content)
            return await self._scan_while_client_waits(entry, settling, steps, message)

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
        self,
        entry: SpoolEntry,
        settling: asyncio.Future[None],
        steps: Steps,
        message: StagedMessage,
    ) -> str:
        try:
            outcome = await self.pipeline.process(entry, True, settling, steps)
        except SpoolWriteFailed:
            await self._refuse_unkept(entry.id)
            return await self._refused(message, SPOOL_FAILED, steps, entry)
        except (RedisError, OperationalError, OSError) as err:
            log.warning("message %s: broker unavailable (%s); answering 451", entry.id, err)
            await asyncio.to_thread(self.spool.finish, entry.id)
            return await self._refused(message, BROKER_AWAY, steps, entry)
        if outcome.reply.startswith("250"):
            return f"{outcome.reply} as {entry.id}"  # the id finds it in logs and in Flower
        return outcome.reply

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client's TLS, not our fault (old versions, scanners): a line, no traceback.
            # aiosmtpd closes the connection without sending the reply.
            log.info("STARTTLS handshake failed: %s", error.__cause__ or "no reason given")
            return INTERNAL_ERROR
        log.error("SMTP session failed", exc_info=error)
        return INTERNAL_ERROR


async def _finished(settling: asyncio.Future[None]) -> None:
    """Wait for a settle no longer wanted: its entry is discarded after it, not during."""
    await asyncio.gather(settling, return_exceptions=True)


def _spool_envelope(session: Session, envelope: Envelope, post_queue: bool) -> SpoolEnvelope:
    peer_ip = str(session.peer[0]) if session.peer else ""
    # The MTA in front's client, when it named it by XFORWARD; else the peer itself.
    client = xforward.client_of(peer_ip, session.host_name or "",
                                getattr(envelope, "forwarded", None))  # fmt: skip
    return SpoolEnvelope(
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        peer_ip=client.address,
        helo=client.helo,
        peer_name=client.name,
        received_at=time.time(),
        sender_waiting_boot="" if post_queue else boot_id(),
        tls=session.ssl is not None,
        smtputf8=bool(envelope.smtp_utf8),
    )
