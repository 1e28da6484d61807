"""The one Celery app. Its configuration is built from Settings when Celery first needs it
(the ``on_configure`` signal), so importing this module reads no environment."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from tasks.constants import HEALTH_TASKS, POOLS, SCAN_TASKS
from tasks.settings import Settings, current_settings

app = Celery("mailscan", include=["tasks.scan", "tasks.health"])


def celery_config(settings: Settings) -> dict[str, Any]:
    routes = {SCAN_TASKS[pool]: {"queue": pool} for pool in POOLS}
    routes |= {HEALTH_TASKS[pool]: {"queue": pool} for pool in POOLS}
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        # msgpack carries raw bytes; pickle would let anyone who can write to Redis run code.
        "task_serializer": "msgpack",
        "result_serializer": "msgpack",
        "accept_content": ["msgpack"],
        "result_accept_content": ["msgpack"],
        "task_queues": [Queue(pool, routing_key=pool) for pool in POOLS],
        "task_routes": routes,
        "task_create_missing_queues": False,
        "task_default_queue": "av",
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "result_expires": 3600,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": _beat_schedule(settings),
    }


def _beat_schedule(settings: Settings) -> dict[str, Any]:
    from beat.schedule import schedule  # beat owns the schedule; imported only when configured

    return schedule(settings)


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.config_from_object(celery_config(current_settings()))
