"""A verdict the runner stores itself reads back as any Celery result does, and a Redis error
at the end of a job does not lose it."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest
import redis
from celery import states

from mailserver.supervisor.services import control_app
from tasks import redisauth
from tasks.wire import results
from tasks.wire.keys import RESULT_KEY_PREFIX
from tasks.wire.submit import submit
from tasks.wire.verdicts import EngineVerdict, PoolVerdict
from tests.conftest import make_message


@pytest.mark.integration
def test_a_verdict_reads_back_through_celery(stack, settings):
    app = control_app(settings)
    client = redisauth.connect(settings)
    job_ids = submit(app, client, "results-probe", make_message("plain").as_bytes(), 60)
    for pool, job_id in job_ids.items():
        async_result = app.AsyncResult(job_id)
        verdict = async_result.get(timeout=60)
        assert async_result.state == states.SUCCESS
        assert verdict["pool"] == pool
        assert verdict["worker"] == f"{pool}@{settings.hostname}"
        assert isinstance(async_result.date_done, datetime)
        ttl = client.ttl(RESULT_KEY_PREFIX + job_id)
        assert 0 < ttl <= app.conf.result_expires  # the backend's own expiry


class FailingPipe:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False

    def set(self, *_, **__):
        pass

    def publish(self, *_):
        pass

    def execute(self):
        raise redis.ConnectionError("Redis went away")


class Backend:
    """The few parts of Celery's Redis backend that results.store uses, and its fallback."""

    expires = None
    app = SimpleNamespace(now=datetime.now)

    def __init__(self):
        self.stored = []

    def get_key_for_task(self, task_id):
        return f"celery-task-meta-{task_id}"

    def encode(self, meta):
        return repr(meta).encode()

    def store_result(self, task_id, result, state):
        self.stored.append((task_id, result, state))


def test_a_failed_write_stores_the_verdict_through_the_backend():
    backend = Backend()
    verdict = PoolVerdict("av", "clean", worker="av@mx")
    results.store(FailingPipe(), backend, "job-1", verdict)
    assert backend.stored == [("job-1", verdict.to_record(), states.SUCCESS)]


def test_a_jobs_summary_names_each_engines_answer_and_the_virus():
    from tasks.wire.results import summary

    engines = (
        EngineVerdict("clamav", "infected", virus="Eicar-Signature"),
        EngineVerdict("builtin", "clean"),
    )
    result = PoolVerdict("av", "infected", engines, elapsed_ms=3.25)
    assert summary(result) == "infected: clamav infected Eicar-Signature, builtin clean (3.2 ms)"
