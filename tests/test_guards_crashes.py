"""The crash guard: every failure a plugin raises is handed to the crash store as a record
the administrator can read. (What the store keeps of it is the store's own test.)"""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.guards.crashes import CrashGuard


def failing_scan(pool_process, error):
    engine = pool_process.start("av", CrashGuard())
    engine.fails_with = error
    ref = pool_process.store()
    try:
        result = pool_process.scan(ref)
    except SoftTimeLimitExceeded:
        result = None
    return ref, result


@pytest.mark.parametrize(
    ("error", "kind"),
    [(ValueError, "exception"), (BackendUnavailable, "connection"),
     (BackendProtocol, "connection"), (SoftTimeLimitExceeded, "freeze")],
)  # fmt: skip
def test_a_failing_plugin_becomes_a_record_of_its_kind(pool_process, error, kind):
    ref, _ = failing_scan(pool_process, error)
    [dump] = pool_process.crashes.dumps
    assert dump["kind"] == kind
    assert (dump["pool"], dump["plugin"]) == ("av", {"name": "stub", "pool": "av"})
    assert dump["job_id"].startswith(ref["blob"] + "-av-")
    assert (dump["message"], dump["worker"]["host"]) == (ref, "test@host")
    assert dump["exception"]["type"] == error.__name__
    assert "stub engine failed" in dump["exception"]["message"]
    # Where the plugin failed, not only where the runner caught it.
    assert 'in scan\n    raise self.fails_with("stub engine failed")' in dump["traceback"]


def test_a_freeze_record_shows_where_the_plugin_was_stuck(pool_process):
    failing_scan(pool_process, SoftTimeLimitExceeded)
    [dump] = pool_process.crashes.dumps
    assert "Thread MainThread:" in dump["threads"]
    assert 'raise self.fails_with("stub engine failed")' in dump["threads"]


def test_repeats_of_a_failure_share_a_signature_and_another_failure_does_not(pool_process):
    failing_scan(pool_process, ValueError)
    failing_scan(pool_process, ValueError)
    failing_scan(pool_process, KeyError)
    failing_scan(pool_process, BackendUnavailable)
    first, repeat, other, connection = (d["signature"] for d in pool_process.crashes.dumps)
    assert first == repeat
    assert len({first, other, connection}) == 3


def test_a_scan_that_answers_leaves_no_record(pool_process):
    pool_process.start("av", CrashGuard())
    assert pool_process.scan().status == "clean"
    assert pool_process.crashes.dumps == []
