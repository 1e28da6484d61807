"""The guard interface and the context a guard sees.

Redis round trips are what guards cost, so a job makes few: the reads guards can make
before any plugin runs go out in one pipeline with the message itself (``plan_reads``),
and their writes after a scan go out in one pipeline when the job ends (``job.writes``).
Only what must happen at its moment, the attempt counted before a plugin runs and a
crashdump, is sent at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis

from tasks.crashes.store import CrashStore
from tasks.plugins.base import Plugin, Verdict
from tasks.settings import Settings
from tasks.wire.blobs import BlobRef, Message

log = logging.getLogger(__name__)


class Reads:
    """Reads queued under a name on one pipeline, answered by name when it has run."""

    def __init__(self, redis: Redis) -> None:
        self._pipe = redis.pipeline(transaction=False)
        self._names: list[str] = []

    def add(self, name: str, command: str, *args: Any) -> None:
        getattr(self._pipe, command)(*args)
        self._names.append(name)

    def run(self) -> dict[str, Any]:
        with self._pipe as pipe:
            return dict(zip(self._names, pipe.execute(), strict=True))


@dataclass
class JobContext:
    """One scan job in one pool process. ``plugins`` are the pool's main engines; ``reads``
    holds what guards asked for before the job; ``writes`` is sent when the job ends."""

    pool: str
    job_id: str
    ref: BlobRef
    hostname: str
    settings: Settings
    redis: Redis
    crashes: CrashStore
    message: Message = b""
    plugins: list[Plugin] = field(default_factory=list)
    reads: dict[str, Any] = field(default_factory=dict)
    writes: Any = None  # a redis pipeline (no transaction)
    backend: Any = None  # Celery's result backend, whose encoding verdicts are stored in

    def read(self, name: str, live: Callable[[], Any]) -> Any:
        """The answer read before the job, or ``live()`` for a read nobody planned (a
        backup engine's, say)."""
        return self.reads[name] if name in self.reads else live()


@dataclass
class ScanContext:
    """One plugin about to scan (or having scanned) the message of a job."""

    job: JobContext
    plugin: Plugin


class Guard:
    """A policy around scans. Return a Verdict from ``before_scan`` to skip the plugin."""

    def plan_reads(self, job: JobContext, reads: Reads) -> None:
        """Queue the reads this guard will want for ``job.plugins``, before the message is
        even fetched; ``job.read`` gives their answers later."""

    def skip_job(self, job: JobContext) -> str | None:
        """Why no engine need scan this job, from the reads planned for it (before the
        message is unpacked); None to scan."""
        return None

    def before_job(self, job: JobContext) -> None:
        pass

    def after_job(self, job: JobContext) -> None:
        pass

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        return None

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        pass

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        pass


def safely(hook: Callable[..., Any], *args: Any) -> Any:
    """Run a guard hook; a failing guard is logged, never fatal to the scan."""
    try:
        return hook(*args)
    except SoftTimeLimitExceeded:
        raise
    except Exception:
        log.exception("guard hook %s failed", getattr(hook, "__qualname__", hook))
        return None
