"""The floor of a scan job: a Celery app with mailscan's own configuration, transport and
task base, whose two scan tasks (the same names, queues and routes as ``tasks.scan``) fetch
nothing, ask no engine and run no guard: each stores and publishes a fixed "clean" verdict
in one round trip, as the runner does (``tasks.results.store``), and returns its summary.

What a pool costs per job on top of this is mailscan's runner, guards and plugin client;
this much any pool built on Celery's prefork workers with these settings pays.

With ``BENCH_FLOOR_ONE_JOB`` set (``python -m bench.floor --one-job``) only the av queue
gets a job per message, and that job publishes both verdicts, the spam job's id read from
its own: the floor of a design with one job per message instead of one per pool.

    celery -A bench.floorapp worker -Q av ...   (started by ``python -m bench.floor``)
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery, Task

from tasks import redisauth
from tasks.blobs import BlobRef
from tasks.celeryapp import celery_config
from tasks.constants import AV_POOL, SCAN_TASKS, SPAM_POOL
from tasks.isolation import ScanTask
from tasks.results import add, store, summary
from tasks.settings import current_settings
from tasks.submit import sibling_job_id
from tasks.transport import use_in_workers

app = Celery("mailscan-floor")
use_in_workers()
_clients: dict[int, redis.Redis] = {}
ONE_JOB = bool(os.environ.get("BENCH_FLOOR_ONE_JOB"))


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.config_from_object(celery_config(current_settings()))


def _client() -> redis.Redis:
    # One per pool process, made after the fork, as the runner's.
    pid = os.getpid()
    if pid not in _clients:
        _clients.clear()
        _clients[pid] = redisauth.connect(current_settings(), socket_timeout=10)
    return _clients[pid]


def _answer(task: Task, pool: str) -> str:
    result = _verdict(task, pool)
    pipe = _client().pipeline(transaction=False)
    if ONE_JOB:
        spam_id = sibling_job_id(task.request.id, SPAM_POOL)
        add(pipe, task.backend, spam_id, _verdict(task, SPAM_POOL))
    store(pipe, task.backend, task.request.id, result)
    return summary(result)


def _verdict(task: Task, pool: str) -> dict[str, Any]:
    return {
        "pool": pool,
        "status": "clean",
        "verdicts": [],
        "unscannable": False,
        "elapsed_ms": 0.0,
        "worker": task.request.hostname or "",
    }


@app.task(name=SCAN_TASKS[AV_POOL], bind=True, base=ScanTask, ignore_result=True)
def floor_av(self: Task, ref: BlobRef) -> str:
    return _answer(self, AV_POOL)


@app.task(name=SCAN_TASKS[SPAM_POOL], bind=True, base=ScanTask, ignore_result=True)
def floor_spam(self: Task, ref: BlobRef) -> str:
    return _answer(self, SPAM_POOL)
