"""A pool's size, read from its workers and changed on them: one place for the backlog
autoscaler (beat) and ``mailscan scale`` alike. It speaks to the workers through Celery's
remote control (stats, pool_grow, pool_shrink)."""

from __future__ import annotations

from typing import Any

from celery import Celery

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
