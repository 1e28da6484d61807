"""Drives spool entries that have no final outcome: post-queue mail, mail left by a crash,
and mail whose scan or delivery must be tried again. An entry whose delivery failed is
delivered again from its kept verdicts once its backoff is due, and left alone before; an
entry past the spool's lifetime is dead-lettered; one that cannot be read is set aside."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from mailserver.front.metrics import MESSAGES
from mailserver.front.pipeline import Pipeline
from mailserver.front.retries import Attempts
from mailserver.front.spool import Spool, SpoolEntry, boot_id
from tasks.errors import SpoolEntryCorrupt

log = logging.getLogger(__name__)

# How many spooled messages are scanned at once in the background; the rest wait their turn
# on disk, so a burst costs disk, not memory.
MAX_IN_FLIGHT = 64


class Redriver:
    """Processes spool entries in the background, each at most once at a time."""

    def __init__(self, spool: Spool, pipeline: Pipeline, interval_s: float) -> None:
        self.spool, self.pipeline, self.interval_s = spool, pipeline, interval_s
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    def hold(self, entry_id: str) -> None:
        """An SMTP session is processing this entry itself; leave it alone."""
        self._busy.add(entry_id)

    def release(self, entry_id: str) -> None:
        self._busy.discard(entry_id)

    def submit(self, entry_id: str, fresh: bool = False) -> None:
        """``fresh``: just spooled by a post-queue session, so never tried before."""
        if entry_id in self._busy:
            return
        self._busy.add(entry_id)
        task = asyncio.create_task(self._drive(entry_id, fresh), name=f"redrive-{entry_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, report: Callable[[list[str]], None] | None = None) -> None:
        """Every interval, pick up whatever the spool holds that nobody is working on, and
        tell ``report`` what the spool holds (for the spool alarm and the metrics)."""
        while True:
            pending = await asyncio.to_thread(self.spool.pending)
            for entry_id in pending:
                self.submit(entry_id)
            if report:
                await asyncio.to_thread(report, pending)
            await asyncio.sleep(self.interval_s)

    async def _drive(self, entry_id: str, fresh: bool = False) -> None:
        try:
            async with self._slots:
                await self._next_step(entry_id, fresh)
        except FileNotFoundError:
            pass  # finished meanwhile
        except (RedisError, OperationalError, OSError) as err:
            log.warning("message %s stays spooled: %s", entry_id, err)
        except Exception:
            log.exception("message %s stays spooled after an unexpected error", entry_id)
        finally:
            self._busy.discard(entry_id)

    async def _next_step(self, entry_id: str, fresh: bool) -> None:
        """Scan, deliver again, dead-letter or set aside, whichever the entry is due for."""
        handover = self.pipeline.handover
        # A fresh entry has no delivery record: no file to look for on the way of new mail.
        attempts = None if fresh else await asyncio.to_thread(handover.retries.get, entry_id)
        expired = Spool.age_s(entry_id) >= self.pipeline.settings.spool_max_lifetime_s
        if attempts and not expired and not attempts.due(time.time()):
            return  # its backoff is not over: not even read
        size = await asyncio.to_thread(self.spool.size, entry_id)
        async with self.pipeline.memory.hold(size):
            await self._load_and_act(entry_id, attempts, expired)

    async def _load_and_act(self, entry_id: str, attempts: Attempts | None, expired: bool) -> None:
        handover = self.pipeline.handover
        try:
            entry = await asyncio.to_thread(self.spool.load, entry_id)
        except SpoolEntryCorrupt as err:
            await asyncio.to_thread(self._set_aside, entry_id, str(err))
            return
        if attempts:  # its sender was answered: the rest of its life is ours
            await (self.pipeline.expire if expired else self.pipeline.retry)(entry, attempts)
        elif sender_keeps(entry):
            await asyncio.to_thread(handover.drop_unanswered, entry)
        elif expired:
            await self.pipeline.expire(entry, None)
        else:
            await self.pipeline.process(entry, client_waiting=False)

    def _set_aside(self, entry_id: str, reason: str) -> None:
        handover = self.pipeline.handover
        handover.dead.set_aside(entry_id, reason)
        handover.retries.remove(entry_id)
        MESSAGES.labels("corrupt").inc()


def sender_keeps(entry: SpoolEntry) -> bool:
    """A pre-queue entry that no SMTP session holds any more: its session ended (the front
    was killed, the client hung up) before the sender heard our final answer, so the sender
    still has the message and sends it again; delivering this copy too would deliver it
    twice. On the same boot whatever the session handed on is visible, so nothing answered
    250 is at risk. After a reboot a delivery's rename may be lost though its 250 went out:
    such an entry is re-driven as any other."""
    waited_on = entry.envelope.sender_waiting_boot
    return bool(waited_on) and waited_on == boot_id()
