"""A scan job's id is read strictly: only an id ``job_ids`` made says when its job was
enqueued. Beat's health probes and other Celery jobs carry uuids whose last field is hex
too; read loosely, they looked enqueued in 1970."""

from __future__ import annotations

import time

import pytest

from tasks.wire.jobids import job_ids, parse_job_id, sibling_job_id

SPOOL_ID = "0193a5b2c4d1e8f9a0b1c2d3"
STAMP = "18eee43ef7b927d0"  # as job_ids writes time.time_ns()


def test_an_id_job_ids_made_reads_back_with_its_message_pool_and_enqueue_time():
    before = time.time()
    ids = job_ids(SPOOL_ID)
    for pool, task_id in ids.items():
        job = parse_job_id(task_id)
        assert job is not None
        assert (job.blob_id, job.pool) == (SPOOL_ID, pool)
        assert before - 0.01 <= job.enqueued_at <= time.time() + 0.01


def test_a_blob_id_with_dashes_keeps_them():
    assert parse_job_id(job_ids("cli-upload-7")["spam"]) == (
        "cli-upload-7",
        "spam",
        pytest.approx(time.time(), abs=1),
    )


@pytest.mark.parametrize(
    "task_id",
    [
        "309b688f-aec9-4304-9655-dc5b36ce73d5",  # beat's health probe: a Celery uuid
        "3b8f3c4e-1234-4abc-av-0123456789ab",  # a pool's name, but a uuid field for a stamp
        f"{SPOOL_ID}-av-{STAMP}z",  # a stamp that is not hex
        f"{SPOOL_ID}-av-{STAMP[1:]}",  # 15 digits
        f"{SPOOL_ID}-ops-{STAMP}",  # not a scan pool
        f"-av-{STAMP}",  # no message
        f"{SPOOL_ID}-AV-{STAMP.upper()}",
        "probe-av-1",  # a test's own id
        "operator.check",
        "",
    ],
)
def test_any_other_id_is_no_scan_job_not_an_old_one(task_id):
    assert parse_job_id(task_id) is None
    assert sibling_job_id(task_id, "av") is None


def test_the_sibling_of_a_spam_job_is_the_same_messages_av_job():
    ids = job_ids(SPOOL_ID)
    assert sibling_job_id(ids["spam"], "av") == ids["av"]
