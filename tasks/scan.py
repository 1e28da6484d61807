"""The scan tasks: one per pool, each a thin call into the runner."""

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
    result = runner.scan(pool, ref, current_settings(), task.request.id, hostname)
    # Which worker answered is part of the verdict: tests and operators can see that the
    # av and spam jobs of one message really ran in different pools.
    result["worker"] = hostname
    return result


@app.task(name=SCAN_TASKS[AV_POOL], bind=True, base=ScanTask)
def scan_av(self: Task, ref: BlobRef) -> dict[str, Any]:
    return _run(self, AV_POOL, ref)


@app.task(name=SCAN_TASKS[SPAM_POOL], bind=True, base=ScanTask)
def scan_spam(self: Task, ref: BlobRef) -> dict[str, Any]:
    return _run(self, SPAM_POOL, ref)
