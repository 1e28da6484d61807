"""One message from spool to outcome: store once, enqueue both scans, await both verdicts,
decide, act, and only then remove the spool entry."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from redis import Redis

from mailserver import headers, policy
from mailserver.delivery import Delivery, DeliveryError
from mailserver.metrics import MESSAGES
from mailserver.outcomes import OutcomeLog
from mailserver.policy import Decision
from mailserver.quarantine import Quarantine
from mailserver.spool import Spool, SpoolEntry, SpoolWriteFailed
from mailserver.spoolsharing import SpoolSharing
from mailserver.verdicts import VerdictWaiter
from tasks import blobs
from tasks.constants import AV_POOL, POOLS, SPAM_POOL
from tasks.settings import Settings
from tasks.submit import enqueued_at, job_ids, submit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to a message: ``action`` as decided, ``reply`` for a waiting client.
    A tempfail when nobody waits leaves the message in the spool, to be tried again."""

    action: str
    reply: str
    reason: str


def queued_for_s(raw: bytes | None) -> float:
    """How long a queued job has waited, read from its id: tasks/submit.py ends every scan
    job id with its enqueue time in hex nanoseconds. 0 for an empty queue or another job."""
    if raw is None:
        return 0.0
    try:
        return max(0.0, time.time() - enqueued_at(json.loads(raw)["headers"]["id"]))
    except (ValueError, KeyError, IndexError, TypeError):
        return 0.0


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
    ) -> None:
        self.settings, self.app, self.spool = settings, app, spool
        self.redis, self.waiter = redis, waiter
        self.delivery, self.quarantine = delivery, quarantine
        # For the console, and the removal of finished messages' bytes; written by its own task.
        self.outcomes = OutcomeLog(redis)
        # Whether the pools read big messages from the spool (scan; the spool reporter
        # follows the pools' health probes).
        self.sharing = SpoolSharing(spool.id, settings.spool_dir, settings.health_probe_every_s)

    async def process(
        self, entry: SpoolEntry, client_waiting: bool, settling: asyncio.Future[None] | None = None
    ) -> Outcome:
        """``settling``: the entry being made durable (``Spool.settle``) while it is scanned;
        SpoolWriteFailed if that fails, and then nothing has been decided or delivered."""
        if settling is None:
            results = await self.scan(entry, self.settings.scan_deadline_s)
        else:
            results = await self._scan_while_settling(entry, settling)
        decision = policy.decide(results["av"], results["spam"], self.settings, client_waiting)
        outcome = await asyncio.to_thread(
            self._act_and_record, entry, decision, results, client_waiting
        )
        log.info("message %s: %s (%s)", entry.id, outcome.action, outcome.reason)
        MESSAGES.labels(outcome.action).inc()
        return outcome

    async def scan(self, entry: SpoolEntry, deadline_s: float) -> dict[str, Any]:
        """Both pool verdicts, or None for a pool that did not answer by the deadline. A big
        message a pool could not read from the spool is scanned again through Redis."""
        deadline = time.monotonic() + deadline_s
        spooled = self._spooled(entry)
        results = await self._scan_once(entry, deadline, spooled)
        unread_by = _spool_unread_by(results)
        if spooled and unread_by:
            # Through Redis from now on: it costs Redis time per byte, but refuses no mail
            # for a deployment's mistake.
            self.sharing.stop(unread_by, "its job could not read a message")
            results = await self._scan_once(entry, deadline, spooled=False)
        return results

    async def _scan_once(self, entry: SpoolEntry, deadline: float, spooled: bool) -> dict[str, Any]:
        top = headers.block_for(entry.content, [headers.return_path(entry), self._received(entry)])
        task_ids = job_ids(entry.id)
        for task_id in task_ids.values():
            self.waiter.expect(task_id)
        try:
            await asyncio.to_thread(self._enqueue, entry, top, task_ids, spooled)
        except BaseException:
            for task_id in task_ids.values():
                self.waiter.forget(task_id)
            raise
        spam = asyncio.ensure_future(self._await(task_ids[SPAM_POOL], deadline))
        try:
            av = await self._await(task_ids[AV_POOL], deadline)
            if policy.virus_found(av) and not spam.done():
                # The outcome is the virus's whatever spamd says: answer now, not after it
                # (its job skips spamd if it has not started: tasks/guards/virusfirst.py).
                return {AV_POOL: av, SPAM_POOL: dict(policy.SPAM_NOT_AWAITED)}
            return {AV_POOL: av, SPAM_POOL: await spam}
        finally:
            await _call_off(spam)  # nothing when it has its verdict

    async def _scan_while_settling(
        self, entry: SpoolEntry, settling: asyncio.Future[None]
    ) -> dict[str, Any]:
        # The spool's fsyncs wait for the disk while the scanners work, instead of before.
        scanning = asyncio.ensure_future(self.scan(entry, self.settings.scan_deadline_s))
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

    def backlog(self) -> tuple[int, float]:
        """Jobs waiting in the busier pool's queue, and how long its oldest job has waited
        (one Redis round trip)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for pool in POOLS:
                pipe.llen(pool).lindex(pool, -1)  # kombu pushes left, workers pop right
            answers = pipe.execute()
        depths, oldest = answers[0::2], answers[1::2]
        return max(depths), max(queued_for_s(raw) for raw in oldest)

    def _enqueue(
        self, entry: SpoolEntry, top: bytes, task_ids: dict[str, str], spooled: bool
    ) -> None:
        # Our headers in front do not change the content key: the body is hashed once.
        content = blobs.content_key(entry.content)
        origin = blobs.whole_digest(entry.content, content)
        ttl_s = self.settings.blob_ttl_s
        submit(
            self.app, self.redis, entry.id, entry.content, ttl_s, origin, task_ids, content,
            top=top, spooled=spooled,
        )  # fmt: skip

    def _spooled(self, entry: SpoolEntry) -> bool:
        """Whether the pools read the message from its spool entry (staged before the
        enqueue), and only our header lines in front from Redis: a big message. Redis's
        time per byte grows with the size; a file read from the page cache does not."""
        shared_from = self.settings.shared_spool_from_bytes if self.sharing.shared else 0
        return 0 < shared_from <= len(entry.content)

    async def _await(self, task_id: str, deadline: float) -> dict[str, Any] | None:
        try:
            meta = await self.waiter.wait(task_id, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None
        if meta.get("status") != "SUCCESS":
            log.warning("scan job %s ended %s: %s", task_id, meta.get("status"), meta.get("result"))
            return None
        return meta["result"]

    def _act_and_record(
        self, entry: SpoolEntry, decision: Decision, results: dict[str, Any], client_waiting: bool
    ) -> Outcome:
        outcome = self._act(entry, decision, results, client_waiting)
        self.outcomes.add(entry, outcome)
        return outcome

    def _act(
        self, entry: SpoolEntry, decision: Decision, results: dict[str, Any], client_waiting: bool
    ) -> Outcome:
        if decision.action == "tempfail" and not client_waiting:
            return Outcome("tempfail", decision.reply, decision.reason)
        try:
            unsynced = self._carry_out(entry, decision, results, first=client_waiting)
        except DeliveryError as err:
            return self._delivery_failed(entry, results, err, client_waiting)
        self._finish(entry, sync_first=unsynced)
        return Outcome(decision.action, decision.reply, decision.reason)

    def _carry_out(
        self, entry: SpoolEntry, decision: Decision, results: dict[str, Any], first: bool
    ) -> Path | None:
        """``first``: the entry was spooled by the SMTP session that waits for it, so it
        cannot have been delivered before. Returns a folder the delivery left to fsync
        before the spool entry goes."""
        if decision.action not in ("deliver", "quarantine"):
            return None  # reject or tempfail to a waiting client: the sender keeps it
        # Our header lines go on top apart: joined, a 25 MB message would be copied for them.
        top = headers.block_for(entry.content, [*decision.header_lines, self._received(entry)])
        message = entry.content
        if decision.tag_subject:  # its Subject is in the message: tagged, it is a new copy
            message, top = headers.tag_subject(top + message, self.settings.spam_subject_tag), b""
        if decision.action == "quarantine":
            self.quarantine.put(entry, top + message, decision.reason, results)
            return None
        # The folder's fsync goes with the spool entry's removal, after the reply: the entry
        # keeps the message durable until then (bench/README.md, "the time after the verdicts").
        return self.delivery.deliver(
            entry.id, entry.envelope, message, first, defer_sync=True, top=top
        )

    def _delivery_failed(
        self, entry: SpoolEntry, results: dict[str, Any], err: DeliveryError, waiting: bool
    ) -> Outcome:
        log.warning("message %s: delivery failed: %s", entry.id, err)
        if waiting:
            # The client hears the failure and keeps the message; we must not keep a copy.
            self._finish(entry)
            if err.permanent:
                return Outcome("reject", "550 5.0.0 Next hop refused the message", str(err))
            return Outcome("tempfail", "451 4.4.1 Next hop unavailable, try again later", str(err))
        if err.permanent:
            # Nobody to tell and the next hop will never take it: keep it where an admin looks.
            self.quarantine.put(entry, entry.content, f"next hop refused: {err}", results)
            self._finish(entry)
            return Outcome("quarantine", "", str(err))
        return Outcome("tempfail", "", str(err))

    def drop_unanswered(self, entry: SpoolEntry) -> None:
        """Forget an entry whose sender was never answered and keeps the message. A copy its
        session delivered before it ended is made durable before the entry goes."""
        log.warning("message %s: dropped, its sender was never answered and sends it again",
                    entry.id)  # fmt: skip
        delivered_to = None if self.settings.delivery == "relay" else self.settings.maildir / "new"
        self._finish(entry, sync_first=delivered_to)

    def _finish(self, entry: SpoolEntry, sync_first: Path | None = None) -> None:
        """The final outcome is carried out: the spool entry goes (after the reply, with
        others, once ``sync_first`` is fsynced), and a moment later the bytes the scan jobs
        read (the id is never used again)."""
        self.spool.finish_soon(entry.id, sync_first)
        self.outcomes.blob_done(entry.id)

    def _received(self, entry: SpoolEntry) -> str:
        return headers.received(entry, self.settings.hostname)


def _spool_unread_by(results: dict[str, Any]) -> dict[str, Any] | None:
    """The result of a pool that could not read the message from the spool, if any."""
    return next((r for r in results.values() if r and r.get("spool_unreadable")), None)


async def _call_off(scanning: asyncio.Future[Any]) -> None:
    scanning.cancel()
    await asyncio.gather(scanning, return_exceptions=True)
