"""How many spamd children and pool processes `mailscan up` starts: the usable CPUs unless
the settings say, and the spam pool no wider than spamd unless told."""

from pathlib import Path

import pytest

from tasks.settings import load_settings
from tasks.sizing import Cpus, Size, cgroup_quota, own_quota_files, plan, usable_cpus

TWO = Cpus(2, "2 usable CPUs")


def cpu_max(tmp_path: Path, text: str, name: str = "cpu.max") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "quota"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("200000 100000", 2.0), ("junk", None),
     ("-1 100000", None), ("0 100000", None)],
)  # fmt: skip
def test_a_cgroup_cpu_max_file_gives_its_quota_in_cpus(tmp_path, text, quota):
    assert cgroup_quota(cpu_max(tmp_path, text)) == quota


def test_a_missing_cpu_max_file_is_no_quota(tmp_path):
    assert cgroup_quota(tmp_path / "cpu.max") is None


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("150000\n", "100000\n", 1.5), ("-1\n", "100000\n", None), ("50000", None, None),
     ("junk", "100000", None)],
)  # fmt: skip
def test_a_cgroup_v1_quota_is_its_cfs_quota_over_its_period(tmp_path, quota, period, cpus):
    if period is not None:
        cpu_max(tmp_path, period, "cpu.cfs_period_us")
    assert cgroup_quota(cpu_max(tmp_path, quota, "cpu.cfs_quota_us")) == cpus


def test_without_a_quota_the_affinity_counts(tmp_path):
    cpus = usable_cpus(4, [cpu_max(tmp_path, "max 100000"), tmp_path / "absent"])
    assert cpus == Cpus(4, "4 usable CPUs")


def test_a_quota_below_the_affinity_lowers_the_count_rounded_up(tmp_path):
    cpus = usable_cpus(8, [cpu_max(tmp_path, "250000 100000")])
    assert cpus == Cpus(3, "3 usable CPUs: a cgroup v2 quota of 2.5 CPUs")


def test_a_cgroup_v1_quota_lowers_the_count_and_the_start_up_lines_say_so(tmp_path):
    v1 = tmp_path / "cpu,cpuacct"
    v1.mkdir()
    cpu_max(v1, "150000\n", "cpu.cfs_quota_us")
    cpu_max(v1, "100000\n", "cpu.cfs_period_us")
    files = [cpu_max(tmp_path, "max 100000"), v1 / "cpu.cfs_quota_us"]
    cpus = usable_cpus(8, files)
    assert cpus == Cpus(2, "2 usable CPUs: a cgroup v1 quota of 1.5 CPUs")
    assert plan(load_settings({}), cpus).lines()[0] == (
        "spamd: 2 children (2 usable CPUs: a cgroup v1 quota of 1.5 CPUs; "
        "MAILSCAN_SPAMD_CHILDREN unset)"
    )


def test_the_smallest_quota_of_the_cgroups_above_counts(tmp_path):
    files = [cpu_max(tmp_path, "400000 100000", "own"), cpu_max(tmp_path, "100000 100000", "up")]
    assert usable_cpus(8, files).count == 1


def test_a_tiny_quota_still_leaves_one_cpu(tmp_path):
    assert usable_cpus(4, [cpu_max(tmp_path, "1000 100000")]).count == 1


def test_a_quota_above_the_affinity_changes_nothing(tmp_path):
    assert usable_cpus(2, [cpu_max(tmp_path, "800000 100000")]) == Cpus(2, "2 usable CPUs")


def test_the_cpu_max_files_are_those_of_the_own_cgroup_and_above(tmp_path):
    proc = cpu_max(tmp_path, "4:memory:/x\n0::/system.slice/mail.service\n", "cgroup")
    files = own_quota_files(proc)
    assert [str(f) for f in files] == [
        "/sys/fs/cgroup/system.slice/mail.service/cpu.max",
        "/sys/fs/cgroup/system.slice/cpu.max",
        "/sys/fs/cgroup/cpu.max",
    ]
    assert own_quota_files(cpu_max(tmp_path, "4:memory:/x\n", "v1")) == []
    assert own_quota_files(tmp_path / "absent") == []


def test_the_v1_quota_files_are_those_of_the_cpu_hierarchy_and_above(tmp_path):
    proc = cpu_max(tmp_path, "5:cpu,cpuacct:/docker/c0ffee\n4:memory:/docker/c0ffee\n", "v1")
    assert [str(f) for f in own_quota_files(proc)] == [
        "/sys/fs/cgroup/cpu,cpuacct/docker/c0ffee/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/docker/c0ffee/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/docker/cpu.cfs_quota_us",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]
    only_cpu = cpu_max(tmp_path, "2:cpu:/\n1:name=systemd:/init.scope\n", "only")
    assert [str(f) for f in own_quota_files(only_cpu)] == ["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]


def test_by_default_every_count_is_the_usable_cpus_and_says_so():
    sized = plan(load_settings({}), Cpus(3, "3 usable CPUs"))
    assert sized.spamd_children.count == 3
    assert (sized.pools["av"].count, sized.pools["spam"].count) == (3, 3)
    assert sized.lines() == [
        "spamd: 3 children (3 usable CPUs; MAILSCAN_SPAMD_CHILDREN unset)",
        "av pool: 3 processes (3 usable CPUs; MAILSCAN_AV_CONCURRENCY unset)",
        "spam pool: 3 processes (as many as spamd's children; MAILSCAN_SPAM_CONCURRENCY unset)",
    ]


def test_the_spam_pool_follows_spamd_children_when_they_are_set():
    sized = plan(load_settings({"MAILSCAN_SPAMD_CHILDREN": "5"}), TWO)
    assert sized.spamd_children.why == "MAILSCAN_SPAMD_CHILDREN=5"
    assert (sized.pools["av"].count, sized.pools["spam"].count) == (2, 5)


def test_settings_override_and_a_wider_spam_pool_says_its_jobs_wait():
    environ = {"MAILSCAN_AV_CONCURRENCY": "6", "MAILSCAN_SPAM_CONCURRENCY": "4"}
    sized = plan(load_settings(environ), TWO)
    assert sized.spamd_children.count == 2
    assert sized.pools["av"].why == "MAILSCAN_AV_CONCURRENCY=6"
    assert sized.pools["spam"] == Size(
        4,
        "MAILSCAN_SPAM_CONCURRENCY=4; 2 more than spamd's children: their requests wait for a "
        "free child",
    )


def test_celerys_autoscaler_gives_its_largest_size():
    sized = plan(load_settings({"MAILSCAN_AV_AUTOSCALE": "6,2"}), TWO)
    assert sized.pools["av"].count == 6
    assert sized.pools["av"].why == "at most, MAILSCAN_AV_AUTOSCALE=6,2"
