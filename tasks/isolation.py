"""The parent side of isolation. A pool process that dies (signal, abrupt exit) or is killed
at the hard time limit cannot report itself; its parent, the worker's main process, can.

``ScanRequest`` runs in the parent and sees worker-lost and hard-time-limit failures with the
child's pid; it turns them into crashdump records from the files the child left
(tasks/procfiles.py). The worker signals set those files up in each new pool process and
log a normal recycle, which is not a crashdump.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task, signals
from celery.exceptions import TimeLimitExceeded
from celery.worker.request import Request

from tasks import procfiles
from tasks.crashes import records as crashdumps
from tasks.crashes.records import Incident, Kind
from tasks.crashes.store import open_store
from tasks.settings import current_settings
from tasks.wire.keys import SCAN_TASKS

log = logging.getLogger(__name__)
POOL_OF_TASK = {name: pool for pool, name in SCAN_TASKS.items()}
_SIGNAL = re.compile(r"signal (\d+) \((\w+)\)")
_EXITCODE = re.compile(r"exitcode (-?\d+)")


class ScanRequest(Request):
    """Records the death of a pool process before Celery requeues or fails the job."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            _never_raise(self._record, "freeze", TimeLimitExceeded(timeout))
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        error = getattr(exc_info.exception, "exc", exc_info.exception)
        died = isinstance(error, WorkerLostError | SystemExit | KeyboardInterrupt)
        if died and not (self._already_cancelled or self._already_revoked):
            _never_raise(self._record, "crash", error)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _record(self, kind: Kind, error: BaseException) -> None:
        settings = current_settings()
        pid = self.worker_pid or 0
        trace, activity = procfiles.read(settings.crashdump_dir, pid)
        incident = Incident(
            kind=kind,
            pool=POOL_OF_TASK.get(self.name, "?"),
            plugin=activity.get("plugin") or {"name": "unknown"},
            job_id=self.id,
            message=dict(self.args[0]) if self.args else {},
            worker_host=self.hostname or "",
            worker_pid=pid,
            exception_type=type(error).__name__,
            exception_message=str(error),
            faulthandler=trace,
            note=_note(kind),
        )
        incident.signal, incident.exit_status = _death(str(error), trace)
        dump = crashdumps.record(incident)
        where = open_store(settings).save(dump)
        log.error("crashdump %s (%s of pool process %d) -> %s", dump["id"], kind, pid, where)
        procfiles.remove(settings.crashdump_dir, pid)


class ScanTask(Task):
    """Base of the scan tasks: the parent-side request class above. The runner stores a
    verdict itself (tasks/wire/results.py); Celery stores the failures."""

    Request = ScanRequest
    store_errors_even_if_ignored = True


def _note(kind: str) -> str:
    if kind == "freeze":
        return "hard time limit: the pool process was killed and replaced"
    return "the pool process died and was replaced; the job is tried again"


def _death(message: str, trace: str) -> tuple[str | None, int | None]:
    """Signal name and exit status from Celery's message and the faulthandler output."""
    found = _SIGNAL.search(message)
    if found:
        return found[2], None
    if "Segmentation fault" in trace:
        return "SIGSEGV", None
    if "Aborted" in trace:
        return "SIGABRT", None
    code = _EXITCODE.search(message)
    return None, int(code[1]) if code else None


def _never_raise(record: Any, *args: Any) -> None:
    # If this hook raised, Celery would skip the ack/requeue that follows it.
    try:
        record(*args)
    except Exception:
        log.exception("could not record a crashdump")


@signals.worker_init.connect
def _quiet_jobs(**_: Any) -> None:
    # Before the pool forks and before Celery decides, per task, whether it logs at INFO.
    if not current_settings().log_jobs:
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)


@signals.worker_process_init.connect
def _pool_process_started(**_: Any) -> None:
    procfiles.start(current_settings().crashdump_dir)


@signals.worker_process_shutdown.connect
def _pool_process_recycled(pid: int | None = None, exitcode: int | None = None, **_: Any) -> None:
    # A normal end: max tasks or max memory per child reached, or the worker stopping.
    log.info("pool process %d recycled (exit code %s)", pid or os.getpid(), exitcode)
    procfiles.stop(current_settings().crashdump_dir)


@signals.worker_ready.connect
def _drain_crashdump_spool(**_: Any) -> None:
    settings = current_settings()
    moved = open_store(settings).drain()
    if moved:
        log.warning("moved %d crashdumps from the local spool to Redis", moved)
