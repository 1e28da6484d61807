"""The end of a message at the milter front: spooled durably, scanned and decided as the
pre-queue SMTP front does it (mailserver/front/pipeline.py), with progress replies to the
MTA while the scans run, then the answer. The spool entry ends once the MTA has the
answer; if the MTA goes away first, its ``milter_default_action`` answered the client
(tempfail: the sender keeps the message), and the entry ends as one nobody was told of."""

from __future__ import annotations

import asyncio
import logging
import time

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from mailserver.front.outcomerecord import Steps
from mailserver.front.pipeline import Pipeline
from mailserver.front.policies.per_recipient import one_for_all
from mailserver.front.policy import Decision
from mailserver.front.redrive import Redriver
from mailserver.front.spool import Envelope, SpoolEntry, boot_id, new_id
from mailserver.milter import codec, replies
from mailserver.milter.message import Message
from mailserver.milter.session import Send
from tasks.errors import SpoolWriteFailed
from tasks.wire.verdicts import ByPool

log = logging.getLogger(__name__)

# Postfix waits milter_content_timeout (300 s by default) for an answer at the end of a
# message, and each progress reply starts that wait again. Twice a second keeps even the
# shortest timeout Postfix can be given (1 s: it counts whole seconds) from firing, for a
# few bytes a second per message being scanned.
PROGRESS_EVERY_S = 0.5


class MessageScanner:
    """Answers the MTA at the end of each message (``answer``, a session's callback)."""

    def __init__(self, pipeline: Pipeline, redriver: Redriver) -> None:
        self.pipeline, self.redriver = pipeline, redriver
        self.spool = pipeline.spool

    async def answer(self, message: Message, macros: dict[str, str], send: Send) -> None:
        if message.too_big:
            await send(replies.refusal(replies.TOO_BIG))
            return
        entry_id = new_id()
        log.info("message %s: Postfix queue id %s", entry_id, macros.get("i", "?"))
        # Held before the file exists: the redriver would take an entry it lists as one
        # whose session ended, and drop it while this one scans it.
        self.redriver.hold(entry_id)
        try:
            await self._answer(entry_id, message, macros, send)
        finally:
            self.redriver.release(entry_id)

    async def _answer(
        self, entry_id: str, message: Message, macros: dict[str, str], send: Send
    ) -> None:
        envelope = _envelope(message, macros)
        try:
            entry = await asyncio.to_thread(
                self.spool.stage, envelope, bytes(message.content), entry_id
            )
        except OSError:
            log.exception("could not write the spool")
            await asyncio.to_thread(self.spool.discard, entry_id)
            await send(replies.refusal(replies.SPOOL_FAILED))
            return
        settling = asyncio.ensure_future(asyncio.to_thread(self.spool.settle, entry.id))
        steps = Steps()
        judged = await self._judged(entry, settling, send, steps)
        if judged is None:
            return
        decision, results = judged
        decision = one_for_all(decision)  # the MTA carries out one outcome per message
        packets = replies.for_decision(
            decision,
            message,
            message.agreed,
            decision.subject_tag or self.pipeline.settings.spam_subject_tag,
        )
        try:
            await send(packets)
        except ConnectionError:
            self._not_answered(entry)
            raise
        self.pipeline.answered(entry, decision, results, steps)

    async def _judged(
        self, entry: SpoolEntry, settling: asyncio.Future[None], send: Send, steps: Steps
    ) -> tuple[Decision, ByPool] | None:
        """The decision, or None when the MTA had another answer (sent here), or left."""
        judging = asyncio.ensure_future(
            self.pipeline.judge(entry, client_waiting=True, settling=settling, steps=steps)
        )
        try:
            if not await _progress_until_done(judging, send):
                self._not_answered(entry)
                return None
            return judging.result()
        except SpoolWriteFailed:
            log.exception("message %s: could not make the spool entry durable", entry.id)
            await asyncio.to_thread(self.spool.discard, entry.id)
            await send(replies.refusal(replies.SPOOL_FAILED))
        except (RedisError, OperationalError, OSError) as err:
            log.warning("message %s: broker unavailable (%s); answering 451", entry.id, err)
            await asyncio.to_thread(self.spool.finish, entry.id)
            await send(replies.refusal(replies.BROKER_AWAY))
        finally:
            if not judging.done():
                judging.cancel()
                await asyncio.gather(judging, return_exceptions=True)
        return None

    def _not_answered(self, entry: SpoolEntry) -> None:
        """The MTA closed its end before it had our answer: it answered its client with
        its default action, and the sender keeps the message."""
        log.warning("message %s: the MTA went away before its answer; not kept", entry.id)
        self.pipeline.handover.drop_answered(entry)


async def _progress_until_done(task: asyncio.Future[object], send: Send) -> bool:
    """Progress replies until ``task`` is done (True), or until the MTA is gone (False)."""
    while True:
        done, _ = await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
        if done:
            return True
        try:
            await send([codec.packet(codec.PROGRESS)])
        except ConnectionError:
            return False


def _envelope(message: Message, macros: dict[str, str]) -> Envelope:
    return Envelope(
        mail_from=message.mail_from,
        rcpt_tos=tuple(message.rcpt_tos),
        peer_ip=message.client.address,
        helo=message.helo,
        received_at=time.time(),
        sender_waiting_boot=boot_id(),
        tls=bool(macros.get("{tls_version}")),
        smtputf8=message.smtputf8,
    )
