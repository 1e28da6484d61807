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

from tasks.poolsize import SETTLE_S, resize, workers_of
from tasks.settings import Settings
from tasks.wire.keys import AUTOSCALE_KEY

log = logging.getLogger(__name__)


def target(depth: int, current: int, low: int, high: int, per_process: int) -> int:
    """Enough processes for the backlog at once; one fewer per step when nothing waits."""
    if depth > current * per_process:
        wanted = math.ceil(depth / per_process)
    elif depth == 0:
        wanted = current - 1
    else:
        wanted = current
    return max(low, min(high, wanted))


def _log_resize(worker: str, action: dict[str, Any]) -> None:
    said = f"autoscaler: {worker} {action['from']} -> {action['to']} processes"
    said += f" ({action['depth']} jobs queued)"
    log.warning(f"{said}: refused, {action['refused']}" if action["refused"] else said)


def _settling(last: dict[str, Any] | None, current: int, now: float) -> bool:
    """The worker's last resize was granted and is recent, and its report does not show it
    yet."""
    if not last or last.get("refused") or last.get("to") == last.get("from"):
        return False
    return current != last.get("to") and now - float(last.get("at", 0)) < SETTLE_S


def step(app: Celery, client: Any, pool: str, settings: Settings) -> dict[str, Any]:
    depth = client.llen(pool)
    low, high = settings.pools[pool].scale_min, settings.pools[pool].scale_max
    previous, now = _last_actions(client, pool), time.time()
    actions = {}
    for worker, current in workers_of(app, pool).items():
        last = previous.get(worker)
        if _settling(last, current, now):
            # The pending resize stays on record (its time too) until it shows or expires.
            actions[worker] = {**last, "depth": depth, "waiting": current}
            continue
        wanted = target(depth, current, low, high, settings.backlog_per_process)
        action = {"from": current, "to": wanted, "depth": depth, "at": now}
        if wanted != current:
            action["refused"] = resize(app, worker, current, wanted)
            _log_resize(worker, action)
        actions[worker] = action
    if actions:
        client.hset(AUTOSCALE_KEY, pool, json.dumps(actions))
    return actions


def _last_actions(client: Any, pool: str) -> dict[str, Any]:
    """What the last step did to each worker of ``pool``; nothing when unknown or unreadable."""
    try:
        return json.loads(client.hget(AUTOSCALE_KEY, pool) or "{}")
    except ValueError:
        return {}
