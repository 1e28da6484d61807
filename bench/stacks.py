"""The stacks the suite measures, each started through ``mailserver.supervisor.stack.Stack``
(the code ``mailscan up`` and the integration tests use) in a temporary folder, on loopback
ports of its own, and always stopped again.

Two kinds: *real* (Redis, clamd, spamd, both pools, SMTP front; plugins ``clamav`` and
``spamassassin``) and *glue* (Redis, both pools with the ``stub`` plugin, SMTP front: what
mailscan itself costs). Beat, Flower, the ops worker and the console are not started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import say
from mailserver.supervisor.stack import Stack
from tasks.settings import Settings, load_settings
from tasks.wire.keys import ENV_PREFIX

LOOPBACK = "127.0.0.1"
REAL_SERVICES = ("redis", "clamd", "spamd", "av-worker", "spam-worker", "mailserver")
GLUE_SERVICES = ("redis", "av-worker", "spam-worker", "mailserver")
# Preferred ports: away from the defaults and from the ports the test suites use.
PORTS = {
    "redis": 26390,
    "clamd": 23320,
    "spamd": 27830,
    "smtp": 22525,
    "flower": 25555,
    "metrics": 29125,
    "console": 28025,
    "classic": 20024,  # bench/classic.py: a classic content filter and its next hop
    "next hop": 20025,
    # bench/behind_postfix.py: a private Postfix's two smtpds for clients, its reinjection
    # smtpd, and a milter front of its own.
    "postfix milter": 20026,
    "postfix filter": 20027,
    "reinjection": 20028,
    "milter": 27357,
    "milter metrics": 29126,
}


@dataclass(frozen=True)
class Plan:
    name: str  # "real c=2", "glue"
    # Pool processes per pool and spamd children; None: as ``mailscan up`` sizes them.
    concurrency: int | None
    glue: bool = False  # stub plugins, no clamd or spamd


@dataclass
class BenchStack:
    plan: Plan
    stack: Stack
    settings: Settings
    # Other SMTP servers beside mailscan's front, loaded as paths of their own by name (a
    # classic content filter: bench/classic.py).
    other_smtp: dict[str, int] = field(default_factory=dict)
    # Process groups measured beside the stack's services, by leader pid (a private Postfix).
    other_groups: dict[int, str] = field(default_factory=dict)

    @property
    def smtp(self) -> tuple[str, int]:
        return self.settings.smtp_host, self.settings.smtp_port

    def set_scan_deadline(self, seconds: float) -> None:
        """Restart only the SMTP front with another MAILSCAN_SCAN_DEADLINE_S."""
        self.stack.env[ENV_PREFIX + "SCAN_DEADLINE_S"] = f"{seconds:g}"
        self.settings = load_settings(self.stack.env)
        self.stack.settings = self.settings
        self.stack.restart("mailserver")


def stop_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the ``finally`` of the context
    managers below stops the stack: by default the signal ends the process on the spot and
    leaves every service of its stacks running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def running(plan: Plan, keep_var: bool = False) -> Iterator[BenchStack]:
    stop_on_sigterm()
    var_root = Path(tempfile.mkdtemp(prefix="mailscan-bench-"))
    var_root.chmod(0o755)  # spamd runs as nobody when we are root: its home is in there
    env = _environment(var_root / "var", pick_ports(), plan)
    stack = Stack(load_settings(env), env)
    say(f"starting {plan.name} on {LOOPBACK} (logs in {stack.log_dir}):")
    try:
        stack.start(GLUE_SERVICES if plan.glue else REAL_SERVICES, progress=say)
        yield BenchStack(plan, stack, stack.settings)
    finally:
        say(f"stopping {plan.name}...")
        stack.stop()
        if keep_var:
            say(f"kept {var_root}")
        else:
            shutil.rmtree(var_root, ignore_errors=True)


@contextlib.contextmanager
def scratch(
    services: list[str], before_start: Callable[[Stack], None] | None = None, **settings: str
) -> Iterator[Stack]:
    """Some services alone (Redis, clamd, both pools...) for the benchmarks of one part, on
    the bench's ports, in a temporary folder; ``settings`` are MAILSCAN_* names without the
    prefix. This process's environment gets the same settings, so its Celery app and
    clients talk to these services. ``before_start`` may change a service's command line."""
    stop_on_sigterm()
    var = Path(tempfile.mkdtemp(prefix="mailscan-scratch-"))
    var.chmod(0o755)  # spamd runs as nobody when we are root: its home is in there
    ports = pick_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env |= {
        "MAILSCAN_VAR_DIR": str(var),
        "MAILSCAN_REDIS_URL": f"redis://{LOOPBACK}:{ports['redis']}/0",
        "MAILSCAN_CLAMD": f"{LOOPBACK}:{ports['clamd']}",
        "MAILSCAN_SPAMD": f"{LOOPBACK}:{ports['spamd']}",
        **{ENV_PREFIX + name.upper(): value for name, value in settings.items()},
    }
    os.environ.update(env)
    stack = Stack(load_settings(env), env)
    try:
        if before_start:
            before_start(stack)
        stack.start(services, progress=say)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(var, ignore_errors=True)


def _environment(var_dir: Path, ports: dict[str, int], plan: Plan) -> dict[str, str]:
    """This process's environment without any MAILSCAN_* it had, plus the bench's settings."""
    inherited = sorted(k for k in os.environ if k.startswith(ENV_PREFIX))
    if inherited:
        say(f"ignoring inherited {', '.join(inherited)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    plugins = "stub" if plan.glue else ""
    sized = {} if plan.concurrency is None else {
        "MAILSCAN_AV_CONCURRENCY": str(plan.concurrency),
        "MAILSCAN_SPAM_CONCURRENCY": str(plan.concurrency),
    }  # fmt: skip
    return (
        env
        | sized
        | {
            "MAILSCAN_VAR_DIR": str(var_dir),
            "MAILSCAN_REDIS_URL": f"redis://{LOOPBACK}:{ports['redis']}/0",
            "MAILSCAN_CLAMD": f"{LOOPBACK}:{ports['clamd']}",
            "MAILSCAN_SPAMD": f"{LOOPBACK}:{ports['spamd']}",
            "MAILSCAN_SMTP_HOST": LOOPBACK,
            "MAILSCAN_SMTP_PORT": str(ports["smtp"]),
            "MAILSCAN_FLOWER_PORT": str(ports["flower"]),
            "MAILSCAN_METRICS_HOST": LOOPBACK,
            "MAILSCAN_METRICS_PORT": str(ports["metrics"]),
            "MAILSCAN_CONSOLE_PORT": str(ports["console"]),
            "MAILSCAN_MODE": "pre-queue",
            "MAILSCAN_MILTER": "off",  # bench/behind_postfix.py starts one of its own
            "MAILSCAN_DELIVERY": "maildir",
            "MAILSCAN_AV_PLUGINS": plugins or "clamav",
            "MAILSCAN_SPAM_PLUGINS": plugins or "spamassassin",
        }
    )


def listening(port: int) -> Callable[[], bool]:
    """A ``Service.ready`` check: something listens on ``port`` on loopback."""
    return lambda: not port_free(port)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pick_ports() -> dict[str, int]:
    """The preferred ports, or a port the kernel hands out where one is taken."""
    ports: dict[str, int] = {}
    for name, preferred in PORTS.items():
        port = preferred
        while not port_free(port) or port in ports.values():
            with socket.socket() as probe:
                probe.bind((LOOPBACK, 0))
                port = probe.getsockname()[1]
        ports[name] = port
    return ports
