"""The scan tasks: one per pool, each a thin call into the runner, which stores the verdict
itself (tasks/wire/results.py); Celery stores only failures. A task returns a one-line summary,
what Flower shows as its result."""

from __future__ import annotations

from celery import Task

from tasks import runner
from tasks.celery import app
from tasks.isolation import ScanTask
from tasks.settings import current_settings
from tasks.wire.blobs import BlobRef
from tasks.wire.keys import AV_POOL, SCAN_TASKS, SPAM_POOL
from tasks.wire.results import summary


def _run(task: Task, pool: str, ref: BlobRef) -> str:
    hostname = task.request.hostname or ""
    settings = current_settings()
    return summary(runner.scan(pool, ref, settings, task.request.id, hostname, task.backend))


@app.task(name=SCAN_TASKS[AV_POOL], bind=True, base=ScanTask, ignore_result=True)
def scan_av(self: Task, ref: BlobRef) -> str:
    return _run(self, AV_POOL, ref)


@app.task(name=SCAN_TASKS[SPAM_POOL], bind=True, base=ScanTask, ignore_result=True)
def scan_spam(self: Task, ref: BlobRef) -> str:
    return _run(self, SPAM_POOL, ref)
