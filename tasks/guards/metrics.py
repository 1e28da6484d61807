"""Scan metrics, kept in Redis so every worker on every host adds to the same numbers:
scans per plugin and status, and a latency histogram per plugin. Sent with the job's other
writes, after the job."""

from __future__ import annotations

from typing import Any

from tasks.guards.base import Guard, JobContext, ScanContext
from tasks.plugins.base import Verdict
from tasks.wire.fleet import LATENCY_BUCKETS_S
from tasks.wire.keys import METRICS_LATENCY_KEY, METRICS_SCANS_KEY


def bucket_of(seconds: float) -> str:
    for bound in LATENCY_BUCKETS_S:
        if seconds <= bound:
            return str(bound)
    return "+Inf"


class MetricsGuard(Guard):
    def __init__(self) -> None:
        self._verdicts: list[tuple[str, str, float]] = []

    def before_job(self, job: JobContext) -> None:
        self._verdicts.clear()

    def after_scan(self, scan: ScanContext, verdict: Verdict) -> None:
        self._verdicts.append((scan.plugin.name, verdict.status, verdict.elapsed_ms / 1000))

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        self._verdicts.append((scan.plugin.name, "error", 0.0))

    def after_job(self, job: JobContext) -> None:
        for plugin, status, seconds in self._verdicts:
            _count(job.writes, job.pool, plugin, status, seconds)
        self._verdicts.clear()


def _count(pipe: Any, pool: str, plugin: str, status: str, seconds: float) -> None:
    pipe.hincrby(METRICS_SCANS_KEY, f"{pool}|{plugin}|{status}", 1)
    if status != "error":
        latency = METRICS_LATENCY_KEY.format(plugin=plugin)
        pipe.hincrby(latency, bucket_of(seconds), 1)
        pipe.hincrbyfloat(latency, "sum", seconds)
        pipe.hincrby(latency, "count", 1)
