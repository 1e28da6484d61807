"""The virus-first guard: a spam job whose message the av pool found infected (or with a
banned attachment) is answered without the spam engine; any other spam job is scanned."""

import pytest

from tasks.celery import app
from tasks.guards.virusfirst import SKIPPED, VirusFirstGuard
from tasks.wire import results
from tasks.wire.jobids import job_ids
from tasks.wire.verdicts import PoolVerdict
from tests.conftest import GTUBE
from tests.guards_redis import MESSAGE, details

SPAM = MESSAGE + GTUBE.encode() + b"\r\n"


def scan_after_av(pool_process, ref, av_status):
    """The spam job of ``ref``, after its av job (one enqueue, so one stamp in their ids)
    stored ``av_status``, or before the av job answered when None."""
    ids = job_ids(ref["blob"])
    if av_status:
        av = PoolVerdict("av", av_status)
        results.store(pool_process.redis.pipeline(transaction=False), app.backend, ids["av"], av)
    return pool_process.scan(ref, ids["spam"])


@pytest.mark.parametrize("av_status", ["infected", "banned"])
def test_a_spam_job_of_an_infected_or_banned_message_is_not_scanned(pool_process, av_status):
    engine = pool_process.start("spam", VirusFirstGuard())
    ref = pool_process.store(SPAM)
    result = scan_after_av(pool_process, ref, av_status)
    assert (result.status, details(result)) == ("skipped", [SKIPPED])
    assert engine.scans == 0


@pytest.mark.parametrize("av_status", ["clean", "error", None])
def test_a_spam_job_is_scanned_unless_the_av_pool_found_a_virus(pool_process, av_status):
    engine = pool_process.start("spam", VirusFirstGuard())
    ref = pool_process.store(SPAM)
    assert scan_after_av(pool_process, ref, av_status).status == "spam"
    assert engine.scans == 1


def test_a_banned_message_is_scanned_when_a_recipients_policy_may_let_it_pass(pool_process):
    engine = pool_process.start("spam", VirusFirstGuard())
    ref = {**pool_process.store(SPAM), "ban_may_pass": True}
    assert scan_after_av(pool_process, ref, "banned").status == "spam"
    assert engine.scans == 1
    infected = {**pool_process.store(SPAM + b"again\r\n"), "ban_may_pass": True}
    assert scan_after_av(pool_process, infected, "infected").status == "skipped"
