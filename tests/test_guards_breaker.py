"""The circuit breaker guard: connection failures open it for every worker, an open breaker
answers for the plugin, a probe or the cooldown closes it."""

import time

from tasks.errors import BackendUnavailable
from tasks.guards.breaker import BreakerGuard
from tasks.wire.keys import BREAKER_OPEN_KEY
from tests.conftest import wait_for
from tests.guards_redis import details

OPEN = "circuit breaker open: backend down"


def open_key(plugin="stub"):
    return BREAKER_OPEN_KEY.format(plugin=plugin)


def test_an_open_breaker_answers_for_the_plugin_without_calling_it(pool_process):
    engine = pool_process.start("av", BreakerGuard())
    engine.healthy = False  # the probe finds the backend still down
    pool_process.redis.set(open_key(), 1, ex=60)
    result = pool_process.scan()
    assert (result.status, details(result)) == ("error", [OPEN])
    assert engine.scans == 0


def test_connection_failures_open_the_breaker_for_every_worker(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=3)
    engine.fails_with, engine.healthy = BackendUnavailable, False
    for _ in range(3):
        assert details(pool_process.scan()) == ["stub engine failed"]
    # Another worker, its own guard and engine: the breaker is in Redis.
    other = pool_process.start("av", BreakerGuard(), breaker_failures=3)
    assert details(pool_process.scan()) == [OPEN]
    assert (engine.scans, other.scans) == (3, 0)


def test_failures_that_are_not_the_backends_do_not_open_it(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=3)
    engine.fails_with = ValueError
    for _ in range(4):
        pool_process.scan()
    assert engine.scans == 4


def test_failures_spread_wider_than_the_window_do_not_open_it(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=3, breaker_window_s=1)
    engine.fails_with = BackendUnavailable
    pool_process.scan()
    pool_process.scan()
    time.sleep(1.2)
    pool_process.scan()
    pool_process.scan()
    assert engine.scans == 4


def test_the_breaker_closes_when_its_cooldown_ends(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=1, breaker_cooldown_s=1)
    engine.fails_with, engine.healthy = BackendUnavailable, False
    pool_process.scan()
    assert details(pool_process.scan()) == [OPEN]
    time.sleep(1.2)
    engine.fails_with = None
    assert pool_process.scan().status == "clean"
    assert engine.scans == 2


def test_a_probe_closes_the_breaker_as_soon_as_the_backend_answers(pool_process):
    engine = pool_process.start("av", BreakerGuard())
    pool_process.redis.set(open_key(), 1, ex=60)
    assert details(pool_process.scan()) == [OPEN]
    wait_for(lambda: not pool_process.redis.exists(open_key()), 5, "the probe to close it")
    assert pool_process.scan().status == "clean"
    assert engine.scans == 1


def test_a_probe_leaves_the_breaker_open_while_the_backend_is_down(pool_process):
    engine = pool_process.start("av", BreakerGuard())
    engine.healthy = False
    pool_process.redis.set(open_key(), 1, ex=60)
    assert details(pool_process.scan()) == [OPEN]
    time.sleep(0.5)  # the probe's thread has asked by now
    assert details(pool_process.scan()) == [OPEN]
    assert engine.scans == 0


def test_a_window_and_cooldown_under_a_second_still_work(pool_process):
    engine = pool_process.start("av", BreakerGuard(), breaker_failures=2,
                                breaker_window_s=0.5, breaker_cooldown_s=0.5)  # fmt: skip
    engine.fails_with, engine.healthy = BackendUnavailable, False
    pool_process.scan()
    pool_process.scan()
    assert details(pool_process.scan()) == [OPEN]
    time.sleep(0.6)
    engine.fails_with = None
    assert pool_process.scan().status == "clean"
    assert engine.scans == 3
