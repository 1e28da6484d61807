"""Drives spool entries that have no final outcome: post-queue mail, mail left by a crash,
and mail whose scan or delivery must be tried again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from mailserver.pipeline import Pipeline
from mailserver.spool import Spool, SpoolEntry, boot_id

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

    def submit(self, entry_id: str) -> None:
        if entry_id in self._busy:
            return
        self._busy.add(entry_id)
        task = asyncio.create_task(self._drive(entry_id), name=f"redrive-{entry_id}")
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

    async def _drive(self, entry_id: str) -> None:
        try:
            async with self._slots:
                entry = await asyncio.to_thread(self.spool.load, entry_id)
                if sender_keeps(entry):
                    await asyncio.to_thread(self.pipeline.drop_unanswered, entry)
                    return
                await self.pipeline.process(entry, client_waiting=False)
        except FileNotFoundError:
            pass  # finished meanwhile
        except (RedisError, OperationalError, OSError) as err:
            log.warning("message %s stays spooled: %s", entry_id, err)
        except Exception:
            log.exception("message %s stays spooled after an unexpected error", entry_id)
        finally:
            self._busy.discard(entry_id)


def sender_keeps(entry: SpoolEntry) -> bool:
    """A pre-queue entry that no SMTP session holds any more: its session ended (the front
    was killed, the client hung up) before the sender heard our final answer, so the sender
    still has the message and sends it again; delivering this copy too would deliver it
    twice. On the same boot whatever the session handed on is visible, so nothing answered
    250 is at risk. After a reboot a delivery's rename may be lost though its 250 went out:
    such an entry is re-driven as any other."""
    waited_on = entry.envelope.sender_waiting_boot
    return bool(waited_on) and waited_on == boot_id()
