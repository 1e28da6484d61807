"""Crashdump records: what a plugin failure leaves behind for the administrator and the vendor.

A record never holds the message body: only its spool id, size and digest. Its signature
(plugin, kind, exception type and the top frames) groups repeats of the same failure.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["freeze", "crash", "exception", "connection", "poison"]
# Frames in these files say nothing about the failure; the signature skips them.
_PLUMBING = ("celery/", "billiard/", "kombu/", "tasks/runner.py", "tasks/guards/", "threading.py")
# Caps on the text a record keeps. A plugin can raise with a message of any size and a
# flood of such failures would fill Redis, which never evicts; the head (where it started)
# and the tail (where it ended) say most, so the middle goes.
MAX_MESSAGE_CHARS = 2000
MAX_TRACE_CHARS = 20000
# One traceback line (a frame, or the exception with its message) beyond this is cut too,
# so a huge message cannot push every frame out of the capped traceback.
MAX_TRACE_LINE_CHARS = 2000
MAX_FRAMES = 100


@dataclass
class Incident:
    """The facts known where a failure is seen; ``record`` turns them into a crashdump."""

    kind: Kind
    pool: str
    plugin: dict[str, Any]
    job_id: str
    message: dict[str, Any]
    worker_host: str = ""
    worker_pid: int = field(default_factory=os.getpid)
    exception_type: str = ""
    exception_message: str = ""
    traceback: str = ""
    # Where the exception was raised, from the frames themselves: (file, function, line),
    # outermost first. Never parsed from the traceback text, which carries the message.
    frames: list[tuple[str, str, int]] = field(default_factory=list)
    threads: str = ""
    faulthandler: str = ""
    signal: str | None = None
    exit_status: int | None = None
    note: str = ""
    backend_version: str = ""


def from_exception(incident: Incident, error: BaseException) -> Incident:
    incident.exception_type = type(error).__name__
    incident.exception_message = str(error)
    chunks = traceback.format_exception(error)
    incident.traceback = "".join(clip(chunk, MAX_TRACE_LINE_CHARS) for chunk in chunks)
    incident.frames = frames_of(error)
    return incident


def frames_of(error: BaseException) -> list[tuple[str, str, int]]:
    """The frames of ``error``'s own traceback, outermost first, at most MAX_FRAMES (the
    innermost ones, where it failed)."""
    stack = traceback.extract_tb(error.__traceback__)
    return [(f.filename, f.name, f.lineno or 0) for f in stack][-MAX_FRAMES:]


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail around a line
    that says how much was cut."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[-tail:]}"


def all_thread_stacks(error: BaseException | None = None) -> str:
    """Python stacks of every thread of this process. For the thread handling ``error``, the
    stack where the error was raised: that is where it was at the moment of failure."""
    names = {t.ident: t.name for t in threading.enumerate()}
    current = threading.get_ident()
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == current and error is not None:
            stack = "".join(traceback.format_tb(error.__traceback__))
        else:
            stack = "".join(traceback.format_stack(frame))
        parts.append(f"Thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


def record(incident: Incident) -> dict[str, Any]:
    """The crashdump as stored and shown: plain JSON types only."""
    now = time.time()
    return {
        "id": uuid.uuid4().hex,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "ts": now,
        "kind": incident.kind,
        "pool": incident.pool,
        "plugin": incident.plugin,
        "worker": {"host": incident.worker_host, "pid": incident.worker_pid},
        "job_id": incident.job_id,
        "message": incident.message,
        "exception": {
            "type": incident.exception_type,
            "message": clip(incident.exception_message, MAX_MESSAGE_CHARS),
        },
        "traceback": clip(incident.traceback, MAX_TRACE_CHARS),
        "frames": [list(frame) for frame in incident.frames],
        "threads": clip(incident.threads, MAX_TRACE_CHARS),
        "faulthandler": clip(incident.faulthandler, MAX_TRACE_CHARS),
        "signal": incident.signal,
        "exit_status": incident.exit_status,
        "note": incident.note,
        "versions": versions(incident.backend_version),
        "signature": signature(incident),
    }


def versions(backend: str = "") -> dict[str, str]:
    import celery

    return {
        "python": platform.python_version(),
        "celery": celery.__version__,
        "mailscan": _mailscan_version(),
        "backend": backend,
        "platform": platform.platform(),
    }


def _mailscan_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mailscan")
    except PackageNotFoundError:
        return "unknown"


def signature(incident: Incident) -> str:
    frames = top_frames(incident.traceback or incident.faulthandler or incident.threads)
    parts = [incident.plugin.get("name", "?"), incident.kind, incident.exception_type, *frames]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)|File "([^"]+)", line \d+ in (\S+)')


def top_frames(text: str, count: int = 3) -> list[str]:
    """The innermost frames outside the plumbing, without line numbers (so a small edit
    elsewhere in a file does not split a group)."""
    frames = []
    for match in _FRAME.finditer(text):
        path, function = match[1] or match[3], match[2] or match[4]
        if not any(p in path for p in _PLUMBING):
            frames.append(f"{os.path.basename(path)}:{function}")
    # Python tracebacks list the innermost frame last; faulthandler lists it first.
    innermost_last = "Traceback" in text
    ordered = list(reversed(frames)) if innermost_last else frames
    return ordered[:count]
