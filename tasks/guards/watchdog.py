"""The freeze watchdog: armed when a job starts (tasks/procfiles.py). If the job is still
running shortly before the hard time limit, every thread's stack is written for the parent,
which records it when it kills the process."""

from __future__ import annotations

from tasks import procfiles
from tasks.guards.base import Guard, JobContext, ScanContext
from tasks.plugins.base import Verdict

# Dump this long before the hard limit: late enough to show where the plugin is stuck,
# early enough that the parent's SIGTERM/SIGKILL has not come yet.
DUMP_BEFORE_HARD_LIMIT_S = 1.0


class WatchdogGuard(Guard):
    def before_job(self, job: JobContext) -> None:
        hard_limit = job.settings.pools[job.pool].hard_limit_s
        procfiles.arm(max(0.5, hard_limit - DUMP_BEFORE_HARD_LIMIT_S))

    def before_scan(self, scan: ScanContext) -> Verdict | None:
        job = scan.job
        procfiles.note_activity(job_id=job.job_id, pool=job.pool, plugin=scan.plugin.describe())
        return None
