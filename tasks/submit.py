"""Enqueue the two scan jobs of one message: the bytes go to Redis once, each job carries
only the reference."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery

from tasks import blobs
from tasks.constants import POOLS, SCAN_TASKS


def submit(
    app: Celery, redis: Any, blob_id: str, data: bytes, ttl_s: int, origin: str = ""
) -> dict[str, str]:
    """Return the job id per pool. Ids start with the blob id so Flower shows which message a
    job belongs to; the suffix keeps a re-driven message's new jobs apart from the old ones."""
    ref = blobs.put(redis, blob_id, data, ttl_s, origin)
    suffix = f"{time.time_ns():x}"
    task_ids = {pool: f"{blob_id}-{pool}-{suffix}" for pool in POOLS}
    # One producer (one pooled broker connection) for both jobs of the message.
    with app.producer_or_acquire() as producer:
        for pool in POOLS:
            app.send_task(SCAN_TASKS[pool], args=[ref], task_id=task_ids[pool], producer=producer)
    return task_ids
