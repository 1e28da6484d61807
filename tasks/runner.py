"""Runs a pool's plugins over one message and combines their verdicts.

The runner only orchestrates: it fetches the bytes, asks each engine through the guards
(tasks/guards/), and folds the answers. A plugin that fails becomes an ``error`` verdict for
that engine, never an exception that takes the job down; Celery's SoftTimeLimitExceeded
is the one exception that goes on, so Celery can end the job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from tasks import redisauth
from tasks.crashes.store import CrashStore
from tasks.errors import BlobMissing, ScanError, SpoolUnreadable
from tasks.guards import Guard, JobContext, ScanContext, default_guards
from tasks.guards.base import Reads, safely
from tasks.plugins import Plugin, Verdict, load_plugin
from tasks.settings import Settings
from tasks.wire import blobs, results
from tasks.wire.blobs import BlobRef, Message
from tasks.wire.keys import AV_POOL
from tasks.wire.verdicts import PoolVerdict, Status

log = logging.getLogger(__name__)

# Plugins, guards and the Redis client belong to one pool process: built on first use after
# the fork, rebuilt if the process id changes (a child must not share its parent's sockets).
_process_state: dict[str, Any] = {}


def _state(settings: Settings) -> dict[str, Any]:
    if _process_state.get("pid") != os.getpid():
        _process_state.clear()
        client = redisauth.connect(settings, socket_timeout=10)
        _process_state.update(
            pid=os.getpid(),
            redis=client,
            crashes=CrashStore(client, settings.crashdump_dir, settings.crashdump_full_every_s),
            guards=default_guards(),
            plugins={},
        )
    return _process_state


def _plugins(state: dict[str, Any], pool: str, names: tuple[str, ...], settings: Settings):
    key = (pool, names)
    if key not in state["plugins"]:
        state["plugins"][key] = [load_plugin(n, pool, settings) for n in names]
    return state["plugins"][key]


def scan(
    pool: str, ref: BlobRef, settings: Settings, job_id: str, hostname: str, backend: Any
) -> PoolVerdict:
    """Scan the referenced message with every plugin of the pool; store and return the pool
    verdict (with the guards' writes, in one round trip: tasks/wire/results.py)."""
    state = _state(settings)
    started = time.perf_counter()
    client, guards = state["redis"], state["guards"]
    job = JobContext(pool, job_id, ref, hostname, settings, client, state["crashes"])
    job.plugins = _plugins(state, pool, settings.pools[pool].plugins, settings)
    job.writes, job.backend = client.pipeline(transaction=False), backend
    spool_unreadable = False
    if _too_large_for_all(job.plugins, ref):
        verdicts = _skip_unread(job, guards, lambda plugin: plugin.too_large(started))
        status = combine(pool, verdicts)
    else:
        try:
            verdicts, status = _fetch_and_scan(job, guards, state, started)
        except BlobMissing as gone:
            # The bytes go when the message has its outcome (a job that waited past the
            # scan deadline) or when their TTL passes: nobody waits for this verdict now.
            log.warning("job %s not scanned: %s", job_id, gone)
            verdicts, status = [], "error"
            spool_unreadable = isinstance(gone, SpoolUnreadable)
    result = PoolVerdict(
        pool=pool,
        status=status,
        engines=tuple(verdicts),
        unscannable=any(v.unscannable for v in verdicts),
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        worker=hostname,
        # The front then sends the message again, through Redis (mailserver/front/pipeline.py).
        spool_unreadable=spool_unreadable,
    )
    _after_job(job, guards)
    results.store(job.writes, backend, job_id, result)
    return result


def _fetch_and_scan(
    job: JobContext, guards: list[Guard], state: dict[str, Any], started: float
) -> tuple[list[Verdict], Status]:
    """The verdicts of the pool's engines (and of the backup engines when allowed and
    needed), and the status they give."""
    _read(job, guards)
    reason = _skip_reason(job, guards)
    if reason:
        verdicts = _skip_unread(job, guards, lambda p: p.verdict("skipped", started, detail=reason))
        return verdicts, combine(job.pool, verdicts)
    message = job.message = _unpack(job)
    for guard in guards:
        safely(guard.before_job, job)
    try:
        verdicts = _scan_with(job, guards, job.plugins, message)
        status = combine(job.pool, verdicts)
        if status == "error" and _backup_allowed(job.pool, job.settings):
            backups = _plugins(
                state, job.pool, job.settings.pools[job.pool].backup_plugins, job.settings
            )
            backup = _scan_with(job, guards, backups, message)
            verdicts, status = verdicts + backup, combine(job.pool, backup)
    except BaseException:
        _after_job(job, guards)
        _send_writes(job)
        raise
    return verdicts, status


def _skip_unread(
    job: JobContext, guards: list[Guard], skipped: Callable[[Plugin], Verdict]
) -> list[Verdict]:
    """Every engine skips the message (for its size, or as a guard said) without its bytes
    being read; the guards see the skips as they would see skips by the engines themselves."""
    return [_answered(ScanContext(job, p), guards, skipped(p)) for p in job.plugins]


def _skip_reason(job: JobContext, guards: list[Guard]) -> str | None:
    return next(filter(None, (safely(guard.skip_job, job) for guard in guards)), None)


def _too_large_for_all(plugins: list[Plugin], ref: BlobRef) -> bool:
    """Every engine would skip the message for its size: no need to read it at all."""
    limits = [plugin.size_limit() for plugin in plugins]
    return bool(limits) and all(limit is not None and ref["size"] > limit for limit in limits)


def _after_job(job: JobContext, guards: list[Guard]) -> None:
    for guard in reversed(guards):
        safely(guard.after_job, job)


def _read(job: JobContext, guards: list[Guard]) -> None:
    """The message and every read the guards planned, in one round trip."""
    reads = Reads(job.redis)
    reads.add("message", "get", blobs.key(job.ref["blob"]))
    for guard in guards:
        safely(guard.plan_reads, job, reads)
    job.reads = reads.run()


def _unpack(job: JobContext) -> Message:
    return blobs.unpack(job.ref, job.reads.pop("message"), job.settings.spool_dir)


def _send_writes(job: JobContext) -> None:
    # Counters and cache entries: losing them to a Redis error must not fail the scan.
    try:
        with job.writes as pipe:
            pipe.execute()
    except redis.RedisError as err:
        log.warning("job %s: guard writes not stored: %s", job.job_id, err)


def _scan_with(
    job: JobContext, guards: list[Guard], plugins: list[Plugin], message: Message
) -> list[Verdict]:
    return [_ask(ScanContext(job, plugin), guards, message) for plugin in plugins]


def _backup_allowed(pool: str, settings: Settings) -> bool:
    """backup-engine: when the main engines could not answer, the backup engines scan."""
    return pool == AV_POOL and settings.pools[pool].failure_policy == "backup-engine"


def _ask(scan: ScanContext, guards: list[Guard], message: Message) -> Verdict:
    for guard in guards:
        skipped = safely(guard.before_scan, scan)
        if skipped is not None:
            return skipped
    started = time.perf_counter()
    try:
        verdict = scan.plugin.scan(message)
    except SoftTimeLimitExceeded as frozen:
        _failed(scan, guards, frozen)
        raise
    except Exception as error:
        # MemoryError too: raised out of a task it would shut the whole worker down.
        _failed(scan, guards, error)
        return scan.plugin.verdict("error", started, detail=_describe(error))
    return _answered(scan, guards, verdict)


def _answered(scan: ScanContext, guards: list[Guard], verdict: Verdict) -> Verdict:
    for guard in reversed(guards):
        safely(guard.after_scan, scan, verdict)
    return verdict


def _failed(scan: ScanContext, guards: list[Guard], error: BaseException) -> None:
    log.warning("plugin %s failed: %s", scan.plugin.name, _describe(error))
    for guard in reversed(guards):
        safely(guard.on_failure, scan, error)
    safely(scan.plugin.reset)


def _describe(error: BaseException) -> str:
    if isinstance(error, ScanError):
        return str(error)
    return f"{type(error).__name__}: {error}"[:500]


def combine(pool: str, verdicts: list[Verdict]) -> Status:
    """Infected (or spam) if any engine says so, else banned if the banned-attachment engine
    says so; unknown if any engine failed and none found anything: one engine's "clean" does
    not vouch for another that could not look."""
    statuses = {v.status for v in verdicts}
    positive = "infected" if pool == AV_POOL else "spam"
    if positive in statuses:
        return positive
    if "banned" in statuses:
        return "banned"
    if "error" in statuses:
        return "error"
    if pool == AV_POOL:
        return "clean"
    return "skipped" if statuses == {"skipped"} else "ham"
