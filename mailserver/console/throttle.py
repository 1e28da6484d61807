"""How often a login may be tried. Failures are counted in Redis per client address and per
name, known or not, so every console of the site counts together and the answer never says
whether a name exists. After a few failures each further try must wait, twice as long after
every new failure up to a cap; a try that comes too early is not heard at all (and does not
count), so hammering gains nothing and cannot lock the administrator out for longer.
A successful login forgets the name's failures; the counts expire after a quiet hour."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import redis

from tasks.wire.keys import CONSOLE_LOGIN_FAILURES_KEY

# A mistyped password or two costs nothing; a guesser from one address meets the wait after
# a handful of names, a guesser spread over many addresses after a handful per name.
FREE_FAILURES_PER_NAME = 5
FREE_FAILURES_PER_CLIENT = 10
FIRST_WAIT_S = 4.0
LONGEST_WAIT_S = 15 * 60.0
FORGET_AFTER_S = 3600


def wait_after(failures: int, free: int) -> float:
    """Seconds to wait after the last of ``failures``, when ``free`` cost nothing."""
    if failures < free:
        return 0.0
    return min(FIRST_WAIT_S * 2 ** min(failures - free, 32), LONGEST_WAIT_S)


def _key(by: str, subject: str) -> str:
    # A digest: a name or address of any length and any characters makes a short key.
    digest = hashlib.sha256(subject.encode()).hexdigest()
    return CONSOLE_LOGIN_FAILURES_KEY.format(by=by, digest=digest)


class LoginThrottle:
    """Counts failed logins and says how long the next try must wait; raises
    ``redis.RedisError`` when Redis cannot answer."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def wait_s(self, client_address: str, name: str) -> float:
        """Seconds before a login from this address for this name is heard again."""
        limits = ((_key("client", client_address), FREE_FAILURES_PER_CLIENT),
                  (_key("name", name), FREE_FAILURES_PER_NAME))  # fmt: skip
        with self.client.pipeline(transaction=False) as pipe:
            for key, _ in limits:
                pipe.hmget(key, "count", "last")
            counts = pipe.execute()
        waits = [
            float(last) + wait_after(int(count), free) - self.clock()
            for (_, free), (count, last) in zip(limits, counts, strict=True)
            if count is not None and last is not None
        ]
        return max([0.0, *waits])

    def failed(self, client_address: str, name: str) -> None:
        now = self.clock()
        with self.client.pipeline(transaction=True) as pipe:
            for key in (_key("client", client_address), _key("name", name)):
                pipe.hincrby(key, "count", 1).hset(key, "last", now).expire(key, FORGET_AFTER_S)
            pipe.execute()

    def succeeded(self, name: str) -> None:
        self.client.delete(_key("name", name))
