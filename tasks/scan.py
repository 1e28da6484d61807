"""The scan tasks: one per pool, each a thin call into the runner, which stores the verdict
itself (tasks/results.py); Celery stores only failures."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks import runner
from tasks.blobs import BlobRef
from tasks.celeryapp import app
from tasks.constants import AV_POOL, SCAN_TASKS, SPAM_POOL
from tasks.isolation import ScanTask
from tasks.settings import current_settings


def _run(task: Task, pool: str, ref: BlobRef) -> dict[str, Any]:
    hostname = task.request.hostname or ""
    return runner.scan(pool, ref, current_settings(), task.request.id, hostname, task.backend)


@app.task(name=SCAN_TASKS[AV_POOL], bind=True, base=ScanTask, ignore_result=True)
def scan_av(self: Task, ref: BlobRef) -> dict[str, Any]:
    return _run(self, AV_POOL, ref)


@app.task(name=SCAN_TASKS[SPAM_POOL], bind=True, base=ScanTask, ignore_result=True)
def scan_spam(self: Task, ref: BlobRef) -> dict[str, Any]:
    return _run(self, SPAM_POOL, ref)
