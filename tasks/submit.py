"""Enqueue the two scan jobs of one message: the bytes go to Redis once, each job carries
only the reference, and all three writes go out in one Redis round trip.

Celery builds the task messages (``app.amqp.as_task_v2``, its own protocol 2, serialized
by kombu); only the last step, kombu's Redis transport envelope and the LPUSH onto the
queue's list, is done here. Through ``send_task`` the same two jobs cost 3.4 ms of CPU
per message in the SMTP front (a task-sent event and a round trip per job); this way 0.5 ms
(``python -m bench.publish``). tests/test_submit.py checks that
the envelope stays the one kombu itself writes.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as envelope_json

from tasks import blobs
from tasks.constants import POOLS, SCAN_TASKS


def job_ids(blob_id: str) -> dict[str, str]:
    """The job id per pool. Ids start with the blob id so Flower shows which message a job
    belongs to; the suffix keeps a re-driven message's new jobs apart from the old ones and
    tells the SMTP front's admission check how long a job has waited."""
    suffix = f"{time.time_ns():x}"
    return {pool: f"{blob_id}-{pool}-{suffix}" for pool in POOLS}


def split_job_id(task_id: str) -> tuple[str, str, str]:
    """(blob id, pool, enqueue stamp) of an id ``job_ids`` made; ValueError for one it did
    not make."""
    blob_id, pool, stamp = task_id.rsplit("-", 2)  # a blob id may hold dashes, a pool not
    return blob_id, pool, stamp


def enqueued_at(task_id: str) -> float:
    """The wall clock just before the job was enqueued, read from its id (ns in hex)."""
    return int(split_job_id(task_id)[2], 16) / 1e9


def sibling_job_id(task_id: str, pool: str) -> str:
    """The id ``job_ids`` gave the same message's job in ``pool``."""
    blob_id, _, stamp = split_job_id(task_id)
    return f"{blob_id}-{pool}-{stamp}"


def submit(
    app: Celery,
    redis: Any,
    blob_id: str,
    data: bytes,
    ttl_s: int,
    origin: str = "",
    task_ids: dict[str, str] | None = None,
    content: str = "",
    pools: tuple[str, ...] = POOLS,
    top: bytes = b"",
    spooled: bool = False,
) -> dict[str, str]:
    """Store the message and enqueue its jobs (ids from ``job_ids``, made here unless the
    caller made them to listen for the results first); return the job id per pool.
    The pools scan ``top + data``: ``top``, header lines the front puts in front.
    ``content``: the message's ``blobs.content_key`` when the caller has it. ``pools``: the
    queues that get a job (a benchmark's floor enqueues one job for both). ``spooled``: the
    pools read ``data`` from spool entry ``blob_id``; only ``top`` goes to Redis."""
    if spooled:  # stored raw: the pools append the spool's bytes to it
        stored, packing = top, blobs.RAW
        ref = blobs.reference(blob_id, data, origin, content, packing, top)
        ref["spool"] = blob_id
    else:
        whole = top + data  # no copy without a top: CPython returns data itself
        stored, packing = blobs.pack(whole)
        ref = blobs.reference(blob_id, whole, origin, content, packing)
    task_ids = task_ids or job_ids(blob_id)
    with redis.pipeline(transaction=False) as pipe:
        # The blob first: a worker that pops a job finds its message already stored.
        blobs.store(pipe, blob_id, stored, ttl_s)
        for pool in pools:
            pipe.lpush(pool, task_envelope(app, pool, task_ids[pool], ref))
        pipe.execute()
    return task_ids


def task_envelope(app: Celery, queue: str, task_id: str, ref: blobs.BlobRef) -> str:
    """The scan job as kombu's Redis transport stores it on the queue's list: the message
    Celery would publish, with the body base64-encoded and the delivery info kombu adds.
    The scan queues are bound to the default exchange (tasks/celeryapp.py), so the routing
    key is the queue, which is also how kombu puts back an unacknowledged job."""
    args = [ref]
    message = app.amqp.as_task_v2(
        task_id,
        SCAN_TASKS[queue],
        args=args,
        ignore_result=None,
        reply_to=app.thread_oid,
        # What Flower shows as the arguments. Celery's saferepr cost 0.2 ms per job; the
        # reference is short and plain, so repr says the same.
        argsrepr=repr(args),
        kwargsrepr="{}",
    )
    content_type, encoding, body = serialize(message.body, serializer=app.conf.task_serializer)
    properties = {
        **message.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return envelope_json(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": message.headers,
            "properties": properties,
        }
    )
