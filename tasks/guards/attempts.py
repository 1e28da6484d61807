"""Poison messages: attempts per message and plugin, counted in Redis across the fleet.

The count goes up before the plugin runs (a crash leaves no chance to count afterwards) and
is cleared once the plugin returns. A message that has killed or frozen the plugin
``max_attempts`` times is given up as unscannable, never retried in a loop; its content is
remembered for a day, so the same message sent again is given up at once.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from tasks.guards.base import Guard, JobContext, Reads, ScanContext
from tasks.guards.crashes import report
from tasks.plugins.base import Verdict
from tasks.wire.blobs import BlobRef
from tasks.wire.keys import ATTEMPTS_KEY, POISON_KEY

REMEMBER_S = 24 * 3600


def _keys(scan: ScanContext) -> tuple[str, str]:
    ref = scan.job.ref
    # Counted per spool entry (identical bulk mail scanned at once must not add up), but
    # remembered by content once given up.
    return _attempts_key(ref), _poison_key(ref)


def _attempts_key(ref: BlobRef) -> str:
    return ATTEMPTS_KEY.format(message=ref["blob"])


def _counted(plugin: str) -> str:
    return f"attempts:{plugin}"


def _poison_key(ref: BlobRef) -> str:
    return POISON_KEY.format(origin=ref.get("origin") or ref["blob"])


class AttemptsGuard(Guard):
    def plan_reads(self, job: JobContext, reads: Reads) -> None:
        poison_key = _poison_key(job.ref)
        for plugin in job.plugins:
            reads.add(f"poison:{plugin.name}", "hexists", poison_key, plugin.name)
        if job.plugins:
            # The first engine's attempt is counted with the message fetch, before any plugin
            # runs, saving a round trip per job; the others' at their turn (if the first one
            # kills the process, they did not run and must not count).
            first = job.plugins[0].name
            attempts_key = _attempts_key(job.ref)
            reads.add(_counted(first), "hincrby", attempts_key, first, 1)
            reads.add("attempts:expire", "expire", attempts_key, REMEMBER_S)

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        (attempts_key, poison_key), name, redis = _keys(scan), scan.plugin.name, scan.job.redis
        known_poison = scan.job.read(f"poison:{name}", lambda: redis.hexists(poison_key, name))
        attempts = scan.job.reads.pop(_counted(name), None)
        if attempts is None:
            # Counted now, at once: if the plugin kills the process, nothing runs afterwards.
            with redis.pipeline(transaction=False) as pipe:
                attempts, _ = (
                    pipe.hincrby(attempts_key, name, 1).expire(attempts_key, REMEMBER_S).execute()
                )
        limit = scan.job.settings.max_attempts
        if attempts <= limit and not known_poison:
            return None
        note = f"given up as unscannable after {limit} attempts; the failure policy applies"
        if not known_poison:
            scan.job.redis.pipeline(transaction=False).hset(poison_key, name, 1).expire(
                poison_key, REMEMBER_S
            ).execute()
            report(scan, "poison", None, note=note)
        return Verdict(engine=name, status="error", detail=note, unscannable=True)

    def after_job(self, job: JobContext) -> None:
        # Counted with the fetch, but another guard answered instead (a cached verdict, an
        # open breaker): the engine never ran, so the attempt is taken back.
        for plugin in job.plugins[:1]:
            if _counted(plugin.name) in job.reads:
                job.writes.hincrby(_attempts_key(job.ref), plugin.name, -1)

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        if not verdict.unscannable:
            scan.job.writes.hdel(_keys(scan)[0], scan.plugin.name)

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        # The process survived the plugin's exception: only freezes count as attempts.
        if not isinstance(error, SoftTimeLimitExceeded):
            scan.job.writes.hdel(_keys(scan)[0], scan.plugin.name)
