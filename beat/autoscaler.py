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


# A resize shows in a worker's report only once its pool has reaped or started the
# processes: a shrunk process is listed until it has exited, a grown one appears at the
# pool's next maintenance, up to 5 s later. A step acting on a report that does not show the
# last resize yet resizes again: steps a fraction of a second apart once shrank a pool of
# two to no process at all. So a step waits up to this long for the last resize to show
# (and `mailscan scale` for the workers to report the size it set).
SETTLE_S = 15.0


def pool_size(stats: dict[str, Any]) -> int:
    """The processes a worker runs now. Its "max-concurrency" stays at the start value when
    the pool grows or shrinks; the list of process ids does not. An empty list is a pool
    with no process left; only a pool without such a list (not prefork) has its limit."""
    pool = stats.get("pool", {})
    processes = pool.get("processes")
    if processes is not None:
        return len(processes)
    return int(pool.get("max-concurrency") or 0)


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


def _settling(last: dict[str, Any] | None, current: int, now: float) -> bool:
    """The worker's last resize was granted and is recent, and its report does not show it
    yet."""
    if not last or last.get("refused") or last.get("to") == last.get("from"):
        return False
    return current != last.get("to") and now - float(last.get("at", 0)) < SETTLE_S


def step(app: Celery, client: Any, pool: str, settings: Settings) -> dict[str, Any]:
    depth = client.llen(pool)
    low, high = getattr(settings, f"{pool}_scale_min"), getattr(settings, f"{pool}_scale_max")
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
