"""The console's own logic behind its login limits and sessions, on a Redis of its own and a
clock the test moves: how long a guesser waits, when a session ends, and how many argon2
checks run at once. Over real HTTP, the same is in tests/test_console_sessions.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mailserver.console import auth
from mailserver.console.auth import PasswordCheck, UserFile
from mailserver.console.sessions import Sessions
from mailserver.console.throttle import (
    FIRST_WAIT_S,
    FREE_FAILURES_PER_CLIENT,
    FREE_FAILURES_PER_NAME,
    LONGEST_WAIT_S,
    LoginThrottle,
    wait_after,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(guard_redis, clock) -> LoginThrottle:
    guard_redis.flushdb()
    return LoginThrottle(guard_redis, clock)


def test_the_wait_doubles_after_the_free_failures_up_to_a_cap():
    assert [wait_after(n, 5) for n in range(5)] == [0.0] * 5
    assert wait_after(5, 5) == FIRST_WAIT_S
    assert wait_after(6, 5) == 2 * FIRST_WAIT_S
    assert wait_after(7, 5) == 4 * FIRST_WAIT_S
    assert wait_after(10_000, 5) == LONGEST_WAIT_S


def test_a_name_waits_after_its_free_failures_from_any_address(throttle, clock):
    for n in range(FREE_FAILURES_PER_NAME):
        assert throttle.wait_s(f"192.0.2.{n}", "admin") == 0.0
        throttle.failed(f"192.0.2.{n}", "admin")
    assert throttle.wait_s("198.51.100.1", "admin") == FIRST_WAIT_S  # a fresh address too
    assert throttle.wait_s("198.51.100.1", "carol") == 0.0  # another name is not held
    clock.now += FIRST_WAIT_S - 1
    assert throttle.wait_s("198.51.100.1", "admin") == 1.0
    clock.now += 1
    assert throttle.wait_s("198.51.100.1", "admin") == 0.0
    throttle.failed("198.51.100.1", "admin")
    assert throttle.wait_s("198.51.100.1", "admin") == 2 * FIRST_WAIT_S


def test_a_success_forgets_the_names_failures_but_not_the_addresses(throttle):
    for _ in range(FREE_FAILURES_PER_NAME):
        throttle.failed("192.0.2.1", "admin")
    throttle.succeeded("admin")
    assert throttle.wait_s("192.0.2.9", "admin") == 0.0
    for n in range(FREE_FAILURES_PER_CLIENT - FREE_FAILURES_PER_NAME):
        throttle.failed("192.0.2.1", f"guess{n}")
    assert throttle.wait_s("192.0.2.1", "admin") == FIRST_WAIT_S


def test_an_address_waits_after_its_free_failures_whatever_the_names(throttle, guard_redis):
    for n in range(FREE_FAILURES_PER_CLIENT):
        throttle.failed("192.0.2.1", f"guess{n}")
    assert throttle.wait_s("192.0.2.1", "admin") == FIRST_WAIT_S
    assert throttle.wait_s("192.0.2.2", "admin") == 0.0
    keys = guard_redis.keys("mailscan:console:login-failures:*")
    assert keys
    assert all(0 < guard_redis.ttl(key) <= 3600 for key in keys)  # forgotten in time
    assert not any(b"192.0.2" in key or b"guess" in key for key in keys)  # digests only


@pytest.fixture
def users(tmp_path) -> UserFile:
    users = UserFile(tmp_path / "users.json")
    users.add("admin", "first password")
    users.add("bob", "bobs password")
    return users


@pytest.fixture
def sessions(guard_redis, users, clock) -> Sessions:
    guard_redis.flushdb()
    return Sessions(guard_redis, users, 3600.0, clock)


def test_a_session_ends_at_its_lifetime_however_busy(sessions, clock, guard_redis):
    started = sessions.begin("admin")
    assert 3590 <= guard_redis.ttl(guard_redis.keys("mailscan:console:session:*")[0]) <= 3600
    for _ in range(59):
        clock.now += 60
        assert sessions.who(started) == "admin"
    clock.now += 60
    assert sessions.who(started) is None
    assert not guard_redis.keys("mailscan:console:session:*")
    assert started.encode() not in b"".join(guard_redis.keys("*"))  # only a digest is kept


def test_a_session_ends_at_logout_new_password_and_removal(sessions, users):
    out, changed, removed, other = (sessions.begin(name) for name in ("admin",) * 3 + ("bob",))
    sessions.end(out)
    assert sessions.who(out) is None
    users.add("admin", "first password")  # the same password again is a new hash
    assert sessions.who(changed) is None
    assert sessions.who(other) == "bob"
    users.remove("bob")
    assert sessions.who(other) is None
    assert sessions.who(removed) is None
    assert sessions.who("never-issued") is None


class SlowUsers:
    """Stands for the users file: each check takes a while and counts how many overlap."""

    def __init__(self) -> None:
        self.running = self.most = 0
        self.lock = threading.Lock()

    def verify(self, name: str, password: str) -> bool:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.1)
        with self.lock:
            self.running -= 1
        return password == "right"


def test_a_flood_of_logins_runs_two_argon2_checks_at_a_time_off_the_loop(monkeypatch):
    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY_S", 0.0)
    users = SlowUsers()

    async def flood() -> tuple[list[bool], int]:
        check = PasswordCheck(users)  # type: ignore[arg-type]
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        results = await asyncio.gather(*(check.check("admin", p) for p in ["right", "x"] * 5))
        ticker.cancel()
        return results, ticks

    results, ticks = asyncio.run(flood())
    assert results == [True, False] * 5
    assert users.most == auth.VERIFICATIONS_AT_ONCE == 2
    assert ticks >= 20  # the loop went on answering while the checks ran
