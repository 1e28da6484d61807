"""What beat runs, and how often."""

from __future__ import annotations

from typing import Any

from tasks.settings import Settings
from tasks.wire.keys import HEALTH_TASKS, POOLS


def _every(task: str, seconds: float) -> dict[str, Any]:
    # A run that waits longer than its period is stale; let the next one speak.
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


def schedule(settings: Settings) -> dict[str, Any]:
    """Health probes go through each pool, so an answer proves the pool and its backends;
    maintenance runs on the ops worker."""
    probes = {
        f"health-{pool}": _every(HEALTH_TASKS[pool], settings.health_probe_every_s)
        for pool in POOLS
    }
    stats_s = settings.stats_every_s
    # Only where alerts go somewhere: the console reads them from the stream itself.
    alerts = (
        {"send-alerts": _every("beat.tasks.send_alerts", settings.alert_send_every_s)}
        if settings.alert_webhook or settings.alert_email
        else {}
    )
    return {
        **alerts,
        **probes,
        "queue-stats": _every("beat.tasks.queue_stats", stats_s),
        "autoscale": _every("beat.tasks.autoscale", stats_s),
        "check-spools": _every("beat.tasks.check_spools", stats_s),
        "crashdump-retention": _every("beat.tasks.crashdump_retention", 3600.0),
        "message-log-retention": _every("beat.tasks.message_log_retention", 3600.0),
    }
