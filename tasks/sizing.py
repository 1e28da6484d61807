"""How many spamd children and pool processes ``mailscan up`` starts: what the settings say,
else as many as the CPUs this process may use (its CPU affinity, and its cgroup's CPU quota).

spamd's children are CPU-bound: more of them than usable CPUs only makes each message cost
more CPU. The spam pool defaults to as many processes as spamd has children; a pool set
larger holds more jobs in flight, and the requests beyond spamd's children wait in the
queue of spamd's listening socket until a child is free (spamd never starts more than
``--max-children``), so spamd is not oversubscribed; their wait counts in the job's limits."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tasks.settings import Settings, env_name
from tasks.wire.keys import AV_POOL, POOLS, SPAM_POOL

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Cpus:
    """The CPUs this process may use, and what limits them (for the start-up lines)."""

    count: int
    why: str


@dataclass(frozen=True)
class Size:
    """One count chosen: how many, and why that many."""

    count: int
    why: str


@dataclass(frozen=True)
class Sizing:
    """spamd's children and each pool's processes, as ``mailscan up`` starts them."""

    spamd_children: Size
    pools: dict[str, Size]

    def lines(self) -> list[str]:
        """One line each, e.g. ``spam pool: 2 processes (2 usable CPUs; ... unset)``."""
        children = self.spamd_children
        lines = [f"spamd: {children.count} children ({children.why})"]
        return lines + [
            f"{pool} pool: {size.count} processes ({size.why})" for pool, size in self.pools.items()
        ]


def cgroup_quota(cpu_max: Path) -> float | None:
    """The CPUs a cgroup v2 ``cpu.max`` file allows (``QUOTA PERIOD`` in microseconds), or
    None when it sets no quota (``max PERIOD``), is missing or unreadable."""
    try:
        fields = cpu_max.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(affinity: int, cpu_max_files: Iterable[Path]) -> Cpus:
    """``affinity`` CPUs, fewer when a cgroup's quota (the smallest of ``cpu_max_files``)
    allows fewer. A fractional quota counts as the next whole CPU: a child more than the
    quota's whole CPUs uses the fraction, where one fewer would leave it idle."""
    quotas = [q for q in (cgroup_quota(path) for path in cpu_max_files) if q is not None]
    if quotas and math.ceil(min(quotas)) < affinity:
        count = max(1, math.ceil(min(quotas)))
        return Cpus(count, f"{count} usable CPUs: a cgroup quota of {min(quotas):g} CPUs")
    return Cpus(affinity, f"{affinity} usable CPUs")


def own_cpu_max_files(proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[Path]:
    """The ``cpu.max`` of this process's cgroup v2 and of each cgroup above it: any of
    them may hold the quota (a container's is often its own root's)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    unified = next((line[3:] for line in lines if line.startswith("0::")), None)
    if unified is None:
        return []
    folder = CGROUP_ROOT / unified.strip().lstrip("/")
    above = [path for path in folder.parents if path.is_relative_to(CGROUP_ROOT)]
    return [path / "cpu.max" for path in (folder, *above)]


def this_machine() -> Cpus:
    return usable_cpus(len(os.sched_getaffinity(0)), own_cpu_max_files())


def plan(settings: Settings, cpus: Cpus | None = None) -> Sizing:
    """What ``mailscan up`` starts with these settings on ``cpus`` (this machine's if None)."""
    cpus = this_machine() if cpus is None else cpus
    children = _chosen(settings.spamd_children, "spamd_children", Size(cpus.count, cpus.why))
    by_cpus = Size(cpus.count, cpus.why)
    like_spamd = Size(children.count, "as many as spamd's children")
    defaults = {AV_POOL: by_cpus, SPAM_POOL: like_spamd}
    pools = {pool: _pool_size(settings, pool, defaults[pool]) for pool in POOLS}
    spam = pools[SPAM_POOL]
    if spam.count > children.count:
        waits = spam.count - children.count
        note = f"{waits} more than spamd's children: their requests wait for a free child"
        pools[SPAM_POOL] = Size(spam.count, f"{spam.why}; {note}")
    return Sizing(children, pools)


def _pool_size(settings: Settings, pool: str, default: Size) -> Size:
    own = settings.pools[pool]
    if own.autoscale:
        largest = int(own.autoscale.split(",")[0])
        return Size(largest, f"at most, {env_name(pool + '_autoscale')}={own.autoscale}")
    return _chosen(own.concurrency, f"{pool}_concurrency", default)


def _chosen(value: int | None, field: str, default: Size) -> Size:
    if value is not None:
        return Size(value, f"{env_name(field)}={value}")
    return Size(default.count, f"{default.why}; {env_name(field)} unset")
