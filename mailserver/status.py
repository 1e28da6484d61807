"""``mailscan status``: what the workers themselves report, and how deep each queue is."""

from __future__ import annotations

from typing import Any

from beat.autoscaler import pool_size
from mailserver.server import check_redis
from tasks.celeryapp import app
from tasks.constants import QUEUES
from tasks.settings import Settings


def collect(settings: Settings) -> dict[str, Any]:
    client = check_redis(settings)
    stats = app.control.inspect(timeout=1.0).stats() or {}
    pools: dict[str, Any] = {
        pool: {"queue_depth": client.llen(pool), "workers": {}} for pool in QUEUES
    }
    for worker, info in sorted(stats.items()):
        pool = worker.split("@", 1)[0]
        if pool in pools:
            pools[pool]["workers"][worker] = {
                "concurrency": pool_size(info),
                "processes": info.get("pool", {}).get("processes", []),
                "tasks_done": sum(info.get("total", {}).values()),
            }
    return {"redis": settings.redis_url, "pools": pools}


def status_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"redis {report['redis']}"]
    for pool, info in report["pools"].items():
        workers = info["workers"]
        lines.append(f"pool {pool}: {len(workers)} worker(s), {info['queue_depth']} job(s) queued")
        for name, worker in workers.items():
            lines.append(
                f"  {name}: concurrency {worker['concurrency']}, {worker['tasks_done']} tasks done"
            )
        if not workers:
            lines.append("  no worker answered")
    return lines
