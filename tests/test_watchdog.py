"""The freeze watchdog's timing (tasks/procfiles.py): a busy process keeps one armed dump for
several jobs, but the dump never comes later than a job's own arm asked for, nor more than
REARM_SLACK_S earlier. Run in a child process: faulthandler's state is per process."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tasks import procfiles

    folder = Path(sys.argv[1])
    procfiles.start(folder)
    dump = procfiles.faulthandler_path(folder, __import__("os").getpid())

    def written():
        return dump.stat().st_size > 0

    # An idle process's dump is cleared by the next job's arm.
    procfiles.arm(0.2)
    time.sleep(0.6)
    idle_dump = written()
    procfiles.arm(2.0)
    cleared = not written()
    # A second job 0.5 s later keeps that arm: its dump comes 1.5 s after its start.
    time.sleep(0.5)
    procfiles.arm(2.0)
    time.sleep(1.0)
    early = written()
    time.sleep(1.0)
    late = written()
    procfiles.stop(folder)
    print(idle_dump, cleared, early, late)
    """
)


def test_the_watchdog_dump_comes_within_its_slack_and_an_idle_dump_is_cleared(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    idle_dump, cleared, early, late = done.stdout.split()
    assert idle_dump == "True"  # fired while idle...
    assert cleared == "True"  # ...and gone when the next job arms
    assert early == "False"  # not before the job's time minus the slack
    assert late == "True"  # and not after it
    assert not list(tmp_path.rglob("*.faulthandler"))  # a normal end leaves nothing
