"""The whole system on one machine, without Docker: Redis (or Redis under Sentinel), clamd,
spamd, both worker pools, beat, Flower and the SMTP front, each a child process on loopback
with its own log.

``mailscan up`` and the integration tests start services through this one module, so what
the tests exercise is what an administrator runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable

import redis

from mailserver.supervisor.services import Service, all_services
from tasks.errors import MailscanError, StackError
from tasks.settings import Settings

ORDER = (
    "redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "clamd", "spamd",
    "av-worker", "spam-worker", "ops-worker", "beat", "flower",
    "mailserver", "console",
)  # fmt: skip
# Services that need nothing of each other start together: spamd compiling its rules and
# clamd loading its signatures, or each pool importing its plugins, overlap instead of
# adding up. Every other service waits for those before it.
TOGETHER = (frozenset({"clamd", "spamd"}), frozenset({"av-worker", "spam-worker", "ops-worker"}))
STOP_GRACE_S = 15.0


def waves(names: list[str]) -> list[list[str]]:
    """``names`` in order, neighbours of one TOGETHER set in one wave."""
    grouped: list[list[str]] = []
    for name in names:
        previous = grouped[-1] if grouped else []
        if previous and any({name, previous[0]} <= together for together in TOGETHER):
            previous.append(name)
        else:
            grouped.append([name])
    return grouped


class Stack:
    """Starts services in order, waits until each is ready, stops them in reverse; those of
    one TOGETHER set start and stop at once."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.log_dir = settings.var_dir / "log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.services = {s.name: s for s in all_services(settings)}
        self.started: list[str] = []

    def start(
        self, names: Iterable[str] | None = None, progress: Callable[[str], None] = print
    ) -> None:
        """Start ``names``, or every service of this stack in ORDER; each is ready before
        the next starts, but those of one TOGETHER set start at once."""
        chosen = [n for n in ORDER if n in self.services] if names is None else list(names)
        for wave in waves(chosen):
            for name in wave:
                port = self.services[name].port
                if port and _port_open(port):
                    raise StackError(f"{name}: port {port} is already in use on 127.0.0.1")
            started = time.monotonic()
            for name in wave:
                self._spawn(self.services[name])
            for name in wave:
                self._await_ready(self.services[name])
                progress(f"  {name:<12} ready in {time.monotonic() - started:4.1f} s")

    def _spawn(self, service: Service) -> None:
        if service.before_start:
            service.before_start()
        log = open(self.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115 - owned by the child
        # Own session: Ctrl-C in the terminal reaches only `mailscan up`, which then stops
        # the children in order instead of all of them dying at once.
        service.process = subprocess.Popen(
            service.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **service.env},
            start_new_session=True,
        )
        log.close()
        if service.name not in self.started:
            self.started.append(service.name)

    def _await_ready(self, service: Service) -> None:
        deadline = time.monotonic() + service.ready_timeout_s
        while time.monotonic() < deadline:
            if service.process and service.process.poll() is not None:
                raise StackError(f"{service.name} exited at start:\n{self.log_tail(service.name)}")
            if _safely(service.ready):
                if service.after_ready:
                    service.after_ready()
                return
            time.sleep(0.2)
        raise StackError(f"{service.name} not ready after {service.ready_timeout_s:.0f} s")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pid(self, name: str) -> int:
        process = self.services[name].process
        assert process is not None, f"{name} is not running"
        return process.pid

    def stop(self, names: Iterable[str] | None = None) -> None:
        """Stop ``names``, or every service started, in the reverse of their start order;
        those of one TOGETHER set at once (each pool finishing its jobs, say)."""
        chosen = [n for n in self.started if names is None or n in names]
        for wave in reversed(waves(chosen)):
            _terminate([self.services[name].process for name in wave])
            for name in wave:
                self.services[name].process = None

    def restart(self, name: str) -> None:
        self.stop([name])
        service = self.services[name]
        self._spawn(service)
        self._await_ready(service)

    def revive(self) -> list[str]:
        """Restart every service that died; return their names. ``mailscan up`` calls this
        every few seconds."""
        dead = self.exited()
        for name in dead:
            self.restart(name)
        return dead

    def exited(self) -> list[str]:
        """Services that were started and have died since."""
        return [
            n
            for n in self.started
            if self.services[n].process and self.services[n].process.poll() is not None
        ]


def _terminate(processes: list[subprocess.Popen[bytes] | None]) -> None:
    running = [p for p in processes if p is not None and p.poll() is None]
    # Each service leads its own process group: the group holds its pool children too.
    for process in running:
        _signal_group(process.pid, signal.SIGTERM)
    grace_ends = time.monotonic() + STOP_GRACE_S
    for process in running:
        try:
            process.wait(max(0.0, grace_ends - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(5)
        else:
            _signal_group(process.pid, signal.SIGKILL)  # anything the leader left behind


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (OSError, MailscanError, redis.RedisError):
        return False


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
