"""Poison messages: attempts per message and plugin, counted in Redis across the fleet.

The count goes up before the plugin runs (a crash leaves no chance to count afterwards) and
is cleared once the plugin returns. A message that has killed or frozen the plugin
``max_attempts`` times is given up as unscannable, never retried in a loop; its content is
remembered for a day, so the same message sent again is given up at once.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from tasks.constants import ATTEMPTS_KEY, POISON_KEY
from tasks.guards.base import Guard, ScanContext
from tasks.guards.crashes import report
from tasks.plugins.base import Verdict

REMEMBER_S = 24 * 3600


def _keys(scan: ScanContext) -> tuple[str, str]:
    ref = scan.job.ref
    attempts = ATTEMPTS_KEY.format(message=ref["blob"])
    # Counted per spool entry (identical bulk mail scanned at once must not add up), but
    # remembered by content once given up.
    poison = POISON_KEY.format(origin=ref.get("origin") or ref["blob"])
    return attempts, poison


class AttemptsGuard(Guard):
    def before_scan(self, scan: ScanContext) -> Verdict | None:
        (attempts_key, poison_key), name = _keys(scan), scan.plugin.name
        with scan.job.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(attempts_key, name, 1).expire(attempts_key, REMEMBER_S)
            attempts, _, known_poison = pipe.hexists(poison_key, name).execute()
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

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        if not verdict.unscannable:
            scan.job.redis.hdel(_keys(scan)[0], scan.plugin.name)

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        # The process survived the plugin's exception: only freezes count as attempts.
        if not isinstance(error, SoftTimeLimitExceeded):
            scan.job.redis.hdel(_keys(scan)[0], scan.plugin.name)
