"""What the guards' unit tests share: a throwaway Redis, the stub engine, and one pool
process whose runner (tasks/runner.py) runs only the guards a test names.

The guards go through the real runner, so each hook is called where and in the order a
worker calls it, and the test sees what a user would: the verdict, the keys left in Redis,
the crashdumps handed to the store. The fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tasks import runner
from tasks.errors import BackendUnavailable
from tasks.guards import Guard
from tasks.plugins.base import Status, Verdict
from tasks.plugins.stub import StubPlugin
from tasks.settings import Settings
from tasks.wire import blobs
from tasks.wire.blobs import BlobRef, Message
from tasks.wire.jobids import job_ids
from tasks.wire.verdicts import PoolVerdict

MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def throwaway_redis(port: int) -> Iterator[redis.Redis]:
    """A redis-server on a loopback port, persisting nothing, stopped when the caller ends."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, socket_timeout=5)
        _wait_until_up(client, server)
        yield client
    finally:
        server.terminate()
        server.wait(10)


def _wait_until_up(client: redis.Redis, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.poll() is None:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not start (exit status {server.poll()})")


@dataclass
class Engine(StubPlugin):
    """The stub plugin, counting its scans. It raises ``fails_with`` instead of answering,
    answers ``answers`` instead of looking when set, says it took ``takes_ms``, caches under
    ``identity``, skips messages over ``max_bytes``, and its backend is down for the health
    check unless ``healthy``."""

    fails_with: type[BaseException] | None = None
    answers: Status | None = None
    takes_ms: float | None = None
    identity: str | None = None
    max_bytes: int | None = None
    healthy: bool = True
    scans: int = 0

    def scan(self, message: Message) -> Verdict:
        self.scans += 1
        if self.fails_with is not None:
            raise self.fails_with("stub engine failed")
        verdict = (
            self.verdict(self.answers, time.perf_counter())
            if self.answers
            else super().scan(message)
        )
        if self.takes_ms is not None:
            verdict = dataclasses.replace(verdict, elapsed_ms=self.takes_ms)
        return verdict

    def health(self) -> str:
        if not self.healthy:
            raise BackendUnavailable("stub backend down")
        return "ok"

    def cache_identity(self) -> str | None:
        return self.identity

    def size_limit(self) -> int | None:
        return self.max_bytes


class RecordedCrashes:
    """Stands for the crash store: keeps the crashdumps the guards hand to it."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def save(self, dump: dict[str, Any]) -> str:
        self.dumps.append(dump)
        return "redis"


class PoolProcess:
    """One pool process as the runner keeps it (``runner._process_state``), with the guards
    and the one stub engine of ``start``."""

    def __init__(self, client: redis.Redis, crashdump_dir: Path, state: dict[str, Any]) -> None:
        self.redis, self.crashes, self._state = client, RecordedCrashes(), state
        port = client.connection_pool.connection_kwargs["port"]
        self.settings = Settings(
            redis_url=f"redis://127.0.0.1:{port}/0", crashdump_dir=crashdump_dir,
            spool_dir=crashdump_dir,
        ).with_pool("av", plugins=("stub",)).with_pool("spam", plugins=("stub",))  # fmt: skip
        self.pool = "av"
        self._stored = 0

    def start(self, pool: str, *guards: Guard, **settings: Any) -> Engine:
        """Run jobs of ``pool`` with ``guards`` (in this order) and settings changed as
        given; return the pool's engine."""
        self.pool, self.settings = pool, dataclasses.replace(self.settings, **settings)
        engine = Engine(self.settings, pool)
        names = self.settings.pools[pool].plugins
        self._state.clear()
        self._state.update(pid=os.getpid(), redis=self.redis, crashes=self.crashes,
                           guards=list(guards), plugins={(pool, names): [engine]})  # fmt: skip
        return engine

    def store(self, message: bytes = MESSAGE, origin: str = "") -> BlobRef:
        """A new spool entry of ``message``, stored as the SMTP front stores it."""
        self._stored += 1
        return blobs.put(self.redis, f"entry{self._stored}x{os.getpid()}", message, 600, origin)

    def scan(self, ref: BlobRef | None = None, job_id: str = "") -> PoolVerdict:
        """The pool's verdict on ``ref`` (a new entry of MESSAGE by default), as the scan
        task gets it from the runner."""
        from tasks.celery import app

        ref = ref or self.store()
        job_id = job_id or job_ids(ref["blob"])[self.pool]
        return runner.scan(self.pool, ref, self.settings, job_id, "test@host", app.backend)


def details(result: PoolVerdict) -> list[str]:
    return [verdict.detail for verdict in result.engines]
