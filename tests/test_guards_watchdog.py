"""The watchdog guard: a job arms the freeze dump before its hard limit, and each scan
leaves in the activity file what the process is doing, for the parent that outlives it.
Run in a child process: faulthandler's state is per process."""

import subprocess
import sys
import textwrap

from tasks import procfiles

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from tasks import procfiles
    from tasks.guards import JobContext, ScanContext
    from tasks.guards.watchdog import WatchdogGuard
    from tasks.plugins.stub import StubPlugin
    from tasks.settings import Settings

    folder, hard_limit_s, frozen_s = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    limits = {"soft_limit_s": hard_limit_s / 2, "hard_limit_s": hard_limit_s}
    settings = Settings().with_pool("spam", **limits)
    procfiles.start(folder)
    job = JobContext("spam", "job-7", {"blob": "b7"}, "test@host", settings, None, None)
    guard = WatchdogGuard()
    guard.before_job(job)
    guard.before_scan(ScanContext(job, StubPlugin(settings, "spam")))

    def frozen_plugin():
        time.sleep(frozen_s)

    frozen_plugin()
    print(os.getpid())
    os._exit(0)  # as the parent kills it: the files stay for the parent to read
    """
)


def frozen_child(folder, hard_limit_s, frozen_s):
    command = [sys.executable, "-c", CHILD, str(folder), str(hard_limit_s), str(frozen_s)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return procfiles.read(folder, int(done.stdout))


def test_a_frozen_job_leaves_its_stacks_and_activity_before_the_hard_limit(tmp_path):
    trace, activity = frozen_child(tmp_path, hard_limit_s=2.0, frozen_s=1.5)
    assert "in frozen_plugin" in trace
    assert {k: activity.get(k) for k in ("job_id", "pool", "plugin")} == {
        "job_id": "job-7", "pool": "spam", "plugin": {"name": "stub", "pool": "spam"},
    }  # fmt: skip


def test_a_job_that_ends_well_before_its_hard_limit_leaves_no_stacks(tmp_path):
    trace, activity = frozen_child(tmp_path, hard_limit_s=4.0, frozen_s=0.5)
    assert trace == ""
    assert activity["job_id"] == "job-7"
