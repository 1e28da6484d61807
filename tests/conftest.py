"""Test fixtures. Integration tests run against the real thing: a Redis, clamd and spamd of
their own and both Celery pools, started on loopback test ports through the same
``mailserver.supervisor.stack`` that ``mailscan up`` uses."""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from mailserver.supervisor.services import control_app
from mailserver.supervisor.stack import Stack
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tasks.wire.keys import HEALTH_KEY, HEALTH_TASKS
from tests.guards_redis import PoolProcess, throwaway_redis

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "sa-public"
BACKENDS = ("redis", "clamd", "spamd")
POOLS = ("av-worker", "spam-worker")

# One folder for the whole run, removed at its end. tests/ is a package, so pytest and the
# test modules (``from tests.conftest import ...``) import this file once, as tests.conftest.
TEST_ROOT = Path(tempfile.mkdtemp(prefix="mailscan-test-"))
# Every test port moves by this much, so two runs of the suite on one machine do not meet.
PORT_SHIFT = int(os.environ.get("TEST_PORT_SHIFT", "0"))


def port(base: int) -> int:
    return base + PORT_SHIFT


TEST_ENV = {
    "MAILSCAN_VAR_DIR": str(TEST_ROOT / "var"),
    "MAILSCAN_REDIS_URL": f"redis://127.0.0.1:{port(16390)}/0",
    # Made by the session's stack as it starts Redis; named here so that fronts of their own
    # (another var folder, the same Redis) find it too.
    "MAILSCAN_REDIS_PASSWORD_FILE": str(TEST_ROOT / "var" / "redis" / "password"),
    "MAILSCAN_CLAMD": f"127.0.0.1:{port(13320)}",
    "MAILSCAN_SPAMD": f"127.0.0.1:{port(17830)}",
    "MAILSCAN_SMTP_PORT": str(port(12525)),
    "MAILSCAN_FLOWER_PORT": str(port(15555)),
    "MAILSCAN_METRICS_PORT": str(port(19125)),
    "MAILSCAN_AV_PLUGINS": "clamav,builtin,command",
    # The command engine is clamscan with the project's own signatures (prepared for clamd).
    "MAILSCAN_COMMAND_SCANNER": f"clamscan --no-summary -d {TEST_ROOT / 'var' / 'clamd' / 'db'} -",
    "MAILSCAN_SCAN_DEADLINE_S": "30",
    "MAILSCAN_REDRIVE_INTERVAL_S": "1",
    # Its default port is one for every stack and front: the milter tests give it their own.
    "MAILSCAN_MILTER": "off",
}


def pytest_configure(config: pytest.Config) -> None:
    # Before anything reads settings: the Celery app in this process must talk to the
    # test Redis, never to a stack an administrator runs on the default ports.
    for name in [k for k in os.environ if k.startswith("MAILSCAN_")]:
        del os.environ[name]
    os.environ.update(TEST_ENV)


