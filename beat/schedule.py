"""What beat runs, and how often."""

from __future__ import annotations

from typing import Any

from tasks.constants import HEALTH_TASKS, POOLS
from tasks.settings import Settings

HEALTH_PROBE_EVERY_S = 30.0


def schedule(settings: Settings) -> dict[str, Any]:
    """Health probes go through each pool, so an answer proves the pool and its backends."""
    return {
        f"health-{pool}": {
            "task": HEALTH_TASKS[pool],
            "schedule": HEALTH_PROBE_EVERY_S,
            # A probe that waits longer than its period is stale; let the next one speak.
            "options": {"expires": HEALTH_PROBE_EVERY_S},
        }
        for pool in POOLS
    }
