"""compose.yaml is what an administrator starts with ``docker compose up``: check, without a
Docker engine, that it holds together and agrees with the settings mailscan accepts."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks import settings as mailscan_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
SERVICES = {
    "redis", "clamd", "spamd", "mailserver", "av-worker", "spam-worker", "ops-worker", "beat",
    "flower", "console",
}  # fmt: skip
MAILSCAN_SERVICES = {
    "mailserver", "av-worker", "spam-worker", "ops-worker", "beat", "flower", "console",
}  # fmt: skip
# Redis under Sentinel, the profile ha, and what compose.yaml's header says to put in .env.
HA_SERVICES = {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
HA_ENV = {"MAILSCAN_REDIS_SENTINELS": "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"}
WORKERS = {"av-worker": ("av", "clamd"), "spam-worker": ("spam", "spamd")}
MAILSERVER_FOLDERS = ("spool_dir", "maildir", "quarantine_dir")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error} and $$, as compose
# interpolates them.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
# What an administrator puts in .env: the variables compose refuses to start without.
DOT_ENV = {"REDIS_PASSWORD": "redis-from-dot-env", "FLOWER_PASSWORD": "flower-from-dot-env"}


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """What compose makes of a value when only the required variables are set (to the
    values of DOT_ENV), and those of ``env``: the defaults of the others."""
    known = {**DOT_ENV, **(env or {})}

    def value_of(variable: re.Match[str]) -> str:
        if variable[0] == "$$":
            return "$"
        if variable["op"] and "?" in variable["op"]:
            return DOT_ENV[variable["name"]]
        return known.get(variable["name"]) or variable["arg"] or ""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return _VARIABLE.sub(value_of, value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(value)


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(text: str) -> dict[str, Any]:
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict), "compose.yaml is not a YAML mapping"
    return interpolate(parsed)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def option(args: list[str], name: str) -> str | None:
    """The value after ``name`` in an argument list, or None."""
    return args[args.index(name) + 1] if name in args[:-1] else None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


def settings_of(service: dict[str, Any]) -> mailscan_settings.Settings:
    return mailscan_settings.load_settings(environment(service))


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source, from the short ("src:/target[:ro]") or the long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume.get("source", "")
        else:
            source, _, rest = volume.partition(":")
            found[rest.split(":")[0]] = source
    return found


def compose_command() -> list[str]:
    """`docker compose` where the plugin is installed, else Debian's docker-compose, which
    ./scripts/test installs: both validate the file without a Docker engine."""
    docker = shutil.which("docker")
    if docker:
        answer = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if answer.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    assert standalone, "neither `docker compose` nor docker-compose is installed"
    return [standalone]


def compose_config(*options: str, **variables: str) -> subprocess.CompletedProcess:
    """`compose config` with these variables set, and no other of those in DOT_ENV."""
    env = {k: v for k, v in os.environ.items() if k not in DOT_ENV}
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), *options, "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
        env={**env, **variables},
    )


def compose_rendered(**variables: str) -> dict[str, Any]:
    """The file as compose makes it with these variables set."""
    env = {k: v for k, v in os.environ.items() if k not in DOT_ENV}
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
        env={**env, **variables},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host address, host port, container port) of each published port, from the short
    syntax compose 1 writes or the long one compose 2 writes."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append((entry.get("host_ip", ""), str(entry["published"]), str(entry["target"])))
        else:
            parts = str(entry).partition("/")[0].rsplit(":", 2)  # [HOST_IP:]PUBLISHED:TARGET
            found.append(tuple(["", *parts][-3:]))
    return found


def test_docker_compose_accepts_the_file() -> None:
    result = compose_config(**DOT_ENV)
    assert result.returncode == 0, f"docker compose rejects compose.yaml:\n{result.stderr}"


def test_compose_refuses_to_start_without_a_redis_password(text: str) -> None:
    result = compose_config(FLOWER_PASSWORD=DOT_ENV["FLOWER_PASSWORD"])
    assert result.returncode != 0, "compose starts Redis with a password anyone can know"
    assert "set REDIS_PASSWORD" in result.stderr
    assert "${REDIS_PASSWORD:-" not in text, "a default Redis password is a known one"


def test_all_services_are_defined(services: dict[str, Any]) -> None:
    assert services.keys() >= SERVICES, f"missing services: {SERVICES - services.keys()}"


def test_no_fixed_container_names_so_services_scale(services: dict[str, Any]) -> None:
    named = [name for name, service in services.items() if "container_name" in service]
    assert not named, f"container_name prevents --scale: {named}"


def test_every_service_has_a_healthcheck_and_restarts(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert service.get("restart") == "unless-stopped", f"{name}: restart policy"


def test_build_contexts_have_a_dockerfile(services: dict[str, Any]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "")
        assert (ROOT / context / (dockerfile or "Dockerfile")).is_file(), f"{name}: {build}"


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_each_worker_serves_its_own_queue(services: dict[str, Any], name: str) -> None:
    """``mailscan pool`` starts the worker (tests/test_compose_sizing.py: sized as
    ``mailscan up`` does); each container a node of its own, named by its host."""
    from mailserver.cli.pool import pool_argv

    pool, scanner = WORKERS[name]
    assert argv(services[name]) == ["mailscan", "pool", pool], name
    args = pool_argv(settings_of(services[name]), pool)
    assert option(args, "-Q") == pool, f"{name} must consume only the {pool} queue: {args}"
    assert option(args, "-n") == f"{pool}@%h", f"{name}: node name must be {pool}@%h: {args}"
    depends = services[name].get("depends_on", {})
    assert depends.get("redis", {}).get("condition") == "service_healthy", name
    assert scanner in depends, f"{name} must wait for {scanner}"


@pytest.mark.parametrize("name", ["mailserver", *sorted(WORKERS)])
def test_front_and_pools_tune_malloc_like_the_local_stack(
    services: dict[str, Any], name: str
) -> None:
    """The glibc settings that bound the front's memory and spare the pools a copy per big
    message hold in containers too."""
    from mailserver.supervisor.services import FRONT_MALLOC, POOL_MALLOC

    expected = FRONT_MALLOC if name == "mailserver" else POOL_MALLOC
    env = environment(services[name])
    assert {k: env.get(k) for k in expected} == expected, name
    assert env.get("MAILSCAN_REDIS_URL"), f"{name} must keep the shared settings"


def test_redis_needs_a_password_and_keeps_the_queue(services: dict[str, Any]) -> None:
    args = argv(services["redis"])
    password = option(args, "--requirepass")
    assert password, f"redis runs without a password: {args}"
    assert option(args, "--appendonly") == "yes", f"redis loses queued jobs on restart: {args}"
    assert option(args, "--maxmemory-policy") == "noeviction", f"redis may evict jobs: {args}"
    assert any(target == "/data" for target in mounts(services["redis"])), "redis data volume"
    assert "ports" not in services["redis"], "redis must not be published on the host"


@pytest.mark.parametrize("name", sorted(MAILSCAN_SERVICES))
def test_mailscan_services_accept_their_settings(services: dict[str, Any], name: str) -> None:
    settings = settings_of(services[name])  # raises ConfigError as the service would at start
    redis_url = re.match(r"rediss?://:(?P<password>[^@]+)@(?P<host>[^:/]+)", settings.redis_url)
    assert redis_url, f"{name}: the Redis URL carries no password: {settings.redis_url}"
    assert redis_url["password"] == DOT_ENV["REDIS_PASSWORD"], name
    assert redis_url["password"] == option(argv(services["redis"]), "--requirepass"), name
    assert redis_url["host"] in services, f"{name}: no service {redis_url['host']}"
    assert settings.clamd.host in services, f"{name}: MAILSCAN_CLAMD={settings.clamd}"
    assert settings.spamd.host in services, f"{name}: MAILSCAN_SPAMD={settings.spamd}"


def test_every_mailscan_variable_is_a_known_setting(text: str) -> None:
    known = set(mailscan_settings.variables())
    used = set(re.findall(r"MAILSCAN_[A-Z0-9_]+", text))
    assert used, "compose.yaml sets no MAILSCAN_* variable"
    assert used <= known, f"unknown settings stop mailscan at start: {sorted(used - known)}"


def test_mailserver_listens_where_it_is_published(services: dict[str, Any]) -> None:
    settings = settings_of(services["mailserver"])
    assert settings.smtp_host == "0.0.0.0", "a front on loopback is unreachable through the port"
    published = [str(p) for p in services["mailserver"].get("ports", [])]
    assert [p.rpartition(":")[2] for p in published] == [str(settings.smtp_port)], published


def test_smtp_is_published_on_this_hosts_loopback_unless_told_otherwise(
    services: dict[str, Any],
) -> None:
    assert [str(p) for p in services["mailserver"]["ports"]] == ["127.0.0.1:2525:2525"]
    rendered = compose_rendered(**DOT_ENV, SMTP_PUBLISH="0.0.0.0:25")
    assert published_ports(rendered["services"]["mailserver"]) == [("0.0.0.0", "25", "2525")]


def test_the_fronts_allow_list_takes_this_host_and_the_docker_networks_only(
    services: dict[str, Any],
) -> None:
    """A client of the port published on loopback reaches the container from a Docker
    network's gateway; nobody from elsewhere is taken, and relay mode would start."""
    from mailserver.front.access import AccessPolicy, check_exposure

    settings = settings_of(services["mailserver"])
    assert settings.smtp_allow_networks is not None, "set explicitly, as relay mode needs"
    policy = AccessPolicy.from_settings(settings)
    for inside in ("127.0.0.1", "::1", "172.17.0.1", "172.18.0.1", "192.168.16.1"):
        assert policy.allows_client((inside, 1)), inside
    for outside in ("203.0.113.5", "198.51.100.7", "2001:db8::5", "8.8.8.8"):
        assert not policy.allows_client((outside, 1)), outside
    check_exposure(dataclasses.replace(settings, delivery="relay"))


