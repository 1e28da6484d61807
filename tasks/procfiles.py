"""Files a pool process leaves for its parent, which outlives it: the faulthandler output
(a fatal signal, or the watchdog's dump of a freeze) and what the process was doing.

Both are per process id under ``<crashdump_dir>/proc``. The child writes them; the parent
reads and removes them when it records the child's death.
"""

from __future__ import annotations

import faulthandler
import json
import os
import time
from pathlib import Path
from typing import IO, Any

_open: dict[str, IO[bytes]] = {}
_due: dict[str, float] = {}  # "at": when the watchdog's armed dump comes (monotonic)


def folder(crashdump_dir: Path) -> Path:
    return crashdump_dir / "proc"


def faulthandler_path(crashdump_dir: Path, pid: int) -> Path:
    return folder(crashdump_dir) / f"{pid}.faulthandler"


def activity_path(crashdump_dir: Path, pid: int) -> Path:
    return folder(crashdump_dir) / f"{pid}.activity"


def start(crashdump_dir: Path) -> None:
    """In a new pool process: send fatal-signal tracebacks of every thread to our file."""
    folder(crashdump_dir).mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    _open["faulthandler"] = open(faulthandler_path(crashdump_dir, pid), "w+b")  # noqa: SIM115
    _open["activity"] = open(activity_path(crashdump_dir, pid), "w+b")  # noqa: SIM115
    faulthandler.enable(file=_open["faulthandler"], all_threads=True)
    _due.clear()  # a forked process has no watchdog thread, whatever its parent had armed


# A dump armed by an earlier job is kept when it comes at most this much earlier than a new
# arm would: faulthandler starts and joins a thread for each arm and cancel, and the job
# waits for the join, so a busy process re-arms about once a second instead of once per job.
REARM_SLACK_S = 1.0


def arm(after_s: float) -> None:
    """Dump every thread's stack between ``after_s - REARM_SLACK_S`` and ``after_s`` from now
    (call at the start of a job). The dump runs in faulthandler's own thread and needs no
    GIL, so it works while a plugin holds the GIL in C. It is not cancelled when the job
    ends: a dump an idle process writes is cleared by the next arm, as is anything an earlier
    job left."""
    handle = _open.get("faulthandler")
    if handle is None:
        return
    fd = handle.fileno()
    if os.fstat(fd).st_size:
        os.ftruncate(fd, 0)  # what an earlier job left there is not about this one
        os.lseek(fd, 0, os.SEEK_SET)
    now = time.monotonic()
    if _due.get("at", 0.0) >= now + after_s - REARM_SLACK_S:
        return
    faulthandler.dump_traceback_later(after_s, repeat=False, file=handle, exit=False)
    _due["at"] = now + after_s


def disarm() -> None:
    faulthandler.cancel_dump_traceback_later()
    _due.clear()


def note_activity(**facts: Any) -> None:
    """Overwrite the activity file with what this process is doing now (no fsync: it only
    has to outlive the process, not the machine)."""
    handle = _open.get("activity")
    if handle is None:
        return
    data = json.dumps({**facts, "since": time.time()}).encode()
    os.pwrite(handle.fileno(), data.ljust(512), 0)


def stop(crashdump_dir: Path) -> None:
    """Normal end of a pool process (a recycle): nothing to leave behind."""
    disarm()
    faulthandler.disable()
    for handle in _open.values():
        handle.close()
    _open.clear()
    remove(crashdump_dir, os.getpid())


def read(crashdump_dir: Path, pid: int) -> tuple[str, dict[str, Any]]:
    """The faulthandler text and the last activity a (dead) process left."""
    trace = _read_text(faulthandler_path(crashdump_dir, pid))
    raw = _read_text(activity_path(crashdump_dir, pid)).strip()
    try:
        activity = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        activity = {}
    return trace, activity


def remove(crashdump_dir: Path, pid: int) -> None:
    faulthandler_path(crashdump_dir, pid).unlink(missing_ok=True)
    activity_path(crashdump_dir, pid).unlink(missing_ok=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace").rstrip("\x00 ")
    except FileNotFoundError:
        return ""
