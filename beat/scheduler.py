"""A beat scheduler that runs only while it holds a lock in Redis.

Compose runs one beat; if a second one is started anyway (a second host, a stray `mailscan
up`), it waits instead of doubling every periodic task. The holder renews its lock at every
tick; if it dies, another takes over when the lock expires.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from celery.beat import PersistentScheduler

from tasks import redisauth
from tasks.settings import current_settings
from tasks.wire.keys import BEAT_LOCK_KEY

log = logging.getLogger(__name__)
# A holder renews far more often than this; a dead holder is replaced within it.
LOCK_TTL_S = 30
WAIT_S = 5.0


class Leadership:
    """Whether this beat runs the schedule: while it holds the lock, renewed at every tick."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock  # a redis-py Lock
        self.leading = False

    def hold(self) -> bool:
        """True when this beat may run the schedule now. A Redis that does not answer (a
        failover, a restart) runs nothing this tick but keeps the lock's token: the lock,
        on the new primary or the restarted one, is still ours, and giving it up would leave
        the schedule idle until it expired. Only a lock found to be another's, or gone,
        ends the lead."""
        try:
            if self.leading:
                held = self._lock.reacquire()
            else:
                held = self._lock.acquire(blocking=False, token=uuid.uuid4().hex)
        except redis.exceptions.LockError as err:  # not ours any more: expired, or taken
            held = False
            log.warning("beat lock: %s", err)
        except redis.RedisError as err:
            log.warning("beat lock: %s; trying again", err)
            return False
        if held != self.leading:
            log.warning("beat %s the schedule", "now runs" if held else "stands by; another runs")
        self.leading = bool(held)
        return self.leading


class LockedScheduler(PersistentScheduler):
    """celery beat -S beat.scheduler:LockedScheduler"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._redis = redisauth.connect(current_settings(), socket_timeout=5)
        lock = self._redis.lock(BEAT_LOCK_KEY, timeout=LOCK_TTL_S, thread_local=False)
        self._leadership = Leadership(lock)
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._leadership.hold():
            return WAIT_S
        # Never sleep past the lock's lifetime, or another beat would take over meanwhile.
        return min(super().tick(*args, **kwargs), LOCK_TTL_S / 3)
