"""Enqueue the two scan jobs of one message: the bytes go to Redis once, each job carries
only the reference, and all three writes go out in one Redis round trip.

Celery builds the task messages (``app.amqp.as_task_v2``, its own protocol 2, serialized
by kombu); only the last step, kombu's Redis transport envelope and the LPUSH onto the
queue's list, is done here: ``send_task`` would send a task-sent event and make a round
trip per job, several times the SMTP front's whole cost of the enqueue. tests/test_submit.py
checks that the envelope stays the one kombu itself writes (and tests/test_seams.py that
kombu and Celery stay at the minor version it was written for).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as envelope_json

from tasks.wire import blobs
from tasks.wire.jobids import job_ids
from tasks.wire.keys import POOLS, SCAN_TASKS


def submit(
    app: Celery,
    redis: Any,
    blob_id: str,
    data: bytes,
    ttl_s: int,
    origin: str = "",
    task_ids: dict[str, str] | None = None,
    content: str = "",
    top: bytes = b"",
    spooled: bool = False,
    ban_may_pass: bool = False,
) -> dict[str, str]:
    """Store the message and enqueue its jobs (ids from ``job_ids``, made here unless the
    caller made them to listen for the results first); return the job id per pool.
    The pools scan ``top + data``: ``top``, header lines the front puts in front.
    ``content``: the message's ``blobs.content_key`` when the caller has it. ``spooled``: the
    pools read ``data`` from spool entry ``blob_id``; only ``top`` goes to Redis.
    ``ban_may_pass``: a banned attachment does not settle the message for every recipient
    (the spam job then runs even when the av pool found one)."""
    if spooled:  # stored raw: the pools append the spool's bytes to it
        stored, packing = top, blobs.RAW
        ref = blobs.reference(blob_id, data, origin, content, packing, top)
        ref["spool"] = blob_id
    else:
        whole = top + data  # no copy without a top: CPython returns data itself
        stored, packing = blobs.pack(whole)
        ref = blobs.reference(blob_id, whole, origin, content, packing)
    if ban_may_pass:
        ref["ban_may_pass"] = True
    task_ids = task_ids or job_ids(blob_id)
    with redis.pipeline(transaction=False) as pipe:
        # The blob first: a worker that pops a job finds its message already stored.
        blobs.store(pipe, blob_id, stored, ttl_s)
        for pool in POOLS:
            pipe.lpush(pool, task_envelope(app, pool, task_ids[pool], ref))
        pipe.execute()
    return task_ids


def task_envelope(app: Celery, queue: str, task_id: str, ref: blobs.BlobRef) -> str:
    """The scan job as kombu's Redis transport stores it on the queue's list: the message
    Celery would publish, with the body base64-encoded and the delivery info kombu adds.
    The scan queues are bound to the default exchange (tasks/celery.py), so the routing
    key is the queue, which is also how kombu puts back an unacknowledged job."""
    args = [ref]
    message = app.amqp.as_task_v2(
        task_id,
        SCAN_TASKS[queue],
        args=args,
        ignore_result=None,
        reply_to=app.thread_oid,
        # What Flower shows as the arguments. Celery's saferepr walks the value with care
        # for the unknown; the reference is short and plain, so repr says the same.
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
