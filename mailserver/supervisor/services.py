"""What each service of the local system is: its command line, its port, and how to tell it
is ready. ``mailserver.supervisor.stack`` starts and stops them; compose runs the same command
lines."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import sys
import urllib.request
from pathlib import Path

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from mailserver.supervisor.redisnodes import redis_services
from mailserver.supervisor.service import Service, binary
from tasks import sizing
from tasks.plugins.clamav import ClamavPlugin
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.setting_parsers import Endpoint
from tasks.settings import Settings, env_name
from tasks.wire.keys import AV_POOL, OPS_QUEUE, SPAM_POOL

SIGNATURES = Path(__file__).resolve().parents[2] / "tasks" / "signatures"
OFFICIAL_CLAMAV_DB = Path("/var/lib/clamav")
# glibc's malloc, set per process for what each does with message bytes (compose.yaml sets
# the same). The front's threads each kept the freed buffers of a big message in an arena
# of their own: one arena (the GIL serializes them anyway) keeps its peak near one copy of
# the message. A pool process reads a message into a buffer that grows by reallocation:
# mapped on its own from 4 MiB, it grows without being copied and goes back to the system
# when freed. The front reads big messages back from the spool (mailserver/front/staging.py):
# mapped on their own too, or glibc raises its threshold after the first is freed and
# keeps the next ones in a heap that fragments.
MMAP_FROM_4MIB = "glibc.malloc.mmap_threshold=4194304"
FRONT_MALLOC = {"GLIBC_TUNABLES": f"glibc.malloc.arena_max=1:{MMAP_FROM_4MIB}"}
POOL_MALLOC = {"GLIBC_TUNABLES": MMAP_FROM_4MIB}


def all_services(settings: Settings) -> list[Service]:
    return [
        *redis_services(settings),
        _clamd(settings),
        _spamd(settings),
        _worker(settings, AV_POOL),
        _worker(settings, SPAM_POOL),
        _worker(settings, OPS_QUEUE),
        _beat(settings),
        _flower(settings),
        _mailserver(settings),
        _console(settings),
    ]


def prepare_clamd(settings: Settings) -> Path:
    """Write clamd.conf and a database folder: our test signatures, plus the official
    database when this machine has one (there is no network here for freshclam)."""
    folder = (settings.var_dir / "clamd").resolve()
    database = folder / "db"
    database.mkdir(parents=True, exist_ok=True)
    for signature in SIGNATURES.iterdir():
        shutil.copy(signature, database / signature.name)
    for official in _official_databases():
        link = database / official.name
        if not link.exists():
            link.symlink_to(official)
    conf = folder / "clamd.conf"
    conf.write_text(_clamd_conf(settings.clamd, database))
    return conf


def _official_databases() -> list[Path]:
    if not OFFICIAL_CLAMAV_DB.is_dir():
        return []
    return [p for p in OFFICIAL_CLAMAV_DB.iterdir() if p.suffix in (".cvd", ".cld", ".cud")]


def _clamd_conf(endpoint: Endpoint, database: Path) -> str:
    listen = (
        f"LocalSocket {endpoint.socket_path}\n"
        if endpoint.socket_path
        else f"TCPSocket {endpoint.port}\nTCPAddr {endpoint.host}\n"
    )
    return (
        "Foreground yes\n"
        f"DatabaseDirectory {database}\n"
        "LogTime yes\n"
        # Mail can be large; refuse only what the SMTP front would refuse anyway.
        "StreamMaxLength 64M\nMaxScanSize 200M\nMaxFileSize 64M\n"
        f"{listen}"
    )


def _clamd(settings: Settings) -> Service:
    argv = [binary("clamd", "clamav-daemon"), "-c", str(prepare_clamd(settings))]
    timeout = 240.0 if _official_databases() else 60.0  # the official database loads slowly

    def ready() -> bool:
        return bool(ClamavPlugin(settings=settings).health())

    return Service("clamd", argv, ready, port=settings.clamd.port or None, ready_timeout_s=timeout)


# spamd copies its whole configuration back after every connection, in case the connection
# loaded a user's own settings; run with --nouser-config none does, and this plugin keeps the
# copy for the connections that did (its own comment says more).
KEEP_CONFIG_PLUGIN = "Mailscan::KeepConfig"
KEEP_CONFIG_FILE = Path(__file__).resolve().parent / "spamassassin" / "KeepConfig.pm"


def _spamd(settings: Settings) -> Service:
    endpoint = settings.spamd
    children = str(sizing.plan(settings).spamd_children.count)
    argv = [
        binary("spamd", "spamd"), "--local", "--nouser-config", "--syslog=stderr",
        f"--max-children={children}", f"--min-children={children}",
        f"--pidfile={(settings.var_dir / 'spamd.pid').resolve()}", *_spamd_clients(endpoint),
    ]  # fmt: skip
    if os.geteuid() == 0:
        # spamd will not scan as root; nobody has no home, so Bayes gets a folder of its own
        # (or every scan logs a failed auto-learn lock and nothing is learnt). The folder is
        # local: flock, not the NFS-safe lock files that spamd's children racing for Bayes
        # sometimes found gone ("locker: error accessing ...").
        home = spamd_home(settings)
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, "nobody")
        argv += [
            "--username=nobody", f"--helper-home-dir={home}",
            f"--cf=bayes_path {home}/bayes", "--cf=lock_method flock",
        ]  # fmt: skip
    argv += [f"--cf=loadplugin {KEEP_CONFIG_PLUGIN} {KEEP_CONFIG_FILE}"]
    argv += [f"--cf={line}" for line in settings.spamd_config]

    def ready() -> bool:
        return bool(SpamassassinPlugin(settings=settings, pool=SPAM_POOL).health())

    return Service("spamd", argv, ready, port=endpoint.port or None, ready_timeout_s=120.0)


def spamd_home(settings: Settings) -> Path:
    """spamd's home when run as root (as nobody): its Bayes database is ``bayes`` in it."""
    return (settings.var_dir / "spamd-home").resolve()


