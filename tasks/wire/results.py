"""A scan job's verdict, stored and published the way Celery's Redis result backend does, but
in the job's own write pipeline: one round trip at the end of a job instead of three (the
guards' writes, the backend's read of the old state, its store and publish).

The scan tasks ignore their return value (``ignore_result``) so Celery does not store it a
second time; failures (an exception, a hard time limit, a lost pool process) are still stored
by Celery (``store_errors_even_if_ignored``), and readers see no difference: the key, the
channel, the serializer and the fields are the backend's own (tests/test_results.py reads
them back through ``AsyncResult``).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import states

from tasks.wire.verdicts import EngineVerdict, PoolVerdict

log = logging.getLogger(__name__)


def store(pipe: Any, backend: Any, task_id: str, verdict: PoolVerdict) -> None:
    """``add`` the verdict to ``pipe`` and send the pipeline with whatever else it holds."""
    record = verdict.to_record()
    _add(pipe, backend, task_id, record)
    _send(pipe, backend, task_id, record)


def add(pipe: Any, backend: Any, task_id: str, verdict: PoolVerdict) -> None:
    """Add the SUCCESS meta of ``task_id`` to ``pipe``: SET with the backend's expiry, then
    PUBLISH on the key's channel, where the SMTP front listens (mailserver/front/verdicts.py)."""
    _add(pipe, backend, task_id, verdict.to_record())


def _add(pipe: Any, backend: Any, task_id: str, result: dict[str, Any]) -> None:
    key = backend.get_key_for_task(task_id)
    payload = backend.encode(_success_meta(backend, task_id, result))
    pipe.set(key, payload, ex=backend.expires or None)
    pipe.publish(key, payload)


def _send(pipe: Any, backend: Any, task_id: str, result: dict[str, Any]) -> None:
    """If Redis fails, the result is stored through the backend, which retries
    (``result_backend_always_retry``): a verdict is never dropped with the guards' counters."""
    try:
        with pipe:
            pipe.execute()
    except redis.RedisError as err:
        log.warning("job %s: result and guard writes failed (%s); storing it again", task_id, err)
        backend.store_result(task_id, result, states.SUCCESS)


def _success_meta(backend: Any, task_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": states.SUCCESS,
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": backend.app.now().isoformat(),
        "task_id": task_id,
    }


def summary(verdict: PoolVerdict) -> str:
    """One line for the job's return value, which is what Flower shows of it: the status and
    each engine's answer. The whole verdict is stored above; Celery's saferepr of it in every
    pool process was a tenth of a job's CPU there."""
    engines = ", ".join(_engine_answer(engine) for engine in verdict.engines)
    return f"{verdict.status}: {engines} ({verdict.elapsed_ms:.1f} ms)"


def _engine_answer(engine: EngineVerdict) -> str:
    virus = f" {engine.virus}" if engine.virus else ""
    return f"{engine.engine} {engine.status}{virus}"
