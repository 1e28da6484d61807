"""Scan job ids: the ones ``job_ids`` makes, and the strict reading of one.

A scan job's id is ``<blob id>-<pool>-<stamp>``: the blob id first so Flower shows which
message a job belongs to; the stamp, the wall clock just before the enqueue in nanoseconds
as 16 hex digits, keeps a re-driven message's new jobs apart from the old ones and tells
the SMTP front's admission check how long a job has waited.

Other jobs share the scan queues: beat's health probes, anything sent through Celery. Their
ids are Celery uuids, whose last field is hex too and reads as a time in 1970. So an id is
a scan job's only when every part has the shape ``job_ids`` gives it; any other id is read
as no scan job at all, never as an old one.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

from tasks.wire.keys import POOLS

# time_ns() has 16 hex digits from 2006 to 2554.
_STAMP = re.compile(r"[0-9a-f]{16}")


class ScanJobId(NamedTuple):
    blob_id: str
    pool: str
    enqueued_at: float  # the front's wall clock just before the enqueue (s)


def job_ids(blob_id: str) -> dict[str, str]:
    """The job id per pool of one message's scan."""
    stamp = f"{time.time_ns():016x}"
    return {pool: f"{blob_id}-{pool}-{stamp}" for pool in POOLS}


def parse_job_id(task_id: str) -> ScanJobId | None:
    """What the id of a scan job says; None for an id ``job_ids`` did not make."""
    blob_id, _, rest = task_id.rpartition("-")  # a blob id may hold dashes, a pool not
    blob_id, _, pool = blob_id.rpartition("-")
    if not blob_id or pool not in POOLS or not _STAMP.fullmatch(rest):
        return None
    return ScanJobId(blob_id, pool, int(rest, 16) / 1e9)


def sibling_job_id(task_id: str, pool: str) -> str | None:
    """The id ``job_ids`` gave the same message's job in ``pool``; None for an id it did
    not make."""
    job = parse_job_id(task_id)
    if job is None:
        return None
    stamp = task_id.rpartition("-")[2]
    return f"{job.blob_id}-{pool}-{stamp}"