def pytest_collection_finish(session: pytest.Session) -> None:
    # A Celery task imported at a test module's top is evaluated by collection, which
    # configures this process's app before the stack has made Redis's password: every later
    # use of the app would then talk to Redis without it.
    from tasks.celery import app

    if app.configured:
        raise pytest.UsageError("a test module configured the Celery app while collected")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("KEEP_TEST_VAR"):
        shutil.rmtree(TEST_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """Redis, clamd, spamd, both pools and the SMTP front, for the whole session."""
    yield from running_stack(settings, dict(os.environ))


@pytest.fixture(scope="session")
def guard_redis() -> Iterator[redis.Redis]:
    """A Redis of its own for the guards' unit tests: no stack, nothing else in it."""
    yield from throwaway_redis(port(16390) + 50)


@pytest.fixture
def pool_process(stack, guard_redis, tmp_path, monkeypatch) -> PoolProcess:
    """A pool process with an empty Redis; ``start`` gives it its guards. Its verdicts go
    to Celery's result backend, the session stack's Redis: running, with its password made,
    before the first job configures the Celery app (once per process)."""
    from tasks import runner

    guard_redis.flushdb()
    state: dict = {}
    monkeypatch.setattr(runner, "_process_state", state)
    return PoolProcess(guard_redis, tmp_path, state)


def running_stack(settings: Settings, env: dict[str, str]) -> Iterator[Stack]:
    running = Stack(settings, env)
    try:
        running.start([*BACKENDS, *POOLS, "mailserver"], progress=lambda _: None)
        yield running
    finally:
        running.stop()


def stack_env(name: str, port_offset: int, **overrides: str) -> dict[str, str]:
    """The environment of a further stack of its own: ports shifted, its own folders."""
    env = {**os.environ, **TEST_ENV, "MAILSCAN_VAR_DIR": str(TEST_ROOT / name)}
    env["MAILSCAN_REDIS_URL"] = f"redis://127.0.0.1:{port(16390) + port_offset}/0"
    if port_offset:  # a Redis of its own, with its own password
        env["MAILSCAN_REDIS_PASSWORD_FILE"] = str(TEST_ROOT / name / "redis" / "password")
    env["MAILSCAN_CLAMD"] = f"127.0.0.1:{port(13320) + port_offset}"
    env["MAILSCAN_SPAMD"] = f"127.0.0.1:{port(17830) + port_offset}"
    env["MAILSCAN_SMTP_PORT"] = str(port(12525) + 10 * port_offset)
    env["MAILSCAN_FLOWER_PORT"] = str(port(15555) + port_offset)
    env["MAILSCAN_METRICS_PORT"] = str(port(19125) + port_offset)
    signatures = TEST_ROOT / name / "clamd" / "db"
    env["MAILSCAN_COMMAND_SCANNER"] = f"clamscan --no-summary -d {signatures} -"
    env.update({f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()})
    return env


@dataclass
class Reply:
    code: int
    text: str


def send(message: EmailMessage | bytes, port: int, rcpts: list[str] | None = None) -> Reply:
    """Send over real SMTP; the reply to DATA (or the refusal) as the sender saw it."""
    rcpts = rcpts or ["bob@example.test"]
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("client.example.test")
        client.mail("alice@example.test")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, text = client.data(on_the_wire(message))
        return Reply(code, text.decode())


def on_the_wire(message: EmailMessage | bytes) -> bytes:
    """The message with CRLF line ends, as an MTA sends a message it stored with LF ones
    (smtplib sends bytes as they are, and the front refuses a bare LF)."""
    raw = message if isinstance(message, bytes) else message.as_bytes()
    return re.sub(rb"\r?\n", b"\r\n", raw)


def make_message(body: str = "", attachment: bytes | None = None, **headers: str) -> EmailMessage:
    # Unique content by default: identical content would be answered from the verdict cache.
    body = body or f"Hello, this is a normal message ({time.time_ns()})."
    message = EmailMessage()
    message["From"] = "Alice <alice@example.test>"
    message["To"] = "Bob <bob@example.test>"
    message["Subject"] = headers.pop("subject", "A message")
    message["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{time.time_ns()}@example.test>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="file.com"
        )
    return message


def maildir_messages(root: Path) -> list[bytes]:
    folder = root / "new"
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def wait_for(check: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def find_delivered(root: Path, marker: bytes) -> list[bytes]:
    return [m for m in maildir_messages(root) if marker in m]


# The fault stack: chaos in the av pool, short limits, shared by the isolation and
# operations tests.
SOFT_S, HARD_S = 4.0, 10.0
FAULT_SETTINGS = {
    "av_plugins": "chaos,clamav",
    "av_soft_limit_s": str(SOFT_S),
    "av_hard_limit_s": str(HARD_S),
    "spam_soft_limit_s": "6",
    "spam_hard_limit_s": "10",
    "spamd_timeout_s": "3",
    "clamd_timeout_s": "3",
    "scan_deadline_s": "60",
    "max_attempts": "3",
    "breaker_failures": "3",
    "breaker_cooldown_s": "30",
    "av_max_memory_per_child_mb": "240",
}


@pytest.fixture(scope="session")
def fault_env() -> dict[str, str]:
    return stack_env("faults", 1, **FAULT_SETTINGS)


@pytest.fixture(scope="session")
def fs(fault_env) -> Settings:
    return load_settings(fault_env)


@pytest.fixture(scope="session")
def faults(fs, fault_env) -> Iterator[Stack]:
    """A stack of its own with the chaos plugin in the av pool and short time limits."""
    yield from running_stack(fs, fault_env)


@pytest.fixture(scope="session")
def ha_env() -> dict[str, str]:
    from tests.sentinel_stack import HA_SETTINGS, OFFSET

    return stack_env("sentinel", OFFSET, **HA_SETTINGS)


@pytest.fixture(scope="session")
def hs(ha_env) -> Settings:
    return load_settings(ha_env)


@pytest.fixture(scope="session")
def ha(hs, ha_env) -> Iterator[Stack]:
    """A whole stack on Redis under Sentinel (tests/sentinel_stack.py)."""
    from tests.sentinel_stack import start_ha

    yield from start_ha(hs, ha_env)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator:
    """A private PostgreSQL cluster on a loopback test port (tests/pg_cluster.py)."""
    from tests.pg_cluster import removed, started_cluster

    cluster = started_cluster(port(15432))
    yield cluster
    removed(cluster)


def probe_pools_now(settings: Settings) -> None:
    """Both pools' health probes, sent now (beat sends them every 30 s), and their answers
    stored."""
    client, sent_at = redisauth.connect(settings), time.time()
    app = control_app(settings)
    for task in HEALTH_TASKS.values():
        app.send_task(task)

    def probed(pool: str) -> bool:
        record = client.hget(HEALTH_KEY, f"{pool}@{settings.hostname}")
        return bool(record) and json.loads(record)["at"] >= sent_at

    for pool in HEALTH_TASKS:
        wait_for(lambda pool=pool: probed(pool), 30, f"the {pool} pool's health probe")


def mailscan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The mailscan command, run against the test stack, or the stack of ``env``."""
    return subprocess.run([sys.executable, "-m", "mailserver.cli", *args], capture_output=True,
                          text=True, timeout=90, env=env or dict(os.environ))  # fmt: skip


class LongestCommand:
    """Redis's MONITOR, on a socket of its own: the longest command line Redis executed
    while the block ran (arguments are written out, so a message's bytes make it long)."""

    def __init__(self, settings: Settings) -> None:
        port = urlsplit(settings.redis_url).port or 6379
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        self.password = redisauth.password(settings)
        self.longest, self.commands = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> LongestCommand:
        auth = f"AUTH {self.password}\r\n" if self.password else ""
        self.sock.sendall(f"{auth}MONITOR\r\n".encode())
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        time.sleep(0.5)  # the pools' last writes
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _read(self) -> None:
        lines = self.sock.makefile("rb")
        while not self._stop.is_set():
            try:
                line = lines.readline()
            except TimeoutError:
                continue
            self.longest, self.commands = max(self.longest, len(line)), self.commands + 1
