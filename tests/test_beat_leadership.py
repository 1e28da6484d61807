"""Beat's lead through a Redis that goes away for a moment: it keeps its lock's token and
renews at the next tick, instead of standing by until its own lock expires (the schedule
idle meanwhile); a lock found to be another's ends the lead."""

from __future__ import annotations

from typing import Any

import redis

from beat.scheduler import Leadership


class ScriptedLock:
    """Answers each call with the next of ``answers`` (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers, self.calls = list(answers), []

    def acquire(self, blocking: bool, token: str) -> Any:
        assert blocking is False
        assert token
        return self._answer("acquire")

    def reacquire(self) -> Any:
        return self._answer("reacquire")

    def _answer(self, call: str) -> Any:
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_redis_away_for_a_tick_keeps_the_lead() -> None:
    lock = ScriptedLock(True, redis.ConnectionError("primary gone"), True)
    lead = Leadership(lock)
    assert [lead.hold(), lead.hold(), lead.hold()] == [True, False, True]
    assert lock.calls == ["acquire", "reacquire", "reacquire"]  # renewed with its token


def test_a_lock_found_to_be_anothers_ends_the_lead() -> None:
    taken = redis.exceptions.LockNotOwnedError("not owned")
    lock = ScriptedLock(True, taken, False)
    lead = Leadership(lock)
    assert [lead.hold(), lead.hold(), lead.hold()] == [True, False, False]
    assert lock.calls == ["acquire", "reacquire", "acquire"]  # stands by, tries anew
    assert lead.leading is False
