"""What the operating system accounts to each service: CPU seconds and peak memory.

Each service of the stack leads its own process group, so a group holds the service and its
children (spamd's children, a pool's prefork processes); children that already ended are in
their parent's cutime/cstime. The bench process itself is the "bench client".
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

from mailserver.supervisor.stack import Stack

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
CLIENT = "bench client"
MAILSCAN_GROUPS = ("mailserver", "av-worker", "spam-worker", "redis")  # mailscan's own cost
SCANNER_NAMES = re.compile(rb"spamd|clamd|celery")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgid: int
    cpu_s: float  # own and ended children's user + system time


def _stats() -> list[ProcStat]:
    found = []
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            found.append(_parse(int(stat.parent.name), stat.read_text()))
        except OSError:
            continue  # the process ended meanwhile
    return found


def _parse(pid: int, text: str) -> ProcStat:
    fields = text[text.rfind(")") + 2 :].split()  # fields[0] is field 3, "state"
    ticks = sum(int(f) for f in fields[11:15])
    return ProcStat(pid, int(fields[2]), ticks / CLOCK_TICKS)


def process_cpu_s(pid: int) -> float:
    """CPU seconds of one process (and its ended children)."""
    return _parse(pid, (PROC / str(pid) / "stat").read_text()).cpu_s


def own_cpu_s() -> float:
    """CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _groups(stack: Stack) -> dict[int, str]:
    return {s.process.pid: n for n, s in stack.services.items() if s.process}


def cpu_by_service(stack: Stack, others: dict[int, str] | None = None) -> dict[str, float]:
    """CPU seconds used so far by each running service, by the process groups ``others``
    names (a private Postfix: its master leads its own group) and by this process."""
    groups = _groups(stack) | (others or {})
    used = dict.fromkeys(groups.values(), 0.0)
    for proc in _stats():
        if proc.pgid in groups:
            used[groups[proc.pgid]] += proc.cpu_s
    used[CLIENT] = own_cpu_s()
    return used


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}


def foreign_scanners(stack: Stack) -> int:
    """spamd, clamd or Celery processes that are not ours (another stack, a test run): they
    share the CPUs and make the figures noisy."""
    ours = set(_groups(stack))
    count = 0
    for cmdline in PROC.glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes()
            group = os.getpgid(int(cmdline.parent.name))
        except OSError:
            continue
        count += group not in ours and SCANNER_NAMES.search(args) is not None
    return count


def peak_memory_mb(stack: Stack) -> dict[str, dict[str, float]]:
    """VmHWM (peak resident memory since the process started) of each service's group leader
    and of the largest of its children, in MiB."""
    groups = _groups(stack)
    peaks: dict[str, dict[str, float]] = {name: {} for name in groups.values()}
    for proc in _stats():
        name = groups.get(proc.pgid)
        if name is None:
            continue
        role = "leader" if proc.pid == proc.pgid else "child"
        peak = _vm_hwm_mb(proc.pid)
        peaks[name][role] = max(peaks[name].get(role, 0.0), peak)
    return peaks


def _vm_hwm_mb(pid: int) -> float:
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0