def test_flower_is_published_on_loopback_only(services: dict[str, Any]) -> None:
    published = [str(p) for p in services["flower"].get("ports", [])]
    assert published, "flower is not published"
    assert all(p.startswith("127.0.0.1:") for p in published), f"flower is exposed: {published}"


def test_console_is_published_on_loopback_only_and_keeps_its_users(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    settings = settings_of(services["console"])
    published = [str(p) for p in services["console"].get("ports", [])]
    assert published == [f"127.0.0.1:8025:{settings.console_port}"], published
    assert settings.console_host == "0.0.0.0", "a console on loopback is unreachable"
    console = mounts(services["console"])
    assert console.get(str(settings.console_users_file.parent)) in set(compose["volumes"])
    assert str(settings.quarantine_dir) in console, "the console cannot release quarantined mail"


def test_mail_folders_live_on_named_volumes(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose.get("volumes") or {})
    mailserver = mounts(services["mailserver"])
    settings = settings_of(services["mailserver"])
    for folder in MAILSERVER_FOLDERS:
        target = str(getattr(settings, folder))
        assert target in mailserver, f"{folder} ({target}) is not mounted: mail is lost"
        assert mailserver[target] in declared, f"{folder}: volume {mailserver[target]} undeclared"


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_workers_mount_the_crashdump_spool(
    compose: dict[str, Any], services: dict[str, Any], name: str
) -> None:
    declared = set(compose.get("volumes") or {})
    settings = settings_of(services[name])
    crashdumps = {t: s for t, s in mounts(services[name]).items() if "crashdump" in s}
    assert crashdumps, f"{name}: no crashdump volume"
    for target, source in crashdumps.items():
        assert source in declared, f"{name}: volume {source} undeclared"
        assert target.startswith(f"{settings.var_dir}/"), f"{name}: {target} not under var dir"
    assert str(settings.crashdump_dir) in crashdumps, f"{name}: {settings.crashdump_dir}"


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_per_process_crash_files_are_not_shared(services: dict[str, Any], name: str) -> None:
    """They are named by pid, and every container numbers its processes from 1."""
    from tasks import procfiles

    folder = str(procfiles.folder(settings_of(services[name]).crashdump_dir))
    tmpfs = services[name].get("tmpfs", [])
    tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    assert folder in [t.split(":")[0] for t in tmpfs], f"{name}: {folder} must be per container"


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_pools_read_big_messages_from_the_fronts_spool_volume(
    services: dict[str, Any], name: str
) -> None:
    """MAILSCAN_SHARED_SPOOL_FROM_BYTES is on: a pool without the spool at the front's path
    would cost the first big message a second scan and every big message Redis's time."""
    settings = settings_of(services[name])
    assert settings.shared_spool_from_bytes > 0
    assert settings.spool_dir == settings_of(services["mailserver"]).spool_dir
    spool = str(settings.spool_dir)
    assert mounts(services[name]).get(spool) == mounts(services["mailserver"])[spool]
    read_only = [v for v in services[name]["volumes"] if isinstance(v, str) and spool in v]
    assert [v.endswith(":ro") for v in read_only] == [True], f"{name}: mount it read-only"


def test_docker_compose_accepts_the_ha_profile() -> None:
    result = compose_config("--profile", "ha", **DOT_ENV, **HA_ENV)
    assert result.returncode == 0, f"docker compose rejects the profile ha:\n{result.stderr}"


def test_the_header_says_how_to_turn_the_ha_profile_on(text: str) -> None:
    assert "COMPOSE_PROFILES=ha" in text
    assert "{}={}".format(*next(iter(HA_ENV.items()))) in text


def test_ha_services_run_only_in_the_ha_profile(services: dict[str, Any]) -> None:
    assert services.keys() >= HA_SERVICES, f"missing: {HA_SERVICES - services.keys()}"
    for name, service in services.items():
        expected = ["ha"] if name in HA_SERVICES else None
        assert service.get("profiles") == expected, name


def test_the_replica_follows_the_primary_with_the_password(services: dict[str, Any]) -> None:
    replica = argv(services["redis-replica"])
    assert option(replica, "--replicaof") == "redis", replica
    assert replica[replica.index("--replicaof") + 2] == "6379", replica
    for name in ("redis", "redis-replica"):  # either may be the primary after a failover
        args = argv(services[name])
        assert option(args, "--requirepass") == DOT_ENV["REDIS_PASSWORD"], name
        assert option(args, "--masterauth") == DOT_ENV["REDIS_PASSWORD"], name
        assert option(args, "--appendonly") == "yes", name
        assert option(args, "--maxmemory-policy") == "noeviction", name
        assert option(args, "--replica-announce-ip") == name, "announced by a name that resolves"
    assert mounts(services["redis-replica"]) != mounts(services["redis"]), "a volume of its own"


def sentinel_config(service: dict[str, Any]) -> list[str]:
    """The config a sentinel writes at its first start, as its shell writes it."""
    script = argv(service)[-1]
    return [line for line in re.findall(r"""^\s*['"](.*?)['"] \\$""", script, re.MULTILINE)]


@pytest.mark.parametrize("name", ["sentinel-1", "sentinel-2", "sentinel-3"])
def test_sentinels_watch_the_primary_under_the_name_mailscan_asks_for(
    services: dict[str, Any], name: str
) -> None:
    config = sentinel_config(services[name])
    master = settings_of(services["mailserver"]).redis_master
    assert f"sentinel monitor {master} redis 6379 2" in config, config
    assert 'requirepass \\"$REDIS_PASSWORD\\"' in config, "clients must give the password"
    assert f'sentinel auth-pass {master} \\"$REDIS_PASSWORD\\"' in config, config
    assert "port 26379" in config
    assert environment(services[name])["REDIS_PASSWORD"] == DOT_ENV["REDIS_PASSWORD"]
    assert DOT_ENV["REDIS_PASSWORD"] not in argv(services[name]), "password on a command line"
    assert services[name]["volumes"] == [f"{name}:/data"], "what it learnt must survive it"


@pytest.mark.parametrize("name", sorted(MAILSCAN_SERVICES))
def test_under_ha_every_mailscan_service_asks_the_sentinels(text: str, name: str) -> None:
    services = interpolate(yaml.safe_load(text), HA_ENV)["services"]
    settings = settings_of(services[name])
    assert [(s.host, s.port) for s in settings.redis_sentinels] == [
        (sentinel, 26379) for sentinel in ("sentinel-1", "sentinel-2", "sentinel-3")
    ]
    assert all(s.host in services for s in settings.redis_sentinels)
    assert settings_of(interpolate(yaml.safe_load(text))["services"][name]).redis_sentinels == ()
