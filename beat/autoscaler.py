"""The backlog autoscaler: grow a pool fast while jobs wait, shrink it slowly once they
don't, always within the pool's limits. It speaks to the workers through Celery's
pool_grow / pool_shrink, and says what it did in the log and in Redis (for the metrics)."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from celery import Celery

from tasks.constants import AUTOSCALE_KEY
from tasks.settings import Settings

log = logging.getLogger(__name__)


def pool_size(stats: dict[str, Any]) -> int:
    """The processes a worker runs now. Its "max-concurrency" stays at the start value when
    the pool grows or shrinks; the list of process ids does not."""
    pool = stats.get("pool", {})
    return len(pool.get("processes") or []) or int(pool.get("max-concurrency") or 0)


def workers_of(app: Celery, pool: str) -> dict[str, int]:
    """Worker name -> current pool size, as the workers of ``pool`` report it."""
    stats = app.control.inspect(timeout=1.0).stats() or {}
    return {name: pool_size(info) for name, info in stats.items() if name.split("@", 1)[0] == pool}


def target(depth: int, current: int, low: int, high: int, per_process: int) -> int:
    """Enough processes for the backlog at once; one fewer per step when nothing waits."""
    if depth > current * per_process:
        wanted = math.ceil(depth / per_process)
    elif depth == 0:
        wanted = current - 1
    else:
        wanted = current
    return max(low, min(high, wanted))


def resize(app: Celery, worker: str, current: int, wanted: int) -> str | None:
    """Ask ``worker`` for ``wanted`` processes; its refusal in its own words, if it refused.
    A prefork pool refuses to shrink while it counts every process as busy."""
    if wanted > current:
        command, n = app.control.pool_grow, wanted - current
    elif wanted < current:
        command, n = app.control.pool_shrink, current - wanted
    else:
        return None
    return refusal(command(n, destination=[worker], reply=True, timeout=2), worker)


def refusal(replies: list[dict[str, Any]] | None, worker: str) -> str | None:
    for reply in replies or []:
        if worker in reply:
            answer = reply[worker]
            return None if "ok" in answer else str(answer.get("error", answer))
    return "no reply"


def _log_resize(worker: str, action: dict[str, Any]) -> None:
    said = f"autoscaler: {worker} {action['from']} -> {action['to']} processes"
    said += f" ({action['depth']} jobs queued)"
    log.warning(f"{said}: refused, {action['refused']}" if action["refused"] else said)


def step(app: Celery, client: Any, pool: str, settings: Settings) -> dict[str, Any]:
    depth = client.llen(pool)
    low, high = getattr(settings, f"{pool}_scale_min"), getattr(settings, f"{pool}_scale_max")
    actions = {}
    for worker, current in workers_of(app, pool).items():
        wanted = target(depth, current, low, high, settings.backlog_per_process)
        action = {"from": current, "to": wanted, "depth": depth, "at": time.time()}
        if wanted != current:
            action["refused"] = resize(app, worker, current, wanted)
            _log_resize(worker, action)
        actions[worker] = action
    if actions:
        client.hset(AUTOSCALE_KEY, pool, json.dumps(actions))
    return actions
