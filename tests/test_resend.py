"""Which messages the front submits again once Redis is back (mailserver/front/resend.py);
the fault itself is tests/test_isolation.py's job taken away while Redis restarts."""

from __future__ import annotations

from types import SimpleNamespace

from redis.exceptions import ConnectionError as RedisConnectionError

from mailserver.front.resend import JobResender


class Deletes:
    """The one Redis call the resender makes of its own."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def delete(self, key: str) -> int:
        self.keys.append(key)
        return 1


def test_each_waiting_message_is_submitted_again_once_and_finished_ones_not() -> None:
    waiter = SimpleNamespace(resend=None)
    resender, submitted = JobResender(waiter), []
    resender.expect(["m1-av", "m1-spam"], "m1", lambda: submitted.append("m1"))
    resender.expect(["m2-av", "m2-spam"], "m2", lambda: submitted.append("m2"))
    resender.expect(["m3-av", "m3-spam"], "m3", lambda: submitted.append("m3"))
    resender.done(["m3-av", "m3-spam"])
    assert waiter.resend(["m1-av", "m1-spam", "m2-spam", "m3-av", "gone-av"]) == 2
    assert sorted(submitted) == ["m1", "m2"]


def test_a_message_sent_again_starts_its_attempts_count_afresh() -> None:
    """A job the lost connection ended is not an attempt its content failed."""
    redis, order = Deletes(), []
    resender = JobResender(None, redis)
    resender.expect(["m1-av", "m1-spam"], "m1", lambda: order.append(list(redis.keys)))
    assert resender.resend(["m1-av", "m1-spam"]) == 1
    assert order == [["mailscan:attempts:m1"]], "cleared once, before the jobs go again"


def test_a_message_redis_refuses_again_is_counted_out_and_the_others_still_go() -> None:
    def refused() -> None:
        raise RedisConnectionError("down again")

    resender, submitted = JobResender(None), []
    resender.expect(["m1-av"], "m1", refused)
    resender.expect(["m2-av"], "m2", lambda: submitted.append("m2"))
    assert resender.resend(["m1-av", "m2-av"]) == 1
    assert submitted == ["m2"]
