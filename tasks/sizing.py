"""How many spamd children and pool processes ``mailscan up`` starts: what the settings say,
else as many as the CPUs this process may use (its CPU affinity, and its cgroup's CPU quota,
cgroup v1 or v2).

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
# cgroup v2's quota file; cgroup v1's quota and period files.
V2_MAX = "cpu.max"
V1_QUOTA, V1_PERIOD = "cpu.cfs_quota_us", "cpu.cfs_period_us"


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
        return lines + [self.pool_line(pool) for pool in self.pools]

    def pool_line(self, pool: str) -> str:
        size = self.pools[pool]
        return f"{pool} pool: {size.count} processes ({size.why})"


def cgroup_quota(quota_file: Path) -> float | None:
    """The CPUs a cgroup quota file allows, or None when it sets none, is missing or is
    unreadable: cgroup v2's ``cpu.max`` (``QUOTA PERIOD`` in microseconds, ``max`` for none),
    or cgroup v1's ``cpu.cfs_quota_us`` (-1 for none) with ``cpu.cfs_period_us`` beside it."""
    fields = _fields(quota_file)
    if quota_file.name == V1_QUOTA:
        fields += _fields(quota_file.with_name(V1_PERIOD))
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _fields(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def usable_cpus(affinity: int, quota_files: Iterable[Path]) -> Cpus:
    """``affinity`` CPUs, fewer when a cgroup's quota (the smallest of ``quota_files``)
    allows fewer. A fractional quota counts as the next whole CPU: a child more than the
    quota's whole CPUs uses the fraction, where one fewer would leave it idle."""
    quotas = [(q, path) for path in quota_files if (q := cgroup_quota(path)) is not None]
    quota, path = min(quotas, default=(float(affinity), None))
    if path is None or math.ceil(quota) >= affinity:
        return Cpus(affinity, f"{affinity} usable CPUs")
    count = max(1, math.ceil(quota))
    version = "v1" if path.name == V1_QUOTA else "v2"
    return Cpus(count, f"{count} usable CPUs: a cgroup {version} quota of {quota:g} CPUs")


def own_quota_files(proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[Path]:
    """The quota files of this process's cgroups and of each cgroup above them, as any of
    them may hold the quota (a container's is often its own root's): ``cpu.max`` of its
    cgroup v2, and ``cpu.cfs_quota_us`` of its cgroup v1 ``cpu`` hierarchy, mounted under
    the names of its controllers (``cpu,cpuacct``) or as ``cpu``. A host may have both."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    files: list[Path] = []
    for controllers, cgroup in _memberships(lines):
        if controllers == "":  # cgroup v2's line: 0::PATH
            files += _up_from(CGROUP_ROOT, cgroup, V2_MAX)
        elif "cpu" in controllers.split(","):
            for mount in dict.fromkeys((controllers, "cpu")):
                files += _up_from(CGROUP_ROOT / mount, cgroup, V1_QUOTA)
    return files


def _memberships(lines: list[str]) -> list[tuple[str, str]]:
    """The controllers and cgroup path of each ``HIERARCHY:CONTROLLERS:PATH`` line."""
    split = [line.split(":", 2) for line in lines]
    return [(fields[1], fields[2]) for fields in split if len(fields) == 3]


def _up_from(mount: Path, cgroup: str, name: str) -> list[Path]:
    """``name`` in ``cgroup``'s folder under ``mount``, and in each folder above it up to
    ``mount``."""
    folder = mount / cgroup.strip().lstrip("/")
    above = [path for path in folder.parents if path.is_relative_to(mount)]
    return [path / name for path in (folder, *above)]


def this_machine() -> Cpus:
    return usable_cpus(len(os.sched_getaffinity(0)), own_quota_files())


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