def _spamd_clients(endpoint: Endpoint) -> list[str]:
    """Where spamd listens and who may talk to it. The spam pool teaches Bayes (TELL,
    tasks/learn.py), so spamd accepts learning; the local system runs every pool on this
    host, so only loopback may connect (a socket: only who may open the file)."""
    if endpoint.socket_path:
        return [f"--socketpath={endpoint.socket_path}", "--allow-tell"]
    return [f"--listen={endpoint.host}:{endpoint.port}", "--allowed-ips=127.0.0.1,::1",
            "--allow-tell"]  # fmt: skip


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tasks", *args]


def node_name(pool: str, settings: Settings) -> str:
    return f"{pool}@{settings.hostname}"


def worker_argv(settings: Settings, pool: str) -> list[str]:
    """The command line of one pool's worker; compose and the docs use the same flags."""
    if pool == OPS_QUEUE:
        return celery_argv(
            "worker", "-Q", OPS_QUEUE, "-n", node_name(OPS_QUEUE, settings), "-c", "1",
            "--pool", "prefork", "-l", "INFO",
        )  # fmt: skip
    own = settings.pools[pool]
    concurrency, max_tasks = sizing.plan(settings).pools[pool].count, own.max_tasks_per_child
    max_memory_kb = own.max_memory_per_child_mb * 1024
    # One mechanism per pool: Celery's autoscaler, or a fixed size that `mailscan scale` and
    # the backlog autoscaler change (Celery refuses pool_grow while its autoscaler runs).
    autoscale = own.autoscale
    size = f"--autoscale={autoscale}" if autoscale else f"--concurrency={concurrency}"
    # Without gossip and mingle: a pool needs nothing of the other workers' events or state
    # (no revokes, no elections), and taking them costs CPU every heartbeat and a wait at
    # start. Heartbeats still go out, for Flower.
    return celery_argv(
        "worker", "-Q", pool, "-n", node_name(pool, settings), size,
        "--pool", "prefork", "-l", "INFO", "--without-gossip", "--without-mingle",
        f"--max-tasks-per-child={max_tasks}", f"--max-memory-per-child={max_memory_kb}",
    )  # fmt: skip


