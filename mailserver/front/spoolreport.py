"""What this mailserver's spool holds, published to Redis for the spool alarm (beat) and
kept for the metrics endpoint; and, before each report, what the pools' health probes say
about the spool (mailserver/front/spoolsharing.py). The report also says whether the front's
verdict subscriber is up (``mailscan status``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis, RedisError

from mailserver.front.deadletter import CORRUPT, DEAD, DeadLetters
from mailserver.front.spool import Spool
from mailserver.front.spoolsharing import SpoolSharing
from tasks.wire import fleet
from tasks.wire.keys import SPOOL_REPORT_KEY

log = logging.getLogger(__name__)


@dataclass
class SpoolReporter:
    """Called by the redriver each interval, on a thread, with the pending spool ids."""

    redis: Redis
    hostname: str
    alarm_age_s: float
    # Which spool this is, and whether the pools read big messages from it: the pools'
    # health probes name the spool they see (mailscan status).
    sharing: SpoolSharing
    # Without its verdict subscriber a front makes every message wait its whole deadline.
    subscriber_alive: Callable[[], bool]
    # Where entries end that no outcome was reached for: each one is an alarm.
    dead_letters: DeadLetters | None = None
    latest: dict[str, float] = field(
        default_factory=lambda: {"count": 0, "oldest_age_s": 0.0, DEAD: 0, CORRUPT: 0}
    )

    def __call__(self, pending: list[str]) -> None:
        oldest = Spool.age_s(pending[0]) if pending else 0.0
        ended = self.dead_letters.counts() if self.dead_letters else {DEAD: 0, CORRUPT: 0}
        self.latest = {"count": len(pending), "oldest_age_s": oldest, "at": time.time(), **ended}
        self._follow_probes()
        report = self.latest | {
            "spool_id": self.sharing.spool_id,
            "spool_shared": self.sharing.shared,
            "verdict_subscriber": self.subscriber_alive(),
            "spool_dir": str(self.sharing.spool_dir),
        }
        if oldest > self.alarm_age_s:
            log.error("spool alarm: %d message(s), the oldest %.0f s without an outcome",
                      len(pending), oldest)  # fmt: skip
        try:
            self.redis.hset(SPOOL_REPORT_KEY, self.hostname, json.dumps(report))
        except RedisError as err:
            log.warning("could not publish the spool report: %s", err)

    def _follow_probes(self) -> None:
        try:
            self.sharing.follow(fleet.probes(self.redis), time.time())
        except RedisError as err:
            log.debug("health probes not read: %s", err)  # Redis away: mail waits anyway
        except Exception:  # a record this front cannot make sense of: the next may do
            log.exception("health probes not followed")
