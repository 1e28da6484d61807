"""The poison-message guard: a message that keeps freezing (or killing) a plugin is given up
after ``max_attempts``, and the same message sent again is given up at once."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tasks.guards import Guard
from tasks.guards.attempts import AttemptsGuard
from tasks.plugins.base import Verdict

GIVEN_UP = "given up as unscannable after 3 attempts; the failure policy applies"


def freezes(pool_process, ref, times):
    for _ in range(times):
        with pytest.raises(SoftTimeLimitExceeded):
            pool_process.scan(ref)


def given_up(result):
    [verdict] = result.engines
    return (verdict.status, verdict.unscannable, verdict.detail) == (
        "error", True, GIVEN_UP,
    )  # fmt: skip


def test_a_message_that_keeps_freezing_the_plugin_is_given_up(pool_process):
    engine = pool_process.start("av", AttemptsGuard(), max_attempts=3)
    engine.fails_with = SoftTimeLimitExceeded
    ref = pool_process.store()
    freezes(pool_process, ref, 3)
    result = pool_process.scan(ref)
    assert given_up(result)
    assert result.unscannable
    assert engine.scans == 3
    [dump] = pool_process.crashes.dumps
    assert (dump["kind"], dump["message"], dump["note"]) == ("poison", ref, GIVEN_UP)


def test_the_same_message_sent_again_is_given_up_at_once(pool_process):
    engine = pool_process.start("av", AttemptsGuard(), max_attempts=3)
    engine.fails_with = SoftTimeLimitExceeded
    first = pool_process.store(origin="digest-of-the-message")
    freezes(pool_process, first, 3)
    assert given_up(pool_process.scan(first))
    again = pool_process.store(origin="digest-of-the-message")
    assert given_up(pool_process.scan(again))
    assert engine.scans == 3
    other = pool_process.store(origin="digest-of-another-message")
    freezes(pool_process, other, 1)
    assert engine.scans == 4


def test_a_scan_that_answers_clears_the_count(pool_process):
    engine = pool_process.start("av", AttemptsGuard(), max_attempts=3)
    ref = pool_process.store()
    engine.fails_with = SoftTimeLimitExceeded
    freezes(pool_process, ref, 2)
    engine.fails_with = None
    assert pool_process.scan(ref).status == "clean"
    engine.fails_with = SoftTimeLimitExceeded
    freezes(pool_process, ref, 3)
    assert engine.scans == 6


def test_an_exception_the_process_survives_is_no_attempt(pool_process):
    engine = pool_process.start("av", AttemptsGuard(), max_attempts=3)
    engine.fails_with = ValueError
    ref = pool_process.store()
    for _ in range(4):
        [verdict] = pool_process.scan(ref).engines
        assert (verdict.status, verdict.unscannable) == ("error", False)
    assert engine.scans == 4


class Answering(Guard):
    """Answers for the engine, as a cached verdict or an open breaker does."""

    def __init__(self):
        self.on = True

    def before_scan(self, scan):
        if not self.on:
            return None
        return Verdict(engine=scan.plugin.name, status="clean", detail="answered")


def test_a_message_another_guard_answered_for_has_no_attempt_counted(pool_process):
    answering = Answering()
    engine = pool_process.start("av", answering, AttemptsGuard(), max_attempts=3)
    ref = pool_process.store()
    for _ in range(3):
        assert pool_process.scan(ref).engines[0].detail == "answered"
    answering.on = False
    assert pool_process.scan(ref).status == "clean"
    assert engine.scans == 1