def _worker(settings: Settings, pool: str) -> Service:
    argv = worker_argv(settings, pool)

    def ready() -> bool:
        control = control_app(settings).control
        return bool(control.ping(destination=[node_name(pool, settings)], timeout=0.5))

    env = dict(POOL_MALLOC) if pool in (AV_POOL, SPAM_POOL) else {}  # each its own
    return Service(f"{pool}-worker", argv, ready, ready_timeout_s=60.0, env=env)


@functools.cache
def control_app(settings: Settings) -> Celery:
    """An app bound to this stack's Redis (a process may watch several stacks)."""
    from tasks.celery import celery_config

    app = Celery("mailscan-control", set_as_current=False)
    app.config_from_object(celery_config(settings))
    return app


def _beat(settings: Settings) -> Service:
    folder = settings.var_dir / "beat"
    folder.mkdir(parents=True, exist_ok=True)
    argv = celery_argv(
        "beat", "-S", "beat.scheduler:LockedScheduler", "-s", str(folder / "schedule"), "-l", "INFO"
    )
    # beat answers nothing; a beat that cannot start exits at once, which _await_ready sees.
    return Service("beat", argv, lambda: True)


def flower_credentials(settings: Settings) -> tuple[str, str]:
    """The configured user and password, or a password made once and kept under var/."""
    if settings.flower_password:
        return settings.flower_user, settings.flower_password
    path = settings.var_dir / "flower" / "password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18))
    return settings.flower_user, path.read_text().strip()


def _flower(settings: Settings) -> Service:
    port = settings.flower_port
    user, password = flower_credentials(settings)
    # Flower answers /metrics and /healthcheck without credentials even with basic auth:
    # it listens on loopback only; put a proxy in front to reach it from elsewhere.
    argv = celery_argv("flower", "--address=127.0.0.1", f"--port={port}")
    # Through the environment, not the command line, which every local user can read.
    secret_env = {"FLOWER_BASIC_AUTH": f"{user}:{password}"}

    def ready() -> bool:
        url = f"http://127.0.0.1:{port}/healthcheck"
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200

    def watch_pools() -> None:
        # The pools send task events only while a Flower asks, and Flower first asks 5 s
        # after it starts: jobs of those seconds would be missing from its list. If the
        # broadcast fails, Flower's own asking comes a few seconds later.
        with contextlib.suppress(OSError, OperationalError, redis.RedisError):
            control_app(settings).control.enable_events()

    return Service("flower", argv, ready, port=port, env=secret_env, after_ready=watch_pools)


def _mailserver(settings: Settings) -> Service:
    argv = [sys.executable, "-m", "mailserver.cli", "serve"]

    def ready() -> bool:
        # 554: it answers, and refuses this host (MAILSCAN_SMTP_ALLOW_NETWORKS leaves it out).
        with socket.create_connection((settings.smtp_host, settings.smtp_port), timeout=1) as s:
            return s.recv(3) in (b"220", b"554")

    env = {**FRONT_MALLOC, **_tls_env(settings)}
    return Service("mailserver", argv, ready, port=settings.smtp_port, env=env)


def _tls_env(settings: Settings) -> dict[str, str]:
    """The certificate the front is given, also when it is not from the environment
    (``mailscan up --tls``)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    return {
        env_name("tls_cert"): str(settings.tls_cert),
        env_name("tls_key"): str(settings.tls_key),
    }


def _console(settings: Settings) -> Service:
    argv = [sys.executable, "-m", "mailserver.cli", "console", "serve"]
    host = "127.0.0.1" if settings.console_host in ("0.0.0.0", "::") else settings.console_host

    def ready() -> bool:
        url = f"http://{host}:{settings.console_port}/healthz"
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200

    return Service("console", argv, ready, port=settings.console_port)
