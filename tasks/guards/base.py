"""The guard interface and the context a guard sees."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis

from tasks.blobs import BlobRef
from tasks.crashstore import CrashStore
from tasks.plugins.base import Plugin, Verdict
from tasks.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """One scan job in one pool process."""

    pool: str
    job_id: str
    ref: BlobRef
    hostname: str
    settings: Settings
    redis: Redis
    crashes: CrashStore
    message: bytes = b""


@dataclass
class ScanContext:
    """One plugin about to scan (or having scanned) the message of a job."""

    job: JobContext
    plugin: Plugin


class Guard:
    """A policy around scans. Return a Verdict from ``before_scan`` to skip the plugin."""

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


def default_guards() -> list[Guard]:
    from tasks.guards.attempts import AttemptsGuard
    from tasks.guards.breaker import BreakerGuard
    from tasks.guards.cache import VerdictCacheGuard
    from tasks.guards.crashes import CrashGuard
    from tasks.guards.metrics import MetricsGuard
    from tasks.guards.watchdog import WatchdogGuard

    # Order matters: the watchdog arms first and disarms last; a cached verdict needs no
    # backend; the breaker is asked before an attempt is counted, so a skipped plugin does
    # not count against a message.
    return [
        WatchdogGuard(), MetricsGuard(), VerdictCacheGuard(), BreakerGuard(), AttemptsGuard(),
        CrashGuard(),
    ]  # fmt: skip
