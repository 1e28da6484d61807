"""One message from spool to outcome: store once, enqueue both scans, await both verdicts,
decide, act, and only then remove the spool entry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import Celery
from redis import Redis

from mailserver.front import headers, policy
from mailserver.front.admission import Backlog, read_backlog
from mailserver.front.delivery import Delivery
from mailserver.front.handover import Handover, Outcome
from mailserver.front.membudget import MemoryBudget
from mailserver.front.metrics import MESSAGES
from mailserver.front.outcomerecord import Steps, is_final, record_of
from mailserver.front.outcomes import OutcomeLog
from mailserver.front.policies.holder import PolicyHolder
from mailserver.front.policies.per_recipient import (
    bans_settle_for_all,
    decide_for_recipients,
    settled_by_av,
)
from mailserver.front.policy import Decision
from mailserver.front.quarantine import Quarantine
from mailserver.front.resend import JobResender
from mailserver.front.retries import Attempts
from mailserver.front.spool import Spool, SpoolEntry
from mailserver.front.spoolsharing import SpoolSharing
from mailserver.front.staging import FLUSH_BYTES
from mailserver.front.verdicts import VerdictWaiter, verdict_of
from mailserver.messagelog.writer import MessageLog
from tasks.errors import SpoolWriteFailed
from tasks.settings import Settings
from tasks.wire import blobs
from tasks.wire.jobids import job_ids
from tasks.wire.keys import AV_POOL, SPAM_POOL
from tasks.wire.submit import submit
from tasks.wire.verdicts import ByPool, PoolVerdict

log = logging.getLogger(__name__)


class Pipeline:
    """Everything between a committed spool entry and its final outcome."""

    def __init__(
        self,
        settings: Settings,
        app: Celery,
        spool: Spool,
        redis: Redis,
        waiter: VerdictWaiter,
        delivery: Delivery,
        quarantine: Quarantine,
        messages: MessageLog | None = None,
        policies: PolicyHolder | None = None,
    ) -> None:
        self.settings, self.app, self.spool = settings, app, spool
        # The policy file in force, replaced whole on a reload.
        self.policies = policies or PolicyHolder(settings)
        # Every final outcome, for searches (mailserver/messagelog); written by its own task.
        self.messages = messages or MessageLog.from_settings(settings)
        self.redis, self.waiter = redis, waiter
        self.resender = JobResender(waiter, redis)  # jobs Redis may have lost while they ran
        self.delivery, self.quarantine = delivery, quarantine
        # For the console, and the removal of finished messages' bytes; written by its own task.
        self.outcomes = OutcomeLog(redis)
        # Whether the pools read big messages from the spool (scan; the spool reporter
        # follows the pools' health probes).
        self.sharing = SpoolSharing(spool.id, settings.spool_dir, settings.health_probe_every_s)
        # Delivery, quarantine, and the end of every spool entry's life.
        self.handover = Handover(settings, spool, delivery, quarantine, self.outcomes)
        # Messages in memory to be processed, from SMTP sessions and the redriver alike.
        self.memory = MemoryBudget(settings.message_memory_bytes, FLUSH_BYTES)

    async def process(
        self,
        entry: SpoolEntry,
        client_waiting: bool,
        settling: asyncio.Future[None] | None = None,
        steps: Steps | None = None,
    ) -> Outcome:
        """``settling``: the entry being made durable (``Spool.settle``) while it is scanned;
        SpoolWriteFailed if that fails, and then nothing has been decided or delivered.
        ``steps``: the times of the steps before this one (the spool's)."""
        steps = steps or Steps()
        decision, results = await self.judge(entry, client_waiting, settling, steps)
        outcome = await asyncio.to_thread(
            self._act_and_record, entry, decision, results, client_waiting, steps
        )
        log.info("message %s: %s (%s)", entry.id, outcome.action, outcome.reason)
        MESSAGES.labels(outcome.action).inc()
        return outcome

    async def judge(
        self,
        entry: SpoolEntry,
        client_waiting: bool,
        settling: asyncio.Future[None] | None = None,
        steps: Steps | None = None,
    ) -> tuple[Decision, ByPool]:
        """Scan and decide, without acting: ``process`` acts on the decision itself, the
        milter front (mailserver/milter/) has the MTA act on it."""
        steps = steps if steps is not None else Steps()
        started = time.monotonic()
        if settling is None:
            results = await self.scan(entry, self.settings.scan_deadline_s, steps)
        else:
            results = await self._scan_while_settling(entry, settling, steps)
        steps.took("scan", started)
        envelope = entry.envelope
        decision = decide_for_recipients(
            results["av"], results["spam"], self.settings, self.policies.current,
            envelope.mail_from, envelope.rcpt_tos, client_waiting,
        )  # fmt: skip
        return decision, results

    def answered(
        self, entry: SpoolEntry, decision: Decision, results: ByPool, steps: Steps
    ) -> Outcome:
        """The MTA that asked for the verdict has the answer and keeps the message (the
        milter front): the entry's life ends here, nothing was handed on by us."""
        outcome = Outcome(decision.action, decision.reply, decision.reason)
        self.handover.drop_answered(entry)
        self.outcomes.add(entry, outcome)
        self.messages.record(record_of(entry, outcome, decision, results, steps))
        log.info("message %s: %s (%s)", entry.id, outcome.action, outcome.reason)
        MESSAGES.labels(outcome.action).inc()
        return outcome

    async def scan(
        self, entry: SpoolEntry, deadline_s: float, steps: Steps | None = None
    ) -> ByPool:
        """Both pool verdicts, or None for a pool that did not answer by the deadline. A big
        message a pool could not read from the spool is scanned again through Redis."""
        deadline = time.monotonic() + deadline_s
        spooled = self._spooled(entry)
        steps = steps or Steps()
        results = await self._scan_once(entry, deadline, spooled, steps)
        unread_by = _spool_unread_by(results)
        if spooled and unread_by:
            # Through Redis from now on: it costs Redis time per byte, but refuses no mail
            # for a deployment's mistake.
            how = "its job could not read a message"
            self.sharing.stop(unread_by.pool, unread_by.worker or "?", how)
            results = await self._scan_once(entry, deadline, False, steps)
        return results

    async def _scan_once(
        self, entry: SpoolEntry, deadline: float, spooled: bool, steps: Steps
    ) -> ByPool:
        ours = [headers.return_path(entry), headers.received(entry, self.settings.hostname)]
        top = headers.block_for(entry.content, ours)
        task_ids = job_ids(entry.id)
        for task_id in task_ids.values():
            self.waiter.expect(task_id)
        started, enqueue = time.monotonic(), partial(self._enqueue, entry, top, task_ids, spooled)
        try:
            await asyncio.to_thread(enqueue)
        except BaseException:
            for task_id in task_ids.values():
                self.waiter.forget(task_id)
            raise
        steps.took("enqueue", started)
        self.resender.expect(task_ids.values(), entry.id, enqueue)  # again if Redis loses the jobs
        enqueued = time.monotonic()
        spam = asyncio.ensure_future(self._await(task_ids[SPAM_POOL], deadline, steps, enqueued))
        try:
            av = await self._await(task_ids[AV_POOL], deadline, steps, enqueued)
            rcpts = entry.envelope.rcpt_tos
            if settled_by_av(av, self.settings, self.policies.current, rcpts) and not spam.done():
                # The outcome is the virus's (or the banned attachment's) whatever spamd
                # says: answer now, not after it (its job skips spamd if it has not started:
                # tasks/guards/virusfirst.py).
                return {AV_POOL: av, SPAM_POOL: policy.spam_not_awaited(av)}
            return {AV_POOL: av, SPAM_POOL: await spam}
        finally:
            await _call_off(spam)  # nothing when it has its verdict
            self.resender.done(task_ids.values())

    async def _scan_while_settling(
        self, entry: SpoolEntry, settling: asyncio.Future[None], steps: Steps
    ) -> ByPool:
        # The spool's fsyncs wait for the disk while the scanners work, instead of before.
        scanning = asyncio.ensure_future(self.scan(entry, self.settings.scan_deadline_s, steps))
        try:
            await settling
        except OSError as err:
            await _call_off(scanning)
            # Its jobs may be queued already; the bytes they would read must not stay in
            # Redis for the blob TTL for every message a failing disk refuses.
            self.outcomes.blob_done(entry.id)
            raise SpoolWriteFailed(f"spool entry {entry.id} not made durable: {err}") from err
        except BaseException:
            await _call_off(scanning)
            raise
        return await scanning

    def backlog(self) -> Backlog:
        """Jobs waiting in the busier pool's queue, and how long its oldest scan job has
        waited (one Redis round trip)."""
        return read_backlog(self.redis)

    def _enqueue(
        self, entry: SpoolEntry, top: bytes, task_ids: dict[str, str], spooled: bool
    ) -> None:
        # Our headers in front do not change the content key: the body is hashed once.
        content = blobs.content_key(entry.content)
        origin = blobs.whole_digest(entry.content, content)
        ttl_s = self.settings.blob_ttl_s
        ban_may_pass = not bans_settle_for_all(self.policies.current, entry.envelope.rcpt_tos)
        submit(
            self.app, self.redis, entry.id, entry.content, ttl_s, origin, task_ids, content,
            top=top, spooled=spooled, ban_may_pass=ban_may_pass,
        )  # fmt: skip

    def _spooled(self, entry: SpoolEntry) -> bool:
        """Whether the pools read the message from its spool entry (staged before the
        enqueue), and only our header lines in front from Redis: a big message. Redis's
        time per byte grows with the size; a file read from the page cache does not."""
        shared_from = self.settings.shared_spool_from_bytes if self.sharing.shared else 0
        return 0 < shared_from <= len(entry.content)

    async def _await(
        self, task_id: str, deadline: float, steps: Steps, enqueued: float
    ) -> PoolVerdict | None:
        try:
            meta = await self.waiter.wait(task_id, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None
        if meta.get("status") != "SUCCESS":
            log.warning("scan job %s ended %s: %s", task_id, meta.get("status"), meta.get("result"))
            return None
        verdict = verdict_of(task_id, meta.get("result"))
        if verdict is not None:
            # From the enqueue to the verdict, less the pool's own time: the queue, and
            # the verdict's way back.
            waited_ms = (time.monotonic() - enqueued) * 1000 - verdict.elapsed_ms
            steps.ms[f"queue.{verdict.pool}"] = round(max(0.0, waited_ms), 1)
        return verdict

    def _act_and_record(
        self,
        entry: SpoolEntry,
        decision: Decision,
        results: ByPool,
        client_waiting: bool,
        steps: Steps,
    ) -> Outcome:
        started = time.monotonic()
        outcome = self._act(entry, decision, results, client_waiting)
        if decision.action in ("deliver", "quarantine"):
            steps.took("delivery" if decision.action == "deliver" else "quarantine", started)
        self.outcomes.add(entry, outcome)
        if is_final(outcome, client_waiting):
            self.messages.record(record_of(entry, outcome, decision, results, steps))
        return outcome

    def _act(
        self, entry: SpoolEntry, decision: Decision, results: ByPool, client_waiting: bool
    ) -> Outcome:
        return self.handover.act(entry, decision, results, client_waiting)

    async def retry(self, entry: SpoolEntry, attempts: Attempts) -> Outcome:
        """Deliver again from the kept decision, to the recipients still waiting: no scan."""
        return await self._record(entry, attempts, self.handover.retry, entry, attempts)

    async def expire(self, entry: SpoolEntry, attempts: Attempts | None) -> Outcome:
        """The entry's life ran out without a final outcome: it is dead-lettered."""
        return await self._record(entry, attempts, self.handover.expire, entry, attempts)

    async def _record(
        self, entry: SpoolEntry, attempts: Attempts | None, act: Callable[..., Outcome], *args: Any
    ) -> Outcome:
        outcome = await asyncio.to_thread(act, *args)
        self.outcomes.add(entry, outcome)
        if is_final(outcome, client_waiting=False):
            decision, verdicts = (attempts.decision, attempts.verdicts) if attempts else (None, {})
            self.messages.record(record_of(entry, outcome, decision, verdicts))
        log.info("message %s: %s (%s)", entry.id, outcome.action, outcome.reason)
        MESSAGES.labels(outcome.action).inc()
        return outcome


def _spool_unread_by(results: ByPool) -> PoolVerdict | None:
    """The verdict of a pool that could not read the message from the spool, if any."""
    return next((r for r in results.values() if r and r.spool_unreadable), None)


async def _call_off(scanning: asyncio.Future[Any]) -> None:
    scanning.cancel()
    await asyncio.gather(scanning, return_exceptions=True)
