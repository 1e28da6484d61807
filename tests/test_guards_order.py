"""The order in which the runner calls guard hooks, and what it does when a hook fails:
before-hooks in order, after-hooks and failure hooks in reverse, a failing guard logged and
passed over, Celery's soft time limit passed on."""

import logging

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tasks.guards import Guard
from tasks.plugins.base import Verdict
from tests.guards_redis import details


class Recording(Guard):
    """Writes each call of its hooks to ``calls``; raises ``raises`` from each hook named in
    ``raising`` (all by default); ``answers`` or ``skips`` the job when told to."""

    def __init__(self, name, calls, raises=None, raising=(), answers=False, skips=False):
        self.name, self.calls, self.raises, self.raising = name, calls, raises, raising
        self.answers, self.skips = answers, skips

    def _called(self, hook):
        self.calls.append(f"{hook} {self.name}")
        if self.raises and (not self.raising or hook in self.raising):
            raise self.raises(f"guard {self.name} broke in {hook}")

    def plan_reads(self, job, reads):
        self._called("plan_reads")

    def skip_job(self, job):
        self._called("skip_job")
        return f"skipped by {self.name}" if self.skips else None

    def before_job(self, job):
        self._called("before_job")

    def after_job(self, job):
        self._called("after_job")

    def before_scan(self, scan):
        self._called("before_scan")
        if self.answers:
            return Verdict(engine=scan.plugin.name, status="clean", detail=f"by {self.name}")
        return None

    def after_scan(self, scan, verdict):
        self._called("after_scan")

    def on_failure(self, scan, error):
        self._called("on_failure")


def guards(calls, **b_options):
    return [Recording("a", calls), Recording("b", calls, **b_options), Recording("c", calls)]


def seen(*hooks, order="abc"):
    return [f"{hook} {name}" for hook in hooks for name in order]


def test_before_hooks_run_in_order_and_after_hooks_in_reverse(pool_process):
    calls = []
    engine = pool_process.start("av", *guards(calls))
    assert pool_process.scan().status == "clean"
    assert engine.scans == 1
    assert calls == seen("plan_reads", "skip_job", "before_job", "before_scan") + seen(
        "after_scan", "after_job", order="cba"
    )


def test_a_failing_plugin_is_seen_by_the_failure_hooks_in_reverse(pool_process):
    calls = []
    engine = pool_process.start("av", *guards(calls))
    engine.fails_with = ValueError
    result = pool_process.scan()
    assert (result.status, details(result)) == ("error", ["ValueError: stub engine failed"])
    assert calls[-6:] == seen("on_failure", "after_job", order="cba")
    assert "after_scan a" not in calls


def test_a_guard_whose_hooks_raise_is_logged_and_the_job_goes_on(pool_process, caplog):
    calls = []
    engine = pool_process.start("av", *guards(calls, raises=RuntimeError))
    with caplog.at_level(logging.ERROR, logger="tasks.guards.base"):
        assert pool_process.scan().status == "clean"
    assert engine.scans == 1
    assert calls == seen("plan_reads", "skip_job", "before_job", "before_scan") + seen(
        "after_scan", "after_job", order="cba"
    )
    failed = [r for r in caplog.records if "guard hook" in r.getMessage()]
    assert len(failed) == 6  # each of b's hooks, once, with its traceback
    assert all(r.exc_info and "guard b broke" in str(r.exc_info[1]) for r in failed)


def test_a_guard_that_answers_stops_the_engine_and_the_guards_after_it(pool_process):
    calls = []
    engine = pool_process.start("av", *guards(calls, answers=True))
    result = pool_process.scan()
    assert (result.status, details(result)) == ("clean", ["by b"])
    assert engine.scans == 0
    # The answer is the verdict: no after_scan hook sees it, the job still ends for all.
    assert calls[-5:] == ["before_scan a", "before_scan b", *seen("after_job", order="cba")]


def test_a_job_a_guard_skips_is_seen_as_skipped_by_the_engines(pool_process):
    calls = []
    engine = pool_process.start("av", *guards(calls, skips=True))
    result = pool_process.scan()
    assert (result.status, details(result)) == ("clean", ["skipped by b"])
    assert engine.scans == 0
    # The first reason wins; nothing runs before the job or the scans.
    before = [*seen("plan_reads"), "skip_job a", "skip_job b"]
    assert calls == [*before, *seen("after_scan", "after_job", order="cba")]


def test_a_soft_time_limit_in_a_guard_reaches_celery_after_the_job_ends(pool_process):
    calls = []
    engine = pool_process.start(
        "av", *guards(calls, raises=SoftTimeLimitExceeded, raising=("before_scan",))
    )
    with pytest.raises(SoftTimeLimitExceeded):
        pool_process.scan()
    assert engine.scans == 0
    assert calls[-3:] == seen("after_job", order="cba")
