"""Poison messages: attempts per message and plugin, counted in Redis across the fleet.

The count goes up before the plugin runs (a crash leaves no chance to count afterwards) and
is cleared once the plugin returns. A message that has killed or frozen the plugin
``max_attempts`` times is given up as unscannable, never retried in a loop.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from tasks.constants import ATTEMPTS_KEY
from tasks.guards.base import Guard, ScanContext
from tasks.guards.crashes import report
from tasks.plugins.base import Verdict

ATTEMPTS_TTL_S = 24 * 3600


class AttemptsGuard(Guard):
    def _key(self, scan: ScanContext) -> str:
        # By content where known: a sender retrying the same poison message is recognised.
        ref = scan.job.ref
        return ATTEMPTS_KEY.format(message=ref.get("origin") or ref["blob"])

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        key, name = self._key(scan), scan.plugin.name
        with scan.job.redis.pipeline(transaction=False) as pipe:
            attempts = pipe.hincrby(key, name, 1).expire(key, ATTEMPTS_TTL_S).execute()[0]
        limit = scan.job.settings.max_attempts
        if attempts <= limit:
            return None
        note = f"given up as unscannable after {limit} attempts; the failure policy applies"
        if attempts == limit + 1:
            report(scan, "poison", None, note=note)
        return Verdict(engine=name, status="error", detail=note, unscannable=True)

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        if not verdict.unscannable:
            scan.job.redis.hdel(self._key(scan), scan.plugin.name)

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        # The process survived the plugin's exception: only freezes count as attempts.
        if not isinstance(error, SoftTimeLimitExceeded):
            scan.job.redis.hdel(self._key(scan), scan.plugin.name)
