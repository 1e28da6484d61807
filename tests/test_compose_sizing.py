"""compose.yaml's pools and spamd are sized as ``mailscan up`` sizes them: by the CPUs each
container may use (its cgroup quota included), unless .env sets a count. The workers start
through ``mailscan pool``; spamd's image sizes its children with a script of its own (it has
no Python), checked here against tasks/sizing.py on the same cgroup files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailserver.cli.main import main
from mailserver.cli.pool import pool_argv
from mailserver.supervisor.services import worker_argv
from tasks import sizing
from tasks.settings import load_settings
from tests.test_compose import (
    COMPOSE,
    DOT_ENV,
    ROOT,
    WORKERS,
    compose_rendered,
    environment,
    interpolate,
    settings_of,
)  # fmt: skip

SPAMD_CHILDREN = ROOT / "docker" / "spamd" / "children.sh"


def services(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The services as compose makes them with .env holding DOT_ENV and ``env``."""
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)["services"]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_a_compose_worker_runs_the_command_line_of_mailscan_up(name: str) -> None:
    pool, _ = WORKERS[name]
    settings = settings_of(services()[name])
    expected = worker_argv(settings, pool)
    expected[expected.index("-n") + 1] = f"{pool}@%h"
    assert pool_argv(settings, pool) == expected


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_without_a_count_in_dot_env_a_pool_sizes_itself_by_its_cpus(name: str) -> None:
    pool, _ = WORKERS[name]
    settings = settings_of(services()[name])
    assert settings.pools[pool].concurrency is None, "compose must not fix the count"
    assert settings.spamd_children is None
    cpus = sizing.this_machine().count
    assert f"--concurrency={cpus}" in pool_argv(settings, pool)


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_a_count_in_dot_env_overrides_the_sizing(name: str) -> None:
    pool, _ = WORKERS[name]
    variable = f"MAILSCAN_{pool.upper()}_CONCURRENCY"
    settings = settings_of(services({variable: "5"})[name])
    assert "--concurrency=5" in pool_argv(settings, pool)
    rendered = compose_rendered(**DOT_ENV, **{variable: "5"})["services"][name]
    assert environment(rendered)[variable] == "5"


def test_mailscan_pool_says_its_size_and_becomes_the_worker(monkeypatch, capsys) -> None:
    started: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        started.append([path, *argv])
        raise SystemExit(0)  # as if the worker had taken the process's place and ended

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setenv("MAILSCAN_AV_CONCURRENCY", "")  # as compose passes it when unset
    with pytest.raises(SystemExit):
        main(["pool", "av"])
    settings = load_settings()
    cpus = sizing.this_machine()
    assert capsys.readouterr().out == (
        f"av pool: {cpus.count} processes ({cpus.why}; MAILSCAN_AV_CONCURRENCY unset)\n"
    )
    argv = pool_argv(settings, "av")
    assert started == [[argv[0], *argv]]


def spamd_children(root: Path, **env: str) -> int:
    """What the spamd image's script starts, on the cgroup folder ``root``."""
    done = subprocess.run(["sh", str(SPAMD_CHILDREN), str(root)], capture_output=True,
                          text=True, check=True, timeout=30, env={**os.environ, **env})  # fmt: skip
    return int(done.stdout)


# In a container its cgroup is the root: cgroup v2's cpu.max there, or v1's cpu hierarchy.
CGROUPS = {
    "no quota": {},
    "v2, no quota": {"cpu.max": "max 100000\n"},
    "v2, half a CPU": {"cpu.max": "50000 100000\n"},
    "v2, one and a half": {"cpu.max": "150000 100000\n"},
    "v2, more than the CPUs": {"cpu.max": "6400000 100000\n"},
    "v1, half a CPU": {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
                       "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    "v1, no quota": {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
}  # fmt: skip


@pytest.mark.parametrize("files", CGROUPS.values(), ids=CGROUPS.keys())
def test_spamd_children_are_the_usable_cpus_as_mailscan_counts_them(
    tmp_path: Path, monkeypatch, files: dict[str, str]
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("3:cpu,cpuacct:/\n0::/\n")  # a container's, in its own cgroup namespace
    monkeypatch.setattr(sizing, "CGROUP_ROOT", tmp_path)
    cpus = sizing.usable_cpus(len(os.sched_getaffinity(0)), sizing.own_quota_files(proc))
    assert spamd_children(tmp_path) == cpus.count


def test_spamd_children_set_in_dot_env_are_taken_by_spamd_and_the_spam_pool(tmp_path) -> None:
    spamd = services({"MAILSCAN_SPAMD_CHILDREN": "3"})["spamd"]
    assert environment(spamd)["MAILSCAN_SPAMD_CHILDREN"] == "3"
    assert spamd_children(tmp_path, MAILSCAN_SPAMD_CHILDREN="3") == 3
    worker = settings_of(services({"MAILSCAN_SPAMD_CHILDREN": "3"})["spam-worker"])
    assert "--concurrency=3" in pool_argv(worker, "spam")
    unset = environment(services()["spamd"])["MAILSCAN_SPAMD_CHILDREN"]
    assert spamd_children(tmp_path, MAILSCAN_SPAMD_CHILDREN=unset) == sizing.this_machine().count


def test_the_spamd_image_fixes_no_count_of_its_own() -> None:
    dockerfile = (ROOT / "docker" / "spamd" / "Dockerfile").read_text()
    assert "children.sh /usr/local/bin/spamd-children" in dockerfile
    assert "-children=" not in dockerfile.partition("CMD")[2]
    entrypoint = (ROOT / "docker" / "spamd" / "entrypoint.sh").read_text()
    assert '"--min-children=$children" "--max-children=$children" "$@"' in entrypoint
