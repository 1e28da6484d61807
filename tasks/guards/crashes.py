"""Crash recording in the pool process: plugin exceptions, connection failures, and
freezes that the soft time limit interrupted. Deaths of the process itself are recorded by
its parent (tasks/isolation.py), which outlives it."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded

from tasks.crashes import records as crashdumps
from tasks.crashes.records import Incident, Kind
from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.guards.base import Guard, ScanContext

log = logging.getLogger(__name__)


def kind_of(error: BaseException) -> Kind:
    if isinstance(error, SoftTimeLimitExceeded):
        return "freeze"
    if isinstance(error, BackendUnavailable | BackendProtocol):
        return "connection"
    return "exception"


def report(scan: ScanContext, kind: Kind, error: BaseException | None, note: str = "") -> None:
    """Build and store a crashdump for the plugin in ``scan``."""
    job = scan.job
    incident = Incident(
        kind=kind,
        pool=job.pool,
        plugin=scan.plugin.describe(),
        job_id=job.job_id,
        message=dict(job.ref),
        worker_host=job.hostname,
        note=note,
        backend_version=scan.plugin.backend_version(),
    )
    if error is not None:
        crashdumps.from_exception(incident, error)
    if kind == "freeze":
        incident.threads = crashdumps.all_thread_stacks(error)
    dump = crashdumps.record(incident)
    where = job.crashes.save(dump)
    log.warning("crashdump %s (%s, plugin %s) -> %s", dump["id"], kind, scan.plugin.name, where)


class CrashGuard(Guard):
    """Every failure a plugin raises becomes a crashdump record."""

    def on_failure(self, scan: ScanContext, error: BaseException) -> None:
        report(scan, kind_of(error), error)
