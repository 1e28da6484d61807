"""``mailscan scale``: change the size of a pool on every running worker of it, and read the
new size back from the workers themselves."""

from __future__ import annotations

import time
from typing import Any

from mailserver.front.server import check_redis
from tasks.celery import app
from tasks.errors import MailscanError
from tasks.poolsize import SETTLE_S, resize, workers_of
from tasks.settings import Settings, env_name


def scale_lines(
    settings: Settings, pool: str, processes: int | None, autoscale_range: str | None
) -> list[str]:
    """What ``mailscan scale POOL [PROCESSES] [--autoscale MAX,MIN]`` does, one line per
    worker."""
    if autoscale_range:
        most, _, least = autoscale_range.partition(",")
        if not (most.isdigit() and least.isdigit()):
            raise MailscanError("--autoscale takes MAX,MIN, e.g. --autoscale 8,2")
        answers = autoscale(settings, pool, int(most), int(least))
        return [f"{name}: {reply.get('ok')}" for name, reply in answers.items()]
    if processes is None or processes < 1:
        raise MailscanError("give the number of processes (1 or more), or --autoscale MAX,MIN")
    sizes = scale(settings, pool, processes)
    return [f"{name}: {size} processes" for name, size in sizes.items()]


def scale(settings: Settings, pool: str, processes: int) -> dict[str, int]:
    """Set every worker of ``pool`` to ``processes``; return what each worker then reports."""
    check_redis(settings)
    workers = _running(pool)
    refused = {
        worker: why
        for worker, current in workers.items()
        if (why := resize(app, worker, current, processes))
    }
    if refused:
        raise MailscanError(
            f"not resized: {'; '.join(f'{w}: {why}' for w, why in refused.items())}"
        )
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        sizes = workers_of(app, pool)
        if sizes and all(size == processes for size in sizes.values()):
            return sizes
        time.sleep(0.5)
    raise MailscanError(f"the {pool} workers did not reach {processes} processes: {sizes}")


def autoscale(settings: Settings, pool: str, most: int, least: int) -> dict[str, Any]:
    """Change the range of Celery's autoscaler on every worker of ``pool``."""
    check_redis(settings)
    workers = list(_running(pool))
    replies = app.control.autoscale(most, least, destination=workers, reply=True, timeout=2)
    answers = {name: reply for item in replies for name, reply in item.items()}
    refused = [name for name, reply in answers.items() if "error" in reply]
    if refused:
        raise MailscanError(
            f"{', '.join(refused)} run without Celery's autoscaler; start the pool with "
            f"{env_name(pool + '_autoscale')}={most},{least} to use it"
        )
    return answers


def _running(pool: str) -> dict[str, int]:
    workers = workers_of(app, pool)
    if not workers:
        raise MailscanError(f"no {pool} worker answered")
    return workers
