"""Runs a pool's plugins over one message and combines their verdicts.

The runner only orchestrates: it fetches the bytes, asks each engine, and folds the answers.
A plugin that fails becomes an ``error`` verdict for that engine, never an exception that
would take the job down (Celery's SoftTimeLimitExceeded excepted: it must reach Celery).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from tasks import blobs
from tasks.blobs import BlobRef
from tasks.constants import AV_POOL
from tasks.errors import ScanError
from tasks.plugins import Plugin, Verdict, load_plugin, plugin_names
from tasks.settings import Settings

log = logging.getLogger(__name__)

# Plugins and the Redis client belong to one pool process: built on first use after the fork,
# rebuilt if the process id changes (a forked child must not share its parent's sockets).
_process_state: dict[str, Any] = {}


def _state(pool: str, settings: Settings) -> dict[str, Any]:
    if _process_state.get("pid") != os.getpid():
        _process_state.clear()
        _process_state["pid"] = os.getpid()
        _process_state["redis"] = redis.Redis.from_url(settings.redis_url)
    plugins = _process_state.setdefault("plugins", {})
    if pool not in plugins:
        plugins[pool] = [load_plugin(n, pool, settings) for n in plugin_names(pool, settings)]
    return _process_state


def scan(pool: str, ref: BlobRef, settings: Settings) -> dict[str, Any]:
    """Scan the referenced message with every plugin of the pool; return the pool verdict."""
    state = _state(pool, settings)
    started = time.perf_counter()
    message = blobs.get(state["redis"], ref)
    verdicts = [_ask(plugin, message) for plugin in state["plugins"][pool]]
    return {
        "pool": pool,
        "status": combine(pool, verdicts),
        "verdicts": [v.as_dict() for v in verdicts],
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _ask(plugin: Plugin, message: bytes) -> Verdict:
    started = time.perf_counter()
    try:
        return plugin.scan(message)
    except SoftTimeLimitExceeded:
        plugin.reset()
        raise
    except ScanError as err:
        log.warning("plugin %s failed: %s", plugin.name, err)
        plugin.reset()
        return plugin.verdict("error", started, detail=str(err))


def combine(pool: str, verdicts: list[Verdict]) -> str:
    """A message is infected (or spam) if any engine says so; unknown if any engine failed."""
    statuses = {v.status for v in verdicts}
    positive = "infected" if pool == AV_POOL else "spam"
    if positive in statuses:
        return positive
    if "error" in statuses:
        return "error"
    if pool == AV_POOL:
        return "clean"
    return "skipped" if statuses == {"skipped"} else "ham"
