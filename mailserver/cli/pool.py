"""``mailscan pool av|spam``: one pool's worker in the foreground, as a container starts it.
It is sized as ``mailscan up`` sizes it (tasks/sizing.py): the settings say how many
processes, else the CPUs this container may use, its cgroup's quota included. The start-up
line says why, then Celery's worker takes this process's place (so it gets the container's
signals, and a warm shutdown on SIGTERM)."""

from __future__ import annotations

import os
from typing import NoReturn

from mailserver.supervisor.services import worker_argv
from tasks import sizing
from tasks.settings import Settings


def pool_argv(settings: Settings, pool: str) -> list[str]:
    """The worker's command line, as ``mailscan up`` has it, but the node named after this
    host as Celery sees it (``%h``): each container is a node of its own even when the
    settings name one host for all (``MAILSCAN_HOSTNAME`` names the front)."""
    argv = worker_argv(settings, pool)
    argv[argv.index("-n") + 1] = f"{pool}@%h"
    return argv


def run_pool(settings: Settings, pool: str) -> NoReturn:
    """Print the pool's size and why, then become its worker."""
    print(sizing.plan(settings).pool_line(pool), flush=True)
    argv = pool_argv(settings, pool)
    os.execv(argv[0], argv)  # noqa: S606 - our own command line, no shell
