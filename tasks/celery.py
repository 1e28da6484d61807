"""The one Celery app. Its configuration is built from Settings when Celery first needs it
(the ``on_configure`` signal), so importing this module reads no environment."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from tasks.redisauth import celery_transport_options, celery_url
from tasks.settings import Settings, current_settings
from tasks.transport import use_in_workers
from tasks.wire.keys import (
    HEALTH_TASKS,
    LEARN_TASK,
    OPS_QUEUE,
    POOLS,
    QUEUES,
    SCAN_TASKS,
    SPAM_POOL,
)  # fmt: skip

app = Celery(
    "mailscan", include=["tasks.scan", "tasks.health", "tasks.learn", "tasks.ops", "beat.tasks"]
)
use_in_workers()


def celery_config(settings: Settings) -> dict[str, Any]:
    routes = {SCAN_TASKS[pool]: {"queue": pool} for pool in POOLS}
    routes |= {HEALTH_TASKS[pool]: {"queue": pool} for pool in POOLS}
    routes |= {LEARN_TASK: {"queue": SPAM_POOL}}
    routes |= {"tasks.ops.*": {"queue": OPS_QUEUE}, "beat.*": {"queue": OPS_QUEUE}}
    return {
        # Under Sentinel: kombu's and Celery's sentinel transports, which ask the sentinels
        # for the primary again after a lost connection.
        "broker_url": celery_url(settings),
        "result_backend": celery_url(settings),
        "result_backend_transport_options": celery_transport_options(settings),
        # msgpack carries raw bytes; pickle would let anyone who can write to Redis run code.
        "task_serializer": "msgpack",
        "result_serializer": "msgpack",
        "accept_content": ["msgpack"],
        "result_accept_content": ["msgpack"],
        "task_queues": [Queue(queue, routing_key=queue) for queue in QUEUES],
        "task_routes": routes,
        "task_create_missing_queues": False,
        "task_default_queue": "av",
        # Off by default: Flower turns them on while it watches (MAILSCAN_TASK_EVENTS).
        "worker_send_task_events": settings.task_events,
        # Scan jobs are written by tasks/wire/submit.py, which sends no task-sent event: Flower
        # shows them from task-received on. The few other tasks still send one.
        "task_send_sent_event": True,
        "task_annotations": _time_limits(settings),
        # A job is acknowledged only when it ends; if its pool process dies, the job goes back
        # to the queue at once. The poison guard (tasks/guards/attempts.py) bounds the loop
        # that would make of a message that kills its process every time.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # An unacknowledged job comes back after this; it must be far above any hard limit or
        # a slow job would run twice.
        "broker_transport_options": {
            "visibility_timeout": _visibility_timeout_s(settings),
            **celery_transport_options(settings),
        },
        # After a lost broker connection the running jobs are redelivered; cancel the old
        # copies rather than run every job twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 30,
        "result_expires": 3600,
        "worker_hijack_root_logger": False,
        "beat_schedule": _beat_schedule(settings),
    }


def _time_limits(settings: Settings) -> dict[str, dict[str, float]]:
    return {
        SCAN_TASKS[pool]: {
            "soft_time_limit": settings.pools[pool].soft_limit_s,
            "time_limit": settings.pools[pool].hard_limit_s,
        }
        for pool in POOLS
    }


def _visibility_timeout_s(settings: Settings) -> int:
    return int(max(3600.0, 10 * max(own.hard_limit_s for own in settings.pools.values())))


def _beat_schedule(settings: Settings) -> dict[str, Any]:
    from beat.schedule import schedule  # beat owns the schedule; imported only when configured

    return schedule(settings)


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.config_from_object(celery_config(current_settings()))
